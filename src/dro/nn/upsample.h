// diffusers `Upsample2D` with a convolution (upsampling.py): nearest-neighbour 2x (or to an
// explicit size, which the UNet passes when the latent size is not a multiple of its total
// downsampling) followed by a 3x3 conv. Not here: transposed convolutions, norms, FIR kernels.
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

namespace dro::nn {

struct Upsample2DImpl : torch::nn::Module {
  Upsample2DImpl(int64_t channels, int64_t out_channels);
  // x: [B, C, H, W] -> [B, out, 2H, 2W], or [B, out, size[0], size[1]] when size is given
  torch::Tensor forward(const torch::Tensor& x,
                        c10::optional<std::vector<int64_t>> size = c10::nullopt);

  Conv2d conv{nullptr};  // [out, C, 3, 3]
};
TORCH_MODULE(Upsample2D);

}  // namespace dro::nn
