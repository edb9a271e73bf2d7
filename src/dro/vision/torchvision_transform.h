// torchvision's CLIP-style evaluation transform on a PIL image, as OpenAI CLIP, open_clip's
// default val transform and ImageReward compose it:
//   Resize(size, BICUBIC)   shortest edge -> size, other side int(size * long / short); PIL's
//                           resize of the image in its own mode (RGBA premultiplied, P nearest)
//   CenterCrop(size)        offsets round((H - size) / 2), Python's round half to even
//   convert("RGB"), ToTensor (x / 255 in float32), Normalize ((x - mean) / std in float32).
// (The Hugging Face processor differs: RGB first and floor offsets; see clip_image_processor.h.)
#pragma once

#include <array>

#include <torch/types.h>

#include "dro/vision/decode.h"
#include "dro/vision/pil_resize.h"

namespace dro::vision {

// OpenAI's CLIP normalisation constants (open_clip's OPENAI_DATASET_MEAN / _STD).
constexpr std::array<double, 3> kClipMean = {0.48145466, 0.4578275, 0.40821073};
constexpr std::array<double, 3> kClipStd = {0.26862954, 0.26130258, 0.27577711};

// torchvision Resize(int): the (height, width) after resizing the shortest edge to `size`.
std::array<int, 2> torchvision_resize_size(int height, int width, int size);

// torchvision CenterCrop: (top, left) = round((H - crop_h) / 2), round((W - crop_w) / 2), halves
// to even. The crop must fit (CenterCrop's padding of smaller images is not needed here).
std::array<int, 2> torchvision_crop_offsets(int height, int width, int crop_height, int crop_width);

struct TorchvisionTransformResult {
  torch::Tensor pixel_values;          // [3, size, size] float32
  std::array<int, 2> resize_hw{};      // after Resize (the input size when already right)
  std::array<int, 2> crop_top_left{};  // CenterCrop's offsets in the resized image
};

// Resize(size, filter) + CenterCrop(size) + convert("RGB") + ToTensor + Normalize(mean, stdev).
TorchvisionTransformResult clip_style_pil_transform(const PilImage& image, int size,
                                                    const std::array<double, 3>& mean = kClipMean,
                                                    const std::array<double, 3>& stdev = kClipStd,
                                                    Resample filter = Resample::kBicubic);

// ImageReward's `_transform(n_px)` (ImageReward/ImageReward.py): the transform above at n_px with
// the CLIP constants; the official model uses 224.
TorchvisionTransformResult imagereward_transform(const PilImage& image, int size = 224);

// ToTensor + Normalize of an RGB (or RGBA: the 4th channel passes un-normalised, as HPSv2's
// MaskAwareNormalize) 8-bit image: [C, H, W] float32.
torch::Tensor to_normalized_tensor(const io::Image& image, const std::array<double, 3>& mean,
                                   const std::array<double, 3>& stdev);

}  // namespace dro::vision
