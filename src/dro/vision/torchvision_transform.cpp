#include "dro/vision/torchvision_transform.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "dro/core/error.h"

namespace dro::vision {

std::array<int, 2> torchvision_resize_size(int height, int width, int size) {
  if (size <= 0 || height <= 0 || width <= 0)
    throw UsageError(cat("[transform] resize: sizes must be positive, got image ", width, "x",
                         height, " and size ", size));
  // functional._compute_resized_output_size: int(size * long / short) in double precision
  const int64_t shorter = std::min(height, width), longer = std::max(height, width);
  const int new_long =
      static_cast<int>(static_cast<double>(int64_t(size) * longer) / static_cast<double>(shorter));
  return width <= height ? std::array<int, 2>{new_long, size} : std::array<int, 2>{size, new_long};
}

std::array<int, 2> torchvision_crop_offsets(int height, int width, int crop_height,
                                            int crop_width) {
  if (crop_height > height || crop_width > width)
    throw UsageError(cat("[transform] center crop: ", crop_width, "x", crop_height,
                         " does not fit a ", width, "x", height, " image"));
  // int(round((H - C) / 2.0)): nearbyint rounds halves to even like Python's round
  return {static_cast<int>(std::nearbyint((height - crop_height) / 2.0)),
          static_cast<int>(std::nearbyint((width - crop_width) / 2.0))};
}

torch::Tensor to_normalized_tensor(const io::Image& image, const std::array<double, 3>& mean,
                                   const std::array<double, 3>& stdev) {
  if (image.channels != 3 && image.channels != 4)
    throw UsageError(cat("[transform] normalize: 3 or 4 channels expected, got ", image.channels));
  // ToTensor: [H, W, C] uint8 -> [C, H, W] float32 / 255
  auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                              {image.height, image.width, image.channels}, torch::kUInt8);
  auto x = hwc.permute({2, 0, 1}).contiguous().to(torch::kFloat32).div(255);
  // Normalize: in-place sub_ / div_ per channel in float32
  auto m = torch::tensor({float(mean[0]), float(mean[1]), float(mean[2])}).view({3, 1, 1});
  auto s = torch::tensor({float(stdev[0]), float(stdev[1]), float(stdev[2])}).view({3, 1, 1});
  auto rgb = x.narrow(0, 0, 3);
  rgb.sub_(m).div_(s);
  return x;
}

TorchvisionTransformResult clip_style_pil_transform(const PilImage& image, int size,
                                                    const std::array<double, 3>& mean,
                                                    const std::array<double, 3>& stdev,
                                                    Resample filter) {
  TorchvisionTransformResult r;
  r.resize_hw = torchvision_resize_size(image.height(), image.width(), size);
  // functional.resize returns the image untouched when it already has the output size
  PilImage resized = (r.resize_hw[0] == image.height() && r.resize_hw[1] == image.width())
                         ? image
                         : pil_resize(image, r.resize_hw[1], r.resize_hw[0], filter);
  r.crop_top_left = torchvision_crop_offsets(r.resize_hw[0], r.resize_hw[1], size, size);
  io::Image rgb = convert_to_rgb(resized);
  rgb = io::crop(rgb, r.crop_top_left[1], r.crop_top_left[0], size, size);
  r.pixel_values = to_normalized_tensor(rgb, mean, stdev);
  return r;
}

TorchvisionTransformResult imagereward_transform(const PilImage& image, int size) {
  return clip_style_pil_transform(image, size, kClipMean, kClipStd, Resample::kBicubic);
}

}  // namespace dro::vision
