// Pillow's Image.resize((w, h), resample) for the modes of vision/decode.h, bit for bit: the
// separable convolution of libImaging/Resample.c (double-precision coefficients whose support
// widens with the downscale factor, converted to 22-bit fixed point, a horizontal pass rounded to
// 8 bits, then a vertical pass), NEAREST as ImagingScaleAffine, and Image.resize's mode rules:
// "1" and "P" always NEAREST; "RGBA" / "LA" resized in premultiplied alpha (RGBa / La, with
// Convert.c's rounding both ways); "I;16" with the 16-bit double-precision path.
// As transformers and torchvision call it: no box, reducing_gap=None (no reduce() step). Not the
// Pillow >= 12.2 special case for images over 100 times taller than wide (vertical pass first).
#pragma once

#include "dro/io/image.h"
#include "dro/vision/decode.h"

namespace dro::vision {

// PIL's filter numbering (Image.Resampling): transformers' `resample` field uses it.
enum class Resample : int {
  kNearest = 0,
  kLanczos = 1,
  kBilinear = 2,
  kBicubic = 3,
  kBox = 4,
  kHamming = 5,
};

// The filter for a PIL code 0..5; UsageError naming `where` otherwise.
Resample resample_from_code(int code, const std::string& where);
const char* resample_name(Resample filter);

// Resample.c on an 8-bit image, each of its 1-4 channels on its own (no alpha handling).
// `filter` must not be kNearest. Same size returns a copy.
io::Image resample_bands(const io::Image& image, int width, int height, Resample filter);

// Pillow's NEAREST resize (pixel centres mapped with an accumulated step, as Geometry.c does).
io::Image resize_nearest(const io::Image& image, int width, int height);

// Image.resize((width, height), filter) with PIL's handling of the image's mode. UsageError for a
// non-positive size or an unsupported mode.
PilImage pil_resize(const PilImage& image, int width, int height, Resample filter);

// Convert.c's RGBA -> RGBa / LA -> La (premultiply: c * a / 255 rounded) and back (c * 255 / a
// truncated, clipped; a of 0 or 255 leaves c as is), on the last channel as alpha (2 or 4
// channels).
io::Image premultiply_alpha(const io::Image& image);
io::Image unpremultiply_alpha(const io::Image& image);

}  // namespace dro::vision
