// The mid blocks of diffusers' unet_2d_blocks.py: UNetMidBlock2DCrossAttn (UNet: resnet, then
// spatial transformer + resnet per layer) and UNetMidBlock2D (VAE: resnet, then single-head image
// self-attention + resnet per layer, attention optional).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "dro/nn/attention.h"
#include "dro/nn/block_common.h"

namespace dro::nn {

// options.in_channels == out_channels; num_layers counts the (attention, resnet) pairs after the
// first resnet (1 in diffusers' UNets).
struct UNetMidBlock2DCrossAttnImpl : torch::nn::Module {
  explicit UNetMidBlock2DCrossAttnImpl(const BlockOptions& options);
  // x: [B, C, H, W], temb: [B, temb], context: [B, S, D] -> [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb,
                        const torch::Tensor& context);
  void set_gradient_checkpointing(bool on);

  BlockOptions options;
  bool gradient_checkpointing = false;
  std::vector<ResnetBlock2D> resnets;          // num_layers + 1
  std::vector<Transformer2DModel> attentions;  // num_layers
};
TORCH_MODULE(UNetMidBlock2DCrossAttn);

struct UNetMidBlock2DImpl : torch::nn::Module {
  // add_attention: diffusers' mid_block_add_attention.
  UNetMidBlock2DImpl(const BlockOptions& options, bool add_attention);
  // x: [B, C, H, W], temb: [B, temb] or undefined -> [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});

  BlockOptions options;
  std::vector<ResnetBlock2D> resnets;  // num_layers + 1
  std::vector<Attention> attentions;   // num_layers, or none without attention
};
TORCH_MODULE(UNetMidBlock2D);

}  // namespace dro::nn
