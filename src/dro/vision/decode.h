// Image decoding as Pillow's Image.open() does it: the pixels and the mode PIL would report, so
// the preprocessing pipelines built on it (vision/clip_image_processor.h, vision/
// open_clip_transform.h, vision/torchvision_transform.h) see what the Python references see.
//
// PNG: stb_image decodes (exact for every PNG); the IHDR colour type and bit depth, read here,
// give PIL's mode (PngImagePlugin's _MODES):
//   gray 1-bit -> "1" (0/255), gray 2/4/8-bit -> "L", gray 16-bit -> "I;16",
//   RGB 8/16-bit -> "RGB" (16-bit: high byte, like PIL's RGB;16B unpacker),
//   palette -> "P", gray+alpha 8-bit -> "LA", gray+alpha 16-bit -> "RGBA" (PIL's LA;16B), RGBA ->
//   "RGBA".
// A tRNS chunk only sets `has_transparency` (PIL keeps it in info, not in the pixels), except
// for palette images whose palette carries it as alpha.
// JPEG: libjpeg(-turbo) with Pillow's settings (JpegDecode.c: libjpeg's defaults, i.e. the
// accurate integer IDCT and fancy upsampling; only the output colour space is set): 1 component
// -> "L", 3 -> "RGB", 4 -> "CMYK" stored inverted as PIL's "CMYK;I" rawmode does (Adobe
// convention). EXIF orientation is not applied (Image.open does not). Without libjpeg at build
// time, stb's decoder is used after a one-time warning: its IDCT and chroma upsampling differ
// from libjpeg's by +-1 here and there, which moves preference scores.
// BMP is decoded by stb as "RGB" or "RGBA". Other formats are an IoError.
// Not here: animation (the first frame of an APNG is what PIL shows too), ICC profiles, gamma.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dro/io/image.h"

namespace dro::vision {

// An image as PIL holds it after Image.open().
struct PilImage {
  // "1", "L", "LA", "RGB", "RGBA", "P", "I;16" or "CMYK".
  std::string mode;
  // 8-bit pixels [H, W, C]: "1"/"L" 1 channel (mode "1" holds 0 or 255), "LA" 2, "RGB" 3,
  // "RGBA" 4, "CMYK" 4 (inverted, as PIL stores it), "P" 3 (the palette colours, i.e.
  // convert("RGB")), "I;16" 1 (saturated at 255, PIL's I;16 -> L conversion).
  io::Image image;
  // "I;16" only: the 16-bit values [H, W].
  std::vector<uint16_t> pixels16;
  // "P" only: palette indices [H, W] and the palette as RGBA entries (alpha from tRNS, 255
  // without). The indices are recovered from the decoded colours through the palette: a colour
  // listed twice maps to its first index; empty if a pixel matches no entry (index past the
  // palette).
  std::vector<uint8_t> indices;
  std::vector<std::array<uint8_t, 4>> palette;
  // A tRNS chunk was present (PIL: "transparency" in info).
  bool has_transparency = false;

  int width() const { return image.width; }
  int height() const { return image.height; }
};

// Reads and decodes a file. IoError naming the file when it is missing, empty, truncated,
// corrupt or in an unsupported format.
PilImage decode_image_file(const std::filesystem::path& path);

// Decodes bytes held in memory; `what` names the source in error messages.
PilImage decode_image_bytes(const std::string& bytes, const std::string& what);

// Wraps 8-bit pixels as PIL's Image.fromarray would: 1 channel -> "L", 2 -> "LA", 3 -> "RGB",
// 4 -> "RGBA". UsageError for other channel counts or an inconsistent buffer.
PilImage from_pixels(io::Image image);

// PIL's image.convert("RGB"): alpha dropped (no compositing), L/1 replicated, P through its
// palette, I;16 saturated at 255 then replicated, CMYK as Convert.c's cmyk2rgb.
io::Image convert_to_rgb(const PilImage& image);

// True when JPEG files are decoded by libjpeg (exactly as Pillow); false when this build falls
// back to stb_image.
bool jpeg_decoder_is_exact();

}  // namespace dro::vision
