// open_clip's evaluation transforms.
//
// kResizeMaxPad: `image_transform(size, is_train=False, resize_longest_max=True)` of HPSv2's
// bundled open_clip (hpsv2/src/open_clip/transform.py; HPSv2 and Diffusion-DRO's CLIP score,
// light_augmentation=True):
//   _convert_to_rgb_or_rgba  RGBA stays RGBA, every other mode -> convert("RGB")
//   ToTensor                 x / 255 in float32, [C, H, W]
//   ResizeMaxSize(size)      scale = size / max(H, W); scale == 1.0: nothing (no resize, no pad);
//                            else (round(H * scale), round(W * scale)) with Python's round (half
//                            to even), torchvision's tensor resize = interpolate(bicubic,
//                            align_corners=False, antialias=True) (no clamping), then zero padding
//                            [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2] (odd pixel
//                            right/bottom)
//   MaskAwareNormalize       channels 0-2 normalised, a 4th passed through
// The reference breaks on two inputs; the result says so, and options recover:
//   RGBA: 4 channels out (score.py asserts 3)       -> `drop_alpha` converts to RGB first;
//   longest side already `size`, not square (no pad) -> `pad_unscaled` pads it anyway.
//
// kShortestCrop: open_clip's default val transform (Resize(size) shortest edge + CenterCrop on the
// PIL image, then RGB, ToTensor, Normalize): see vision/torchvision_transform.h.
#pragma once

#include <array>

#include <torch/types.h>

#include "dro/vision/decode.h"
#include "dro/vision/torchvision_transform.h"

namespace dro::vision {

enum class OpenClipResize { kResizeMaxPad, kShortestCrop };

struct OpenClipTransformOptions {
  int image_size = 224;
  OpenClipResize resize = OpenClipResize::kResizeMaxPad;
  std::array<double, 3> mean = kClipMean;
  std::array<double, 3> stdev = kClipStd;
  bool drop_alpha = false;    // RGBA -> RGB before the transform (the reference keeps 4 channels)
  bool pad_unscaled = false;  // pad a non-square image whose longest side is already image_size
};

struct OpenClipTransformResult {
  torch::Tensor pixel_values;          // [C, H, W] float32; C 4 for RGBA kept, H != W when unpadded
  std::array<int, 2> resize_hw{};      // after the resize (the input size when it was skipped)
  std::array<int, 4> pad_ltrb{};       // kResizeMaxPad: zero padding left, top, right, bottom
  std::array<int, 2> crop_top_left{};  // kShortestCrop: CenterCrop offsets
  // What the reference does that the scorer cannot use, as it would have come out:
  bool reference_rgba = false;        // the reference output has 4 channels (RGBA input)
  bool reference_not_square = false;  // the reference output is not image_size x image_size
};

OpenClipTransformResult open_clip_transform(const PilImage& image,
                                            const OpenClipTransformOptions& options);

// torchvision's resize of a float tensor [C, H, W] to (height, width): bicubic, align_corners
// False, antialias True (torchvision >= 0.17's default), no clamping.
torch::Tensor resize_bicubic_antialias(const torch::Tensor& chw, int height, int width);

}  // namespace dro::vision
