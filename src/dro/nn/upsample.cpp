#include "dro/nn/upsample.h"

#include "dro/core/compat.h"

namespace dro::nn {

Upsample2DImpl::Upsample2DImpl(int64_t channels, int64_t out_channels) {
  conv = register_module(
      "conv", Conv2d(torch::nn::Conv2dOptions(channels, out_channels, 3).padding(1)));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x,
                                      c10::optional<std::vector<int64_t>> size) {
  // Older LibTorch lacks bfloat16 nearest upsampling on CUDA; diffusers upcasts there too.
  const bool upcast = !DRO_TORCH2 && x.scalar_type() == torch::kBFloat16;
  const torch::Tensor in = upcast ? x.to(torch::kFloat) : x;
  torch::Tensor h = size ? torch::upsample_nearest2d(in, *size)
                         : torch::upsample_nearest2d(in, {2 * x.size(2), 2 * x.size(3)}, 2.0, 2.0);
  if (upcast) h = h.to(x.scalar_type());
  return conv(h);
}

}  // namespace dro::nn
