#include "dro/vision/decode.h"

#include <atomic>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <unordered_map>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"

// Declarations only: io/image.cpp compiles the stb implementation (from-memory API only).
#include <stb_image.h>

#ifdef DRO_WITH_LIBJPEG
#include <jpeglib.h>
// jerror.h after jpeglib.h: the message codes (JWRN_JPEG_EOF)
#include <jerror.h>
#endif

namespace dro::vision {
namespace fs = std::filesystem;

namespace {

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// What PIL's PNG plugin needs from the chunks before the pixel data.
struct PngHeader {
  uint32_t width = 0, height = 0;
  int bit_depth = 0;
  int colour_type = 0;
  std::vector<std::array<uint8_t, 4>> palette;  // PLTE, alpha from tRNS
  bool has_trns = false;
};

PngHeader read_png_header(const std::string& bytes, const std::string& what) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  PngHeader h;
  size_t pos = 8;
  bool seen_ihdr = false;
  std::string trns;
  while (pos + 8 <= size) {
    const uint32_t len = read_be32(data + pos);
    const std::string type(bytes.data() + pos + 4, 4);
    if (len > size - pos - 8)
      throw IoError(cat("[image] ", what, ": PNG chunk '", type, "' at byte ", pos, " claims ", len,
                        " bytes but the file ends after ", size - pos - 8,
                        " (truncated download?)"));
    const unsigned char* body = data + pos + 8;
    if (!seen_ihdr) {
      if (type != "IHDR" || len < 13)
        throw IoError(
            cat("[image] ", what, ": PNG does not start with an IHDR chunk (corrupt file)"));
      h.width = read_be32(body);
      h.height = read_be32(body + 4);
      h.bit_depth = body[8];
      h.colour_type = body[9];
      seen_ihdr = true;
    } else if (type == "PLTE") {
      h.palette.clear();
      for (uint32_t i = 0; i + 3 <= len; i += 3)
        h.palette.push_back({body[i], body[i + 1], body[i + 2], 255});
    } else if (type == "tRNS") {
      h.has_trns = true;
      trns.assign(reinterpret_cast<const char*>(body), len);
    } else if (type == "IDAT" || type == "IEND") {
      break;  // PLTE and tRNS come before the image data
    }
    pos += 12 + static_cast<size_t>(len);
  }
  if (!seen_ihdr)
    throw IoError(cat("[image] ", what, ": PNG has no IHDR chunk (truncated or corrupt file)"));
  if (h.colour_type == 3)
    for (size_t i = 0; i < trns.size() && i < h.palette.size(); ++i)
      h.palette[i][3] = uint8_t(trns[i]);
  return h;
}

// stb_image with `channels` output channels (0: as stored). IoError on failure.
io::Image stb_decode(const std::string& bytes, const std::string& what, const char* format,
                     int channels, int* stored = nullptr) {
  int w = 0, h = 0, n = 0;
  unsigned char* data = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                              static_cast<int>(bytes.size()), &w, &h, &n, channels);
  if (data == nullptr)
    throw IoError(cat("[image] ", what, ": cannot decode ", format,
                      " (stb_image: ", stbi_failure_reason(), "; corrupt or truncated file?)"));
  if (w <= 0 || h <= 0) {  // stb returns some corrupt BMPs as images without pixels
    stbi_image_free(data);
    throw IoError(cat("[image] ", what, ": ", format, " decodes to a ", w, "x", h,
                      " image (corrupt file)"));
  }
  io::Image image;
  image.width = w;
  image.height = h;
  image.channels = channels != 0 ? channels : n;
  image.pixels.assign(data, data + static_cast<size_t>(w) * h * image.channels);
  stbi_image_free(data);
  if (stored != nullptr) *stored = n;
  return image;
}

