// What the down / mid / up blocks of diffusers' unet_2d_blocks.py share: their settings, and how
// they build and run their resnets and spatial transformers.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "dro/nn/resnet_block.h"
#include "dro/nn/transformer_2d.h"

namespace dro::nn {

struct BlockOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t prev_output_channels = 0;  // UNet up blocks: channels from the block below (> 0 means
                                     // skip connections are concatenated; 0 for the VAE decoder)
  int64_t temb_channels = 0;         // 0: no time embedding (VAE)
  int64_t num_layers = 1;            // resnets (up blocks: layers_per_block + 1)
  int64_t groups = 32;
  double eps = 1e-6;
  double dropout = 0.0;
  double output_scale_factor = 1.0;
  bool add_sampler = false;        // downsamplers.0 / upsamplers.0
  int64_t downsample_padding = 1;  // 0: the VAE's asymmetric padding
  // Cross-attention blocks (CrossAttn*Block2D, UNetMidBlock2DCrossAttn): one Transformer2DModel
  // after each resnet.
  bool cross_attention = false;
  int64_t transformer_layers = 1;
  int64_t heads = 1;  // head size is out_channels / heads
  int64_t cross_attention_dim = 0;
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;
};

// The resnet of a block, taking `in_channels` and giving options.out_channels.
ResnetBlock2D make_block_resnet(const BlockOptions& options, int64_t in_channels);

// The spatial transformer of a cross-attention block over `channels` channels.
Transformer2DModel make_block_transformer(const BlockOptions& options, int64_t channels);

// resnet(x, temb), recomputed in backward when checkpointing is on and a graph is being built.
torch::Tensor run_resnet(ResnetBlock2D& resnet, const torch::Tensor& x, const torch::Tensor& temb,
                         bool checkpointing);

}  // namespace dro::nn
