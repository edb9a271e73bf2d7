#include "dro/nn/transformer_block.h"

#include "dro/nn/functional.h"

namespace dro::nn {

BasicTransformerBlockImpl::BasicTransformerBlockImpl(const TransformerBlockOptions& o)
    : options(o) {
  auto layer_norm = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.dim}).eps(options.norm_eps));
  };
  AttentionOptions a;
  a.query_dim = options.dim;
  a.heads = options.heads;
  a.dim_head = options.dim_head;
  a.upcast_attention = options.upcast_attention;
  a.dropout = options.dropout;

  norm1 = register_module("norm1", layer_norm());
  AttentionOptions a1 = a;
  if (options.only_cross_attention) a1.cross_attention_dim = options.cross_attention_dim;
  attn1 = register_module("attn1", Attention(a1));
  if (options.cross_attention_dim > 0) {
    norm2 = register_module("norm2", layer_norm());
    AttentionOptions a2 = a;
    a2.cross_attention_dim = options.cross_attention_dim;
    attn2 = register_module("attn2", Attention(a2));
  }
  norm3 = register_module("norm3", layer_norm());
  ff = register_module("ff", FeedForward(options.dim, 4, options.dropout));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x,
                                                 const torch::Tensor& context) {
  torch::Tensor h =
      add_residual(attn1(norm(norm1, x), options.only_cross_attention ? context : torch::Tensor()), x);
  if (attn2) h = add_residual(attn2(norm(norm2, h), context), h);
  return add_residual(ff(norm(norm3, h)), h);
}

}  // namespace dro::nn
