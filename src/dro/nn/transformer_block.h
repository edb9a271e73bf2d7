// diffusers `BasicTransformerBlock` (attention.py) as Stable Diffusion uses it: pre-LayerNorm
// self-attention (norm1/attn1), cross-attention to the text (norm2/attn2) and a GEGLU MLP
// (norm3/ff), each added to the residual stream.
// Not here: ada-norm variants, positional embeddings, gated (GLIGEN) attention, chunked MLP.
#pragma once

#include <torch/torch.h>

#include "dro/nn/attention.h"
#include "dro/nn/feed_forward.h"

namespace dro::nn {

struct TransformerBlockOptions {
  int64_t dim = 0;
  int64_t heads = 8;
  int64_t dim_head = 64;
  int64_t cross_attention_dim = 0;    // 0: no cross-attention (no norm2/attn2)
  bool only_cross_attention = false;  // attn1 attends to the context too
  bool upcast_attention = false;
  double dropout = 0.0;
  double norm_eps = 1e-5;
};

struct BasicTransformerBlockImpl : torch::nn::Module {
  explicit BasicTransformerBlockImpl(const TransformerBlockOptions& options);
  // x: [B, S, dim], context: [B, S_ctx, cross_attention_dim] -> [B, S, dim]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

  TransformerBlockOptions options;
  torch::nn::LayerNorm norm1{nullptr};  // [dim]
  Attention attn1{nullptr};
  torch::nn::LayerNorm norm2{nullptr};  // [dim], with attn2
  Attention attn2{nullptr};
  torch::nn::LayerNorm norm3{nullptr};  // [dim]
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

}  // namespace dro::nn