PilImage decode_png(const std::string& bytes, const std::string& what) {
  const PngHeader h = read_png_header(bytes, what);
  PilImage out;
  out.has_transparency = h.has_trns;
  const int depth = h.bit_depth;
  // PIL's PngImagePlugin _MODES, keyed by (bit depth, colour type)
  switch (h.colour_type) {
    case 0:  // grayscale
      if (depth == 16) {
        out.mode = "I;16";
        int w = 0, hh = 0, n = 0;
        stbi_us* data = stbi_load_16_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                                 static_cast<int>(bytes.size()), &w, &hh, &n, 1);
        if (data == nullptr)
          throw IoError(cat("[image] ", what, ": cannot decode 16-bit PNG (stb_image: ",
                            stbi_failure_reason(), "; corrupt or truncated file?)"));
        out.pixels16.assign(data, data + static_cast<size_t>(w) * hh);
        stbi_image_free(data);
        out.image = io::Image(w, hh, 1);
        for (size_t i = 0; i < out.pixels16.size(); ++i)  // Convert.c I16L_L: saturate
          out.image.pixels[i] = out.pixels16[i] > 255 ? 255 : uint8_t(out.pixels16[i]);
        return out;
      }
      out.mode = depth == 1 ? "1" : "L";  // stb scales 1/2/4-bit gray to 0..255 as PIL's L;2 / L;4
      out.image = stb_decode(bytes, what, "PNG", 1);
      return out;
    case 2:
      out.mode = "RGB";  // 16-bit: stb keeps the high byte, as PIL's RGB;16B unpacker
      out.image = stb_decode(bytes, what, "PNG", 3);
      return out;
    case 3: {
      out.mode = "P";
      if (h.palette.empty())
        throw IoError(cat("[image] ", what, ": palette PNG without a PLTE chunk"));
      out.palette = h.palette;
      io::Image rgba = stb_decode(bytes, what, "PNG", 4);
      // stb expands the palette; the indices are recovered through the palette (first entry of a
      // colour repeated in the palette).
      std::unordered_map<uint32_t, uint8_t> index_of;
      for (size_t i = h.palette.size(); i-- > 0;) {
        const auto& e = h.palette[i];
        index_of[(uint32_t(e[0]) << 24) | (uint32_t(e[1]) << 16) | (uint32_t(e[2]) << 8) | e[3]] =
            static_cast<uint8_t>(i);
      }
      const size_t n = static_cast<size_t>(rgba.width) * rgba.height;
      out.indices.resize(n);
      out.image = io::Image(rgba.width, rgba.height, 3);
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = &rgba.pixels[4 * i];
        std::memcpy(&out.image.pixels[3 * i], p, 3);
        auto it = index_of.find((uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) |
                                (uint32_t(p[2]) << 8) | p[3]);
        if (it == index_of.end()) {
          out.indices.clear();  // an index past the palette: colours kept, indices unknown
          for (size_t j = i + 1; j < n; ++j)
            std::memcpy(&out.image.pixels[3 * j], &rgba.pixels[4 * j], 3);
          break;
        }
        out.indices[i] = it->second;
      }
      return out;
    }
    case 4:
      if (depth == 16) {
        out.mode = "RGBA";  // PIL opens 16-bit gray+alpha as RGBA (LA;16B rawmode, high bytes)
        out.image = stb_decode(bytes, what, "PNG", 4);
      } else {
        out.mode = "LA";
        out.image = stb_decode(bytes, what, "PNG", 2);
      }
      return out;
    case 6:
      out.mode = "RGBA";
      out.image = stb_decode(bytes, what, "PNG", 4);
      return out;
    default:
      throw IoError(cat("[image] ", what, ": PNG colour type ", h.colour_type,
                        " is not valid (corrupt file?)"));
  }
}

#ifdef DRO_WITH_LIBJPEG

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool hit_eof = false;
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings are silent as in Pillow (JpegDecode.c), but running out of data is noted: jpeg_mem_src
// then inserts an end marker where Pillow's decoder would wait for more data.
void jpeg_on_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) err->hit_eof = true;
}

struct JpegResult {
  int width = 0, height = 0, components = 0;
  unsigned char* pixels = nullptr;  // malloc'ed [H, W, components]
  bool truncated = false;
};

// Plain C-style core: nothing with a destructor lives between setjmp and longjmp.
bool run_libjpeg(const unsigned char* data, size_t size, JpegResult* res, JpegErrorManager* err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err->pub);
  err->pub.error_exit = jpeg_on_error;
  err->pub.emit_message = jpeg_on_message;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  // JpegImagePlugin: mode from the SOF component count; JpegDecode.c sets only out_color_space
  if (cinfo.num_components == 1) {
    cinfo.out_color_space = JCS_GRAYSCALE;
  } else if (cinfo.num_components == 3) {
    cinfo.out_color_space = JCS_RGB;
  } else if (cinfo.num_components == 4) {
    cinfo.out_color_space = JCS_CMYK;
  } else {
    std::snprintf(err->message, sizeof err->message, "cannot handle %d-layer images",
                  cinfo.num_components);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_start_decompress(&cinfo);
  res->width = static_cast<int>(cinfo.output_width);
  res->height = static_cast<int>(cinfo.output_height);
  res->components = cinfo.output_components;
  const size_t row_bytes = static_cast<size_t>(res->width) * res->components;
  res->pixels = static_cast<unsigned char*>(std::malloc(row_bytes * res->height));
  if (res->pixels == nullptr) {
    std::snprintf(err->message, sizeof err->message, "out of memory for a %dx%d image", res->width,
                  res->height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = res->pixels + row_bytes * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  // Pillow's source manager suspends when the data ends while libjpeg still reads the scan, and
  // Image.load() then reports the file as truncated (also when only the end marker is missing).
  res->truncated = err->hit_eof;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

PilImage decode_jpeg(const std::string& bytes, const std::string& what) {
  JpegErrorManager err;
  err.message[0] = '\0';
  JpegResult res;
  const bool ok =
      run_libjpeg(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), &res, &err);
  if (!ok) {
    std::free(res.pixels);
    throw IoError(cat("[image] ", what, ": cannot decode JPEG (libjpeg: ", err.message,
                      "; corrupt or truncated file?)"));
  }
  if (res.truncated) {
    std::free(res.pixels);
    throw IoError(cat("[image] ", what, ": JPEG data ends inside the image (truncated file?)"));
  }
  PilImage out;
  out.image = io::Image(res.width, res.height, res.components);
  std::memcpy(out.image.pixels.data(), res.pixels, out.image.pixels.size());
  std::free(res.pixels);
  if (res.components == 1) {
    out.mode = "L";
  } else if (res.components == 3) {
    out.mode = "RGB";
  } else {
    out.mode = "CMYK";
    for (auto& v : out.image.pixels) v = static_cast<uint8_t>(255 - v);  // Unpack.c "CMYK;I"
  }
  return out;
}

#else  // no libjpeg: stb_image

PilImage decode_jpeg(const std::string& bytes, const std::string& what) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    std::cerr
        << "[image] warning: built without libjpeg; JPEG files are decoded by stb_image, whose "
           "pixels can differ by +-1 from PIL's (libjpeg-turbo) and move preference scores\n";
  int stored = 0;
  PilImage out;
  out.image = stb_decode(bytes, what, "JPEG", 0, &stored);
  if (out.image.channels == 1) {
    out.mode = "L";
  } else {
    out.mode = "RGB";  // stb converts CMYK/YCCK itself
    if (out.image.channels != 3) out.image = stb_decode(bytes, what, "JPEG", 3);
  }
  return out;
}

#endif

}  // namespace

