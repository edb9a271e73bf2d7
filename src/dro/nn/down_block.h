// The down blocks of diffusers' unet_2d_blocks.py: DownBlock2D (resnets), CrossAttnDownBlock2D
// (each resnet followed by a Transformer2DModel) and the VAE's DownEncoderBlock2D (resnets without
// time embedding, downsampler padding 0) are one module here; they differ only in options.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "dro/nn/block_common.h"
#include "dro/nn/downsample.h"

namespace dro::nn {

struct DownBlock2DImpl : torch::nn::Module {
  explicit DownBlock2DImpl(const BlockOptions& options);
  // x: [B, in, H, W], temb: [B, temb] or undefined, context: [B, S, D] (cross-attention blocks)
  // -> [B, out, H', W'] (H' = H/2 with a downsampler). Every intermediate state that the matching
  // up block consumes as a skip connection is appended to `skips` when it is given.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb,
                        const torch::Tensor& context, std::vector<torch::Tensor>* skips);
  void set_gradient_checkpointing(bool on);

  BlockOptions options;
  bool gradient_checkpointing = false;
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;  // empty for non-attention blocks
  Downsample2D downsampler{nullptr};           // "downsamplers.0"
};
TORCH_MODULE(DownBlock2D);

}  // namespace dro::nn
