#include "dro/io/image.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"

// The one translation unit that compiles the stb implementations.
#define STB_IMAGE_IMPLEMENTATION
// stb_image 2.27 (Debian 12's libstb) does not clear its JPEG decoder state, so a scan naming a
// Huffman table the file never defines decodes with whatever the allocation held before, and reads
// out of bounds (later stb versions clear it). Zeroed allocations: such a table decodes zeros.
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(p, size) std::realloc(p, size)
#define STBI_FREE(p) std::free(p)
#define STBI_NO_STDIO  // files are read through io::read_file so errors name the file our way
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>

namespace dro::io {
namespace fs = std::filesystem;

namespace {

void check_channels(int channels, const char* op) {
  if (channels != 1 && channels != 3 && channels != 4)
    throw UsageError(cat("[image] ", op, ": channels must be 1, 3 or 4, got ", channels));
}

void check_image(const Image& image, const char* op) {
  check_channels(image.channels, op);
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * image.channels)
    throw UsageError(cat("[image] ", op, ": inconsistent image ", image.width, "x", image.height,
                         "x", image.channels, " with ", image.pixels.size(), " bytes"));
}

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
}

// JPEG segments: Huffman tables stb_image 2.27 would overflow on, and frames whose size the data
// cannot hold: every 8x8 block of the largest component takes at least one Huffman-coded bit, so
// W x H pixels need W * H / 512 bytes (stb decodes missing data as zeros, so a 77-byte file could
// claim a 1.4 GB image).
void check_jpeg_segments(const std::string& bytes, const std::string& what) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  // SOI as stb_image finds it: FF, any fill bytes FF, D8.
  size_t start = 1;
  while (start < n && p[start] == 0xFF) ++start;
  if (n < 2 || p[0] != 0xFF || start >= n || p[start] != 0xD8) return;
  const auto byte = [&](size_t k) { return k < n ? p[k] : 0u; };  // stb reads 0 past the end
  // The segments as stb_image walks them: bytes between them (entropy-coded data) are skipped up
  // to the next marker; stuffed bytes, RSTn and fill bytes carry no length.
  for (size_t i = start + 1; i + 1 < n;) {
    if (p[i] != 0xFF || p[i + 1] == 0xFF) {
      ++i;
      continue;
    }
    const unsigned m = p[i + 1];
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {
      i += 2;
      continue;
    }
    if (m == 0xD9) return;  // EOI
    const size_t length = (byte(i + 2) << 8) | byte(i + 3);
    if (m >= 0xC0 && m <= 0xC2) {  // SOF0-2, the Huffman-coded frames stb decodes
      const uint64_t h = (byte(i + 5) << 8) | byte(i + 6), w = (byte(i + 7) << 8) | byte(i + 8);
      if (w * h > 512 * uint64_t(n))
        throw IoError(cat("[image] ", what, ": JPEG frame of ", w, "x", h, " pixels cannot fit in ",
                          n, " bytes (truncated or corrupt file)"));
    }
    if (m == 0xC4) {  // DHT: tables of class/id, 16 code counts, the symbols
      int64_t left = static_cast<int64_t>(length) - 2;
      for (size_t t = i + 4; left > 0;) {
        unsigned codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += byte(t + k);
        if (codes > 256)
          throw IoError(cat("[image] ", what, ": JPEG Huffman table at byte ", t, " defines ",
                            codes, " codes, more than 256 (corrupt file)"));
        t += 17 + codes;
        left -= 17 + static_cast<int64_t>(codes);
      }
    }
    i += 2 + length;
  }
}

// PNG chunks up to IEND: stb_image allocates room for an IDAT chunk's claimed length before it
// reads the chunk, so a 2 KB file claiming a 1.3 GB chunk cost a 2 GB allocation.
void check_png_chunks(const std::string& bytes, const std::string& what) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 8 || std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) != 0) return;
  for (size_t pos = 8; pos + 8 <= n;) {
    const uint64_t len =
        (uint64_t(p[pos]) << 24) | (p[pos + 1] << 16) | (p[pos + 2] << 8) | p[pos + 3];
    const std::string type(bytes.data() + pos + 4, 4);
    if (len > n - pos - 8)
      throw IoError(cat("[image] ", what, ": PNG chunk '", type, "' at byte ", pos, " claims ", len,
                        " bytes but the file ends after ", n - pos - 8, " (truncated download?)"));
    if (type == "IEND") return;
    pos += 12 + len;
  }
}

