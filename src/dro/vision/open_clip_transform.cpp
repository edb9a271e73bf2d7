#include "dro/vision/open_clip_transform.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "dro/core/error.h"

namespace dro::vision {

torch::Tensor resize_bicubic_antialias(const torch::Tensor& chw, int height, int width) {
  namespace F = torch::nn::functional;
  // torchvision _cast_squeeze_in adds the batch dimension; interpolate with an output size (no
  // scale factors) calls _upsample_bicubic2d_aa in LibTorch 1.13 and 2.x alike
  auto out = F::interpolate(chw.unsqueeze(0), F::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{height, width})
                                                  .mode(torch::kBicubic)
                                                  .align_corners(false)
                                                  .antialias(true));
  return out.squeeze(0);
}

OpenClipTransformResult open_clip_transform(const PilImage& image,
                                            const OpenClipTransformOptions& o) {
  const int S = o.image_size;
  if (S <= 0) throw UsageError(cat("[transform] open_clip: image_size must be positive, got ", S));
  OpenClipTransformResult r;
  r.reference_rgba = image.mode == "RGBA";
  if (o.resize == OpenClipResize::kShortestCrop) {
    // open_clip's Resize + CenterCrop + _convert_to_rgb: RGB out whatever the mode
    r.reference_rgba = false;
    auto t = clip_style_pil_transform(image, S, o.mean, o.stdev);
    r.pixel_values = t.pixel_values;
    r.resize_hw = t.resize_hw;
    r.crop_top_left = t.crop_top_left;
    return r;
  }

  // _convert_to_rgb_or_rgba, ToTensor
  const bool keep_alpha = r.reference_rgba && !o.drop_alpha;
  const io::Image px = keep_alpha ? image.image : convert_to_rgb(image);
  auto hwc = torch::from_blob(const_cast<uint8_t*>(px.pixels.data()),
                              {px.height, px.width, px.channels}, torch::kUInt8);
  torch::Tensor x = hwc.permute({2, 0, 1}).contiguous().to(torch::kFloat32).div(255);  // [C, H, W]

  // ResizeMaxSize
  const int h = px.height, w = px.width;
  const double scale = S / static_cast<double>(std::max(h, w));
  r.resize_hw = {h, w};
  bool pad = true;
  if (scale != 1.0) {
    r.resize_hw = {static_cast<int>(std::nearbyint(h * scale)),
                   static_cast<int>(std::nearbyint(w * scale))};
    if (r.resize_hw[0] <= 0 || r.resize_hw[1] <= 0)
      throw UsageError(cat("[transform] open_clip: a ", w, "x", h, " image resizes to ",
                           r.resize_hw[1], "x", r.resize_hw[0], " at size ", S, " (too thin)"));
    // torchvision's resize skips an image already at the output size
    if (r.resize_hw[0] != h || r.resize_hw[1] != w)
      x = resize_bicubic_antialias(x, r.resize_hw[0], r.resize_hw[1]);
  } else {
    r.reference_not_square = h != w;
    pad = o.pad_unscaled && h != w;
  }
  if (pad) {
    const int ph = S - r.resize_hw[0], pw = S - r.resize_hw[1];
    r.pad_ltrb = {pw / 2, ph / 2, pw - pw / 2, ph - ph / 2};
    if (ph != 0 || pw != 0) {
      namespace F = torch::nn::functional;
      x = F::pad(x, F::PadFuncOptions({r.pad_ltrb[0], r.pad_ltrb[2], r.pad_ltrb[1], r.pad_ltrb[3]})
                        .mode(torch::kConstant)
                        .value(0));
    }
  }

  // MaskAwareNormalize: Normalize on channels 0-2, in place in float32
  auto m = torch::tensor({float(o.mean[0]), float(o.mean[1]), float(o.mean[2])}).view({3, 1, 1});
  auto s = torch::tensor({float(o.stdev[0]), float(o.stdev[1]), float(o.stdev[2])}).view({3, 1, 1});
  x = x.contiguous();
  x.narrow(0, 0, 3).sub_(m).div_(s);
  r.pixel_values = x;
  return r;
}

}  // namespace dro::vision
