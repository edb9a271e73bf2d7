// diffusers `ResnetBlock2D` (resnet.py) with time_embedding_norm "default": two GroupNorm-SiLU-conv
// stages, the time embedding added between them, a 1x1 conv shortcut when channels change.
// Not here: up/down-sampling inside the block, scale_shift / ada_group norms, FIR kernels.
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

namespace dro::nn {

struct ResnetBlock2DOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;   // 0: same as in_channels
  int64_t temb_channels = 0;  // 0: no time embedding (VAE blocks)
  int64_t groups = 32;
  double eps = 1e-6;
  double dropout = 0.0;
  double output_scale_factor = 1.0;
};

struct ResnetBlock2DImpl : torch::nn::Module {
  explicit ResnetBlock2DImpl(const ResnetBlock2DOptions& options);
  // x: [B, in, H, W], temb: [B, temb_channels] or undefined -> [B, out, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});

  ResnetBlock2DOptions options;
  torch::nn::GroupNorm norm1{nullptr};  // [in]
  Conv2d conv1{nullptr};                // [out, in, 3, 3]
  Linear time_emb_proj{nullptr};        // [out, temb_channels], absent without temb
  torch::nn::GroupNorm norm2{nullptr};  // [out]
  Conv2d conv2{nullptr};                // [out, out, 3, 3]
  Conv2d conv_shortcut{nullptr};        // [out, in, 1, 1], only when in != out
};
TORCH_MODULE(ResnetBlock2D);

}  // namespace dro::nn
