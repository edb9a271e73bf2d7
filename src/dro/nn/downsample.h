// diffusers `Downsample2D` with a convolution (downsampling.py): a 3x3 conv with stride 2. With
// padding 0 (the VAE encoder) the input is first padded by one pixel on the right and bottom only,
// as diffusers does. Not here: the average-pool variant and the optional norms.
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

namespace dro::nn {

struct Downsample2DImpl : torch::nn::Module {
  Downsample2DImpl(int64_t channels, int64_t out_channels, int64_t padding);
  // x: [B, C, H, W] -> [B, out, ceil(H/2), ceil(W/2)] (padding 1) / [B, out, H/2, W/2] (padding 0)
  torch::Tensor forward(const torch::Tensor& x);

  int64_t padding;
  Conv2d conv{nullptr};  // [out, C, 3, 3]; the key is "conv" (diffusers' name "op")
};
TORCH_MODULE(Downsample2D);

}  // namespace dro::nn