// The header fields stb_image's BMP reader uses (stbi__bmp_parse_header); only layouts it decodes
// (uncompressed or bitfields) are checked, the rest it rejects itself.
void check_bmp_size(const std::string& bytes, const std::string& what) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  if (n < 2 || p[0] != 'B' || p[1] != 'M') return;
  const auto le = [&](size_t at, int len) {
    uint64_t v = 0;
    for (int k = len - 1; k >= 0; --k) v = (v << 8) | (at + k < n ? p[at + k] : 0u);
    return v;
  };
  const uint64_t offset = le(10, 4), header = le(14, 4);
  uint64_t w = 0, h = 0, bpp = 0;
  if (header == 12) {
    w = le(18, 2), h = le(20, 2), bpp = le(24, 2);
  } else {
    const auto compression = static_cast<int32_t>(le(30, 4));  // stb refuses 1, 2 and 4 on
    if (compression == 1 || compression == 2 || compression >= 4) return;
    w = le(18, 4), bpp = le(28, 2);
    h = static_cast<uint64_t>(std::llabs(static_cast<int32_t>(le(22, 4))));  // < 0: top-down
  }
  if (w == 0 || h == 0)  // stb would loop over the rows of an image without pixels
    throw IoError(cat("[image] ", what, ": BMP of ", w, "x", h, " pixels (corrupt file)"));
  if (bpp == 0 || bpp > 32 || w > (1u << 24) || h > (1u << 24)) return;
  const uint64_t row = (w * bpp + 31) / 32 * 4;  // rows are padded to 4 bytes
  const uint64_t need = offset + row * (h - 1) + (w * bpp + 7) / 8;
  if (n < need)
    throw IoError(cat("[image] ", what, ": BMP of ", w, "x", h, " pixels at ", bpp, " bits needs ",
                      need, " bytes but the file has ", n, " (truncated file?)"));
}

}  // namespace

Image::Image(int w, int h, int c)
    : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c, 0) {}

void check_image_bytes(const std::string& bytes, const std::string& what) {
  check_jpeg_segments(bytes, what);
  check_png_chunks(bytes, what);
  check_bmp_size(bytes, what);
}

Image decode_image(const std::string& bytes, const std::string& what, int channels) {
  if (channels != 0) check_channels(channels, "decode");
  if (bytes.empty()) throw IoError(cat("[image] ", what, ": file is empty"));
  check_image_bytes(bytes, what);
  int w = 0, h = 0, stored = 0;
  // A decompression bomb (a small PNG of a huge, uniform image) is refused before decoding, at
  // Pillow's limit (Image.MAX_IMAGE_PIXELS x 2, where Pillow raises DecompressionBombError).
  constexpr int64_t kMaxPixels = 2 * 89478485LL;
  if (stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()), &w, &h,
                            &stored) &&
      static_cast<int64_t>(w) * h > kMaxPixels)
    throw IoError(cat("[image] ", what, ": ", w, "x", h, " pixels is more than ", kMaxPixels,
                      " (Pillow's decompression-bomb limit); refusing to decode it"));
  unsigned char* data =
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                            static_cast<int>(bytes.size()), &w, &h, &stored, channels);
  if (data == nullptr)
    throw IoError(cat("[image] ", what, ": cannot decode image (", stbi_failure_reason(),
                      "; corrupt or truncated file, or not PNG/JPEG?)"));
  if (w <= 0 || h <= 0) {  // stb returns some corrupt BMPs as images without pixels
    stbi_image_free(data);
    throw IoError(cat("[image] ", what, ": decodes to a ", w, "x", h, " image (corrupt file)"));
  }
  Image image;
  image.width = w;
  image.height = h;
  image.channels = channels != 0 ? channels : stored;
  if (image.channels == 2) {  // grey + alpha as stored: keep the grey plane only
    image.channels = 1;
    image.pixels.resize(static_cast<size_t>(w) * h);
    for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = data[2 * i];
  } else {
    image.pixels.assign(data, data + static_cast<size_t>(w) * h * image.channels);
  }
  stbi_image_free(data);
  return image;
}

Image read_image(const fs::path& path, int channels) {
  if (!fs::exists(path)) throw IoError(cat("[image] ", path.string(), ": file not found"));
  return decode_image(read_file(path), path.string(), channels);
}

std::string encode_png(const Image& image) {
  check_image(image, "encode_png");
  std::string out;
  if (!stbi_write_png_to_func(append_bytes, &out, image.width, image.height, image.channels,
                              image.pixels.data(), image.width * image.channels))
    throw Error(cat("[image] PNG encoding of a ", image.width, "x", image.height, " image failed"));
  return out;
}

void write_png(const fs::path& path, const Image& image) {
  write_file_atomically(path, encode_png(image));
}

at::Tensor to_tensor(const Image& image, PixelRange range) {
  check_image(image, "to_tensor");
  auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                              {image.height, image.width, image.channels}, torch::kUInt8);
  auto chw = hwc.permute({2, 0, 1}).to(torch::kFloat32).div_(255.0f);  // [C, H, W] in [0, 1]
  if (range == PixelRange::kMinusOneOne) chw.mul_(2.0f).sub_(1.0f);
  return chw.contiguous();
}

