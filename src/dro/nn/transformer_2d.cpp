#include "dro/nn/transformer_2d.h"

#include "dro/core/error.h"
#include "dro/nn/functional.h"
#include "dro/nn/checkpoint.h"

namespace dro::nn {

Transformer2DModelImpl::Transformer2DModelImpl(const Transformer2DOptions& o) : options(o) {
  const int64_t C = options.in_channels, inner = options.heads * options.dim_head;
  if (C % options.norm_num_groups != 0)
    throw UsageError(cat("[transformer] ", C, " channels are not divisible by ",
                         options.norm_num_groups, " norm groups"));
  norm = register_module(
      "norm",
      torch::nn::GroupNorm(torch::nn::GroupNormOptions(options.norm_num_groups, C).eps(1e-6)));
  if (options.use_linear_projection) {
    proj_in_linear = register_module("proj_in", Linear(C, inner));
    proj_out_linear = register_module("proj_out", Linear(inner, C));
  } else {
    proj_in_conv =
        register_module("proj_in", Conv2d(torch::nn::Conv2dOptions(C, inner, 1)));
    proj_out_conv =
        register_module("proj_out", Conv2d(torch::nn::Conv2dOptions(inner, C, 1)));
  }
  TransformerBlockOptions b;
  b.dim = inner;
  b.heads = options.heads;
  b.dim_head = options.dim_head;
  b.cross_attention_dim = options.cross_attention_dim;
  b.only_cross_attention = options.only_cross_attention;
  b.upcast_attention = options.upcast_attention;
  b.dropout = options.dropout;
  for (int64_t i = 0; i < options.num_layers; ++i) {
    blocks_.emplace_back(b);
    transformer_blocks->push_back(blocks_.back());
  }
  register_module("transformer_blocks", transformer_blocks);
}

namespace {

// proj_in / proj_out on [B, S, in] tokens, a 1x1 conv's adapter as its [r, in] / [out, r] matrices.
torch::Tensor token_projection(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& b,
                               const LoraSlots& slots, bool training) {
  torch::Tensor y = torch::linear(h, w, b);
  if (const LoraWeights* a = slots.active()) {
    LoraWeights flat = *a;
    flat.down = a->down.flatten(1);
    flat.up = a->up.flatten(1);
    y = add_lora(y, flat, h, training);
  }
  return y;
}

}  // namespace

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x,
                                              const torch::Tensor& context) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t inner = options.heads * options.dim_head;
  // A 1x1 convolution is a linear map over channels; applying it to the [B, H*W, C] tokens
  // (Conv2d weight [out, in, 1, 1] viewed as [out, in]) saves diffusers' NCHW round trip.
  const bool linear = options.use_linear_projection;
  const torch::Tensor& w_in = linear ? proj_in_linear->weight : proj_in_conv->weight;
  const torch::Tensor& b_in = linear ? proj_in_linear->bias : proj_in_conv->bias;
  const torch::Tensor& w_out = linear ? proj_out_linear->weight : proj_out_conv->weight;
  const torch::Tensor& b_out = linear ? proj_out_linear->bias : proj_out_conv->bias;
  // tokens: [B, H*W, C] (the one copy: NCHW -> NHWC)
  torch::Tensor h = nn::norm(norm, x).permute({0, 2, 3, 1}).reshape({B, H * W, C});
  const LoraSlots& lora_in = linear ? proj_in_linear->lora : proj_in_conv->lora;
  const LoraSlots& lora_out = linear ? proj_out_linear->lora : proj_out_conv->lora;
  h = token_projection(h, w_in.view({inner, C}), b_in, lora_in, is_training());  // [B, H*W, inner]
  for (auto& block : blocks_) {
    if (should_checkpoint(gradient_checkpointing)) {
      auto b = block.ptr();
      h = checkpoint(
          [b, slot = current_lora_slot()](const std::vector<torch::Tensor>& in) {
            LoraScope scope(slot);  // the recomputation may run on autograd's device thread
            return b->forward(in[0], in[1]);
          },
          {h, context}, parameters_with_lora(*b));
    } else {
      h = block->forward(h, context);
    }
  }
  h = token_projection(h, w_out.view({C, inner}), b_out, lora_out, is_training());  // [B, H*W, C]
  // Residual first: the sum is laid out like x (NCHW) and reads the NHWC view in place.
  return x + h.view({B, H, W, C}).permute({0, 3, 1, 2});
}

}  // namespace dro::nn
