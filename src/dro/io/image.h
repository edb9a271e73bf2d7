// 8-bit images in memory and on disk: PNG/JPEG reading, atomic PNG writing, conversion to and from
// float tensors, the resize/crop steps of the training transform, and grids for report pictures.
// Pixels are stored row-major HWC; this is not an image-processing library, only what dro needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace dro::io {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;             // 1 (grey), 3 (RGB) or 4 (RGBA)
  std::vector<uint8_t> pixels;  // [H, W, C], row-major

  Image() = default;
  // A zero-filled image.
  Image(int width, int height, int channels);

  bool empty() const { return pixels.empty(); }
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  const uint8_t* row(int y) const {
    return pixels.data() + static_cast<size_t>(y) * width * channels;
  }
  uint8_t& at(int y, int x, int c) { return row(y)[x * channels + c]; }
  uint8_t at(int y, int x, int c) const { return row(y)[x * channels + c]; }

  bool operator==(const Image& o) const {
    return width == o.width && height == o.height && channels == o.channels && pixels == o.pixels;
  }
  bool operator!=(const Image& o) const { return !(*this == o); }
};

// Reads a PNG, JPEG or BMP. `channels` 0 keeps the stored channels;
// 1, 3 or 4 converts (grey -> RGB replicates, RGBA -> RGB drops alpha). IoError naming the file
// when it is missing, unreadable or not a decodable image.
Image read_image(const std::filesystem::path& path, int channels = 3);

// Decodes an image held in memory; `what` names the source in error messages.
Image decode_image(const std::string& bytes, const std::string& what, int channels = 3);

// What the decoders cannot be trusted with, checked before they see `bytes`; IoError naming
// `what`: a JPEG Huffman table of more than 256 codes (stb_image 2.27, Debian 12's libstb, writes
// past its tables: nothings/stb#1289), a JPEG frame larger than its bytes could encode, a PNG
// chunk claiming more bytes than the file has (stb allocates an IDAT's claimed length first), and
// a BMP without pixels or whose rows end past the end of the file. stb allocates what a header
// claims and decodes missing data as zeros, so a few bytes could cost gigabytes; PIL reports such
// files as corrupt or truncated. Other input passes.
void check_image_bytes(const std::string& bytes, const std::string& what);

// Encodes as PNG (deterministic bytes for a given image and stb version).
std::string encode_png(const Image& image);

// Writes a PNG atomically (temporary file + rename); creates the parent folder.
void write_png(const std::filesystem::path& path, const Image& image);

// Value range of float pixel tensors.
enum class PixelRange { kZeroOne, kMinusOneOne };

// Image -> float32 tensor [C, H, W] in `range` (0 -> 0 or -1, 255 -> 1).
at::Tensor to_tensor(const Image& image, PixelRange range = PixelRange::kMinusOneOne);

// Float tensor [C, H, W] in `range` -> 8-bit image; values are clamped and rounded to nearest.
// Any dtype/device is accepted (it is moved to CPU float32). UsageError on other shapes.
Image from_tensor(const at::Tensor& chw, PixelRange range = PixelRange::kMinusOneOne);

// Resizes so that the shorter side becomes `size` and the longer keeps the aspect ratio
// (long * size / short, truncated, as torchvision's Resize(int)). The filter is a triangle
// (tent) filter whose support widens when downscaling, i.e. bilinear with antialiasing like
// PIL / torchvision (antialias=True); edges are clamped.
Image resize_shorter_side(const Image& image, int size);

// Resizes to exactly width x height with the same filter.
Image resize(const Image& image, int width, int height);

// Crops a `height` x `width` window whose top-left corner is (x0, y0); UsageError if outside.
Image crop(const Image& image, int x0, int y0, int width, int height);

// Center crop to size x size with the official offsets: y0 = round((H - size) / 2), same for x.
Image center_crop(const Image& image, int size);

// Mirrors left-right.
Image flip_horizontal(const Image& image);

// Tiles images (all of the same size and channel count) into a grid with `columns` columns,
// `margin` pixels between and around the tiles filled with `fill` (grey level).
Image make_grid(const std::vector<Image>& images, int columns, int margin = 2, uint8_t fill = 255);

}  // namespace dro::io