Image from_tensor(const at::Tensor& chw, PixelRange range) {
  if (chw.dim() != 3 || (chw.size(0) != 1 && chw.size(0) != 3 && chw.size(0) != 4))
    throw UsageError(cat(
        "[image] from_tensor: expected a [C, H, W] tensor with C in {1, 3, 4}, got ", chw.sizes()));
  auto t = chw.detach().to(torch::kCPU, torch::kFloat32);
  if (range == PixelRange::kMinusOneOne) t = (t + 1.0f) * 0.5f;
  // [H, W, C] bytes, x * 255 rounded to nearest as diffusers' numpy_to_pil does
  auto hwc =
      t.clamp(0.0f, 1.0f).mul(255.0f).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  Image image(static_cast<int>(chw.size(2)), static_cast<int>(chw.size(1)),
              static_cast<int>(chw.size(0)));
  std::memcpy(image.pixels.data(), hwc.data_ptr<uint8_t>(), image.pixels.size());
  return image;
}

Image resize(const Image& image, int width, int height) {
  check_image(image, "resize");
  if (width <= 0 || height <= 0)
    throw UsageError(cat("[image] resize: target size must be positive, got ", width, "x", height));
  if (width == image.width && height == image.height) return image;
  Image out(width, height, image.channels);
  const int alpha = image.channels == 4 ? 3 : STBIR_ALPHA_CHANNEL_NONE;
  if (!stbir_resize_uint8_generic(
          image.pixels.data(), image.width, image.height, image.width * image.channels,
          out.pixels.data(), width, height, width * image.channels, image.channels, alpha, 0,
          STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR, nullptr))
    throw Error(cat("[image] resize to ", width, "x", height, " failed"));
  return out;
}

Image resize_shorter_side(const Image& image, int size) {
  check_image(image, "resize_shorter_side");
  if (size <= 0)
    throw UsageError(cat("[image] resize_shorter_side: size must be positive, got ", size));
  const int64_t w = image.width, h = image.height;
  if (w <= h) return resize(image, size, static_cast<int>(h * size / w));
  return resize(image, static_cast<int>(w * size / h), size);
}

Image crop(const Image& image, int x0, int y0, int width, int height) {
  check_image(image, "crop");
  if (x0 < 0 || y0 < 0 || width <= 0 || height <= 0 || x0 + width > image.width ||
      y0 + height > image.height)
    throw UsageError(cat("[image] crop: window ", width, "x", height, " at (", x0, ", ", y0,
                         ") does not fit a ", image.width, "x", image.height, " image"));
  Image out(width, height, image.channels);
  const size_t row_bytes = static_cast<size_t>(width) * image.channels;
  for (int y = 0; y < height; ++y)
    std::memcpy(out.row(y), image.row(y0 + y) + static_cast<size_t>(x0) * image.channels,
                row_bytes);
  return out;
}

Image center_crop(const Image& image, int size) {
  const int y0 = std::max(0, static_cast<int>(std::lround((image.height - size) / 2.0)));
  const int x0 = std::max(0, static_cast<int>(std::lround((image.width - size) / 2.0)));
  return crop(image, x0, y0, size, size);
}

Image flip_horizontal(const Image& image) {
  check_image(image, "flip_horizontal");
  Image out(image.width, image.height, image.channels);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      std::memcpy(&out.at(y, image.width - 1 - x, 0), image.row(y) + x * image.channels,
                  image.channels);
  return out;
}

Image make_grid(const std::vector<Image>& images, int columns, int margin, uint8_t fill) {
  if (images.empty()) throw UsageError("[image] make_grid: no images");
  if (columns <= 0 || margin < 0)
    throw UsageError(cat("[image] make_grid: columns must be positive and margin >= 0, got ",
                         columns, " and ", margin));
  const Image& first = images.front();
  for (size_t i = 0; i < images.size(); ++i) {
    check_image(images[i], "make_grid");
    if (images[i].width != first.width || images[i].height != first.height ||
        images[i].channels != first.channels)
      throw UsageError(cat("[image] make_grid: image ", i, " is ", images[i].width, "x",
                           images[i].height, "x", images[i].channels, " but image 0 is ",
                           first.width, "x", first.height, "x", first.channels));
  }
  const int n = static_cast<int>(images.size());
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  Image grid(cols * first.width + (cols + 1) * margin, rows * first.height + (rows + 1) * margin,
             first.channels);
  std::fill(grid.pixels.begin(), grid.pixels.end(), fill);
  const size_t row_bytes = static_cast<size_t>(first.width) * first.channels;
  for (int i = 0; i < n; ++i) {
    const int gx = margin + (i % cols) * (first.width + margin);
    const int gy = margin + (i / cols) * (first.height + margin);
    for (int y = 0; y < first.height; ++y)
      std::memcpy(grid.row(gy + y) + static_cast<size_t>(gx) * first.channels, images[i].row(y),
                  row_bytes);
  }
  return grid;
}

}  // namespace dro::io
