// The up blocks of diffusers' unet_2d_blocks.py: UpBlock2D and CrossAttnUpBlock2D (each resnet
// takes the previous output concatenated with a skip connection from the down path; the cross-
// attention kind follows each resnet with a Transformer2DModel) and the VAE's UpDecoderBlock2D
// (plain resnets, no skips) are one module here; they differ only in options.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "dro/nn/block_common.h"
#include "dro/nn/upsample.h"

namespace dro::nn {

struct UpBlock2DImpl : torch::nn::Module {
  explicit UpBlock2DImpl(const BlockOptions& options);
  // x: [B, prev, H, W]; skips: the down path's states, consumed from the back (one per resnet;
  // null for the VAE decoder); temb: [B, temb] or undefined; context: [B, S, D] for cross-attention
  // blocks; upsample_size: explicit output size for odd latent sizes. -> [B, out, 2H, 2W]
  torch::Tensor forward(const torch::Tensor& x, std::vector<torch::Tensor>* skips,
                        const torch::Tensor& temb, const torch::Tensor& context,
                        const c10::optional<std::vector<int64_t>>& upsample_size = c10::nullopt);
  void set_gradient_checkpointing(bool on);

  BlockOptions options;
  bool gradient_checkpointing = false;
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;  // empty for non-attention blocks
  Upsample2D upsampler{nullptr};               // "upsamplers.0"
};
TORCH_MODULE(UpBlock2D);

}  // namespace dro::nn
