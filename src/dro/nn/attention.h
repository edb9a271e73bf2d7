// diffusers `Attention` (attention_processor.py) with its default processor: multi-head scaled
// dot-product attention with to_q / to_k / to_v / to_out.0 projections. Two forms are used:
//  * in transformer blocks: tokens [B, S, D], optional cross-attention context [B, S_ctx, D_ctx];
//  * in the VAE mid block: an image [B, C, H, W] with group_norm on the input, one head, and a
//    residual connection (the "_from_deprecated_attn_block" layout).
// Not here: attention masks, added KV projections, q/k norms, spatial norm, sliced attention.
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

namespace dro::nn {

struct AttentionOptions {
  int64_t query_dim = 0;
  int64_t cross_attention_dim = 0;  // 0: self-attention (keys/values from the query input)
  int64_t heads = 8;
  int64_t dim_head = 64;
  bool bias = false;              // bias of to_q / to_k / to_v
  bool out_bias = true;           // bias of to_out.0
  bool upcast_attention = false;  // scores in float32 (SD 2.x configs)
  double dropout = 0.0;
  int64_t norm_num_groups = 0;  // > 0: GroupNorm `group_norm` on the input (VAE form)
  double eps = 1e-5;            // of group_norm
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
};

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const AttentionOptions& options);
  // x: [B, S, D] or [B, C, H, W]; context: [B, S_ctx, D_ctx] or undefined -> same shape as x
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});

  AttentionOptions options;
  torch::nn::GroupNorm group_norm{nullptr};  // [D], VAE form only
  Linear to_q{nullptr};                      // [heads*dim_head, D]
  Linear to_k{nullptr};                      // [heads*dim_head, D_ctx]
  Linear to_v{nullptr};                      // [heads*dim_head, D_ctx]
  Linear to_out{nullptr};                    // "to_out.0": [D, heads*dim_head]
};
TORCH_MODULE(Attention);

}  // namespace dro::nn
