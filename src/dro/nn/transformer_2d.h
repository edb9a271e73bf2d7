// diffusers `Transformer2DModel` (transformers/transformer_2d.py) for continuous inputs, the
// spatial transformer of Stable Diffusion UNets: GroupNorm (eps 1e-6), proj_in (1x1 conv, or a
// linear layer when use_linear_projection), BasicTransformerBlocks over the H*W tokens, proj_out,
// plus the input as residual. Not here: patched / vectorized inputs, ada-norm configurations.
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

#include "dro/nn/transformer_block.h"

namespace dro::nn {

struct Transformer2DOptions {
  int64_t in_channels = 0;
  int64_t heads = 8;
  int64_t dim_head = 64;   // inner dim = heads * dim_head
  int64_t num_layers = 1;  // transformer_blocks
  int64_t cross_attention_dim = 0;
  int64_t norm_num_groups = 32;
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;
  double dropout = 0.0;
};

struct Transformer2DModelImpl : torch::nn::Module {
  explicit Transformer2DModelImpl(const Transformer2DOptions& options);
  // x: [B, C, H, W], context: [B, S_ctx, cross_attention_dim] -> [B, C, H, W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  // Recompute each transformer block in backward instead of keeping its activations.
  void set_gradient_checkpointing(bool on) { gradient_checkpointing = on; }

  Transformer2DOptions options;
  bool gradient_checkpointing = false;
  torch::nn::GroupNorm norm{nullptr};  // [C]
  // "proj_in" / "proj_out": 1x1 convs [inner, C, 1, 1] / [C, inner, 1, 1], or with
  // use_linear_projection linears [inner, C] / [C, inner]. One pair is set, the other is null.
  Conv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};
  Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};
  torch::nn::ModuleList transformer_blocks;  // of BasicTransformerBlock

 private:
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(Transformer2DModel);

}  // namespace dro::nn
