#include "dro/nn/attention.h"

#include <algorithm>
#include <cmath>

#include "dro/core/compat.h"
#include "dro/core/error.h"

namespace dro::nn {
namespace {

// Bytes of attention scores computed at a time by blocked_attention: a few MB stays in cache.
constexpr int64_t kScoreBlockBytes = int64_t(4) << 20;

// softmax(q k^T / sqrt(d)) v when no graph is recorded, for LibTorch 1.x, which has no fused
// kernel. The scores are formed for a block of query rows at a time and the softmax runs in place,
// so they stay in cache instead of streaming B*heads*S*S floats through memory three times: about
// twice as fast as the classic path at S = 1024 on a CPU core, with the same row-wise arithmetic.
// q: [B, h, S, d], k / v: [B, h, S_kv, d] -> [B*h, S, d]
torch::Tensor blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v) {
  const int64_t B = q.size(0), h = q.size(1), S = q.size(2), d = q.size(3), S_kv = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const torch::Tensor qs = (q * scale).reshape({B * h, S, d});
  const torch::Tensor kt = k.reshape({B * h, S_kv, d}).transpose(1, 2);  // [B*h, d, S_kv]
  const torch::Tensor vv = v.reshape({B * h, S_kv, d});
  const int64_t rows =
      std::clamp<int64_t>(kScoreBlockBytes / (q.element_size() * B * h * S_kv), 1, S);
  if (rows == S) {
    torch::Tensor scores = torch::bmm(qs, kt);  // [B*h, S, S_kv]
    at::_softmax_out(scores, scores, -1, false);
    return torch::bmm(scores, vv);
  }
  torch::Tensor out = torch::empty({B * h, S, d}, q.options());
  for (int64_t r = 0; r < S; r += rows) {
    const int64_t n = std::min(rows, S - r);
    torch::Tensor scores = torch::bmm(qs.narrow(1, r, n), kt);  // [B*h, n, S_kv]
    at::_softmax_out(scores, scores, -1, false);
    torch::Tensor dst = out.narrow(1, r, n);
    torch::bmm_out(dst, scores, vv);
  }
  return out;
}

}  // namespace

AttentionImpl::AttentionImpl(const AttentionOptions& o) : options(o) {
  const int64_t inner = options.heads * options.dim_head;
  const int64_t ctx_dim =
      options.cross_attention_dim > 0 ? options.cross_attention_dim : options.query_dim;
  using torch::nn::LinearOptions;
  if (options.norm_num_groups > 0)
    group_norm = register_module(
        "group_norm",
        torch::nn::GroupNorm(torch::nn::GroupNormOptions(options.norm_num_groups, options.query_dim)
                                 .eps(options.eps)));
  to_q = register_module(
      "to_q", torch::nn::Linear(LinearOptions(options.query_dim, inner).bias(options.bias)));
  to_k =
      register_module("to_k", torch::nn::Linear(LinearOptions(ctx_dim, inner).bias(options.bias)));
  to_v =
      register_module("to_v", torch::nn::Linear(LinearOptions(ctx_dim, inner).bias(options.bias)));
  // diffusers keeps [Linear, Dropout] in a ModuleList, hence the key "to_out.0".
  to_out = torch::nn::Linear(LinearOptions(inner, options.query_dim).bias(options.out_bias));
  torch::nn::ModuleList out_list;
  out_list->push_back(to_out);
  out_list->push_back(torch::nn::Dropout(options.dropout));
  register_module("to_out", out_list);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const bool image = x.dim() == 4;
  if (!image && x.dim() != 3)
    throw UsageError(cat("[attention] expected [B, S, D] or [B, C, H, W] input, got ", x.sizes()));
  const int64_t B = x.size(0);
  torch::Tensor h = x;
  if (group_norm) h = group_norm(h);  // GroupNorm treats [B, C, H, W] and [B, C, H*W] alike
  // tokens: [B, S, D] (a transposed view for images)
  torch::Tensor tokens = image ? h.flatten(2).transpose(1, 2) : h;
  const torch::Tensor& kv_in = context.defined() ? context : tokens;

  const int64_t heads = options.heads, d = options.dim_head;
  // q: [B, heads, S, d]; k, v: [B, heads, S_ctx, d]
  torch::Tensor q = to_q(tokens).view({B, -1, heads, d}).transpose(1, 2);
  torch::Tensor k = to_k(kv_in).view({B, -1, heads, d}).transpose(1, 2);
  torch::Tensor v = to_v(kv_in).view({B, -1, heads, d}).transpose(1, 2);
  torch::Tensor o;
  // Without a graph to record (no grad mode, or frozen weights and inputs) the in-place blocked
  // path applies.
  const bool graph = q.requires_grad() || k.requires_grad() || v.requires_grad();
  if (!DRO_TORCH2 && !graph && (!options.upcast_attention || q.scalar_type() == torch::kFloat)) {
    o = blocked_attention(q, k, v).view({B, heads, -1, d});
  } else {
    o = compat::attention(q, k, v, {}, options.upcast_attention);
  }
  // o: [B, heads, S, d] -> [B, S, heads*d]
  o = heads == 1 ? o.squeeze(1) : o.transpose(1, 2).reshape({B, -1, heads * d});
  o = to_out(o);
  if (options.dropout > 0.0) o = torch::dropout(o, options.dropout, is_training());
  if (image) o = o.transpose(1, 2).view(x.sizes());  // a channels-last-strided view of [B, S, C]
  if (options.residual_connection) o = x + o;        // x first: the sum is laid out NCHW like x
  if (options.rescale_output_factor != 1.0) o = o / options.rescale_output_factor;
  return o;
}

}  // namespace dro::nn
