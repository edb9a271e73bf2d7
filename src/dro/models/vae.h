// The encoder and decoder halves of AutoencoderKL (diffusers models/autoencoders/vae.py): conv_in,
// DownEncoderBlock2Ds / UpDecoderBlock2Ds, a mid block with single-head self-attention, then
// GroupNorm-SiLU-conv_out. All norms use eps 1e-6.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "dro/models/vae_config.h"
#include "dro/nn/down_block.h"
#include "dro/nn/mid_block.h"
#include "dro/nn/up_block.h"

namespace dro::models {

struct VaeEncoderImpl : torch::nn::Module {
  explicit VaeEncoderImpl(const VaeConfig& config);
  // image: [B, in_channels, H, W] -> moments [B, 2 * latent_channels, H/f, W/f] (mean, logvar)
  torch::Tensor forward(const torch::Tensor& image);

  bool gradient_checkpointing = false;  // recompute each down block and the mid block in backward
  torch::nn::Conv2d conv_in{nullptr};   // [C0, in_channels, 3, 3]
  std::vector<nn::DownBlock2D> down_blocks;
  nn::UNetMidBlock2D mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};  // [C_last]
  torch::nn::Conv2d conv_out{nullptr};          // [2 * latent_channels, C_last, 3, 3]
};
TORCH_MODULE(VaeEncoder);

struct VaeDecoderImpl : torch::nn::Module {
  explicit VaeDecoderImpl(const VaeConfig& config);
  // z: [B, latent_channels, h, w] -> [B, out_channels, h*f, w*f]
  torch::Tensor forward(const torch::Tensor& z);

  bool gradient_checkpointing = false;  // recompute the mid block and each up block in backward
  torch::nn::Conv2d conv_in{nullptr};   // [C_last, latent_channels, 3, 3]
  nn::UNetMidBlock2D mid_block{nullptr};
  std::vector<nn::UpBlock2D> up_blocks;
  torch::nn::GroupNorm conv_norm_out{nullptr};  // [C0]
  torch::nn::Conv2d conv_out{nullptr};          // [out_channels, C0, 3, 3]
};
TORCH_MODULE(VaeDecoder);

}  // namespace dro::models