bool jpeg_decoder_is_exact() {
#ifdef DRO_WITH_LIBJPEG
  return true;
#else
  return false;
#endif
}

PilImage decode_image_bytes(const std::string& bytes, const std::string& what) {
  if (bytes.empty()) throw IoError(cat("[image] ", what, ": file is empty"));
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw IoError(
        cat("[image] ", what, ": ", bytes.size(), " bytes is over the 2 GiB the decoders take"));
  io::check_image_bytes(bytes, what);
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() >= 8 && std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
    return decode_png(bytes, what);
  if (bytes.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
    return decode_jpeg(bytes, what);
  if (bytes.size() >= 2 && b[0] == 'B' && b[1] == 'M') {
    int stored = 0;
    PilImage out;
    out.image = stb_decode(bytes, what, "BMP", 0, &stored);
    if (out.image.channels != 3 && out.image.channels != 4)
      out.image = stb_decode(bytes, what, "BMP", 3);
    out.mode = out.image.channels == 4 ? "RGBA" : "RGB";
    return out;
  }
  throw IoError(cat("[image] ", what,
                    ": not a PNG, JPEG or BMP file (unsupported format or corrupt header)"));
}

PilImage decode_image_file(const fs::path& path) {
  if (!fs::exists(path)) throw IoError(cat("[image] ", path.string(), ": file not found"));
  return decode_image_bytes(io::read_file(path), path.string());
}

PilImage from_pixels(io::Image image) {
  static const char* kModes[] = {"", "L", "LA", "RGB", "RGBA"};
  if (image.channels < 1 || image.channels > 4)
    throw UsageError(cat("[image] from_pixels: 1 to 4 channels expected, got ", image.channels));
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * image.channels)
    throw UsageError(cat("[image] from_pixels: inconsistent image ", image.width, "x", image.height,
                         "x", image.channels, " with ", image.pixels.size(), " bytes"));
  PilImage out;
  out.mode = kModes[image.channels];
  out.image = std::move(image);
  return out;
}

io::Image convert_to_rgb(const PilImage& in) {
  const io::Image& src = in.image;
  if (in.mode == "RGB" || in.mode == "P") return src;  // P: already the palette colours
  io::Image out(src.width, src.height, 3);
  const size_t n = static_cast<size_t>(src.width) * src.height;
  const int c = src.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &src.pixels[i * c];
    uint8_t* q = &out.pixels[i * 3];
    if (in.mode == "RGBA") {  // Convert.c rgba2rgb: alpha dropped
      q[0] = p[0], q[1] = p[1], q[2] = p[2];
    } else if (in.mode == "CMYK") {  // Convert.c cmyk2rgb
      const int nk = 255 - p[3];
      for (int k = 0; k < 3; ++k) {
        const int t = p[k] * nk + 128;
        const int v = nk - (((t >> 8) + t) >> 8);
        q[k] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    } else if (in.mode == "L" || in.mode == "1" || in.mode == "LA" || in.mode == "I;16") {
      q[0] = q[1] = q[2] = p[0];  // I;16 is held saturated (Convert.c I16_RGB)
    } else {
      throw UsageError(cat("[image] convert_to_rgb: unsupported mode '", in.mode, "'"));
    }
  }
  return out;
}

}  // namespace dro::vision
