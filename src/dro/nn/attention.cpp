#include "dro/nn/attention.h"

#include <algorithm>
#include <cmath>

#include "dro/core/compat.h"
#include "dro/core/error.h"
#include "dro/nn/functional.h"

namespace dro::nn {
namespace {

#if !DRO_TORCH2

// Bytes of attention scores formed at a time: a block of a few MB stays in cache.
constexpr int64_t kScoreBlockBytes = int64_t(4) << 20;

// Query rows per block for [BH, S_kv] keys.
int64_t block_rows(const torch::Tensor& q, int64_t S_kv) {
  return std::clamp<int64_t>(kScoreBlockBytes / (q.element_size() * q.size(0) * S_kv), 1,
                             q.size(1));
}

// Blocked attention for LibTorch 1.x, which has no fused kernel. Scores are formed for a block of
// query rows at a time and normalised in place, so they stay in cache instead of streaming
// B*heads*S*S floats through memory several times, and backward recomputes them block by block
// instead of storing them (memory O(S) instead of O(S^2)). At S = 1024 this is about twice as fast
// as the classic path on a CPU core. Forward with and without a graph, and the recomputation in
// backward, do the same arithmetic, so gradient checkpointing sees identical values.
// q: [BH, S, d], k / v: [BH, S_kv, d] -> [BH, S, d]
struct BlockedAttention : torch::autograd::Function<BlockedAttention> {
  static double scale(const torch::Tensor& q) {
    return 1.0 / std::sqrt(static_cast<double>(q.size(2)));
  }

  // P for query rows [r, r + n): softmax(qs[r:r+n] k^T) -> [BH, n, S_kv]
  static torch::Tensor probs(const torch::Tensor& qs, const torch::Tensor& kt, int64_t r,
                             int64_t n) {
    torch::Tensor p = torch::bmm(qs.narrow(1, r, n), kt);
    at::_softmax_out(p, p, -1, false);
    return p;
  }

  static torch::Tensor run(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    const int64_t S = q.size(1), rows = block_rows(q, k.size(1));
    const torch::Tensor qs = q * scale(q), kt = k.transpose(1, 2);  // kt: [BH, d, S_kv]
    torch::Tensor out = torch::empty_like(q);
    for (int64_t r = 0; r < S; r += rows) {
      const int64_t n = std::min(rows, S - r);
      torch::Tensor dst = out.narrow(1, r, n);
      torch::bmm_out(dst, probs(qs, kt, r, n), v);
    }
    return out;
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v) {
    torch::Tensor out = run(q, k, v);
    ctx->save_for_backward({q, k, v, out});
    return out;
  }

  // dV = P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dQ = dS K * scale, dK = dS^T Q * scale.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3];
    const torch::Tensor d_out = grads[0].contiguous();
    const int64_t S = q.size(1), rows = block_rows(q, k.size(1));
    const double sc = scale(q);
    const torch::Tensor qs = q * sc, kt = k.transpose(1, 2), vt = v.transpose(1, 2);
    const torch::Tensor delta = (d_out * out).sum(-1, true);  // [BH, S, 1]
    torch::Tensor dq = torch::empty_like(q), dk = torch::zeros_like(k), dv = torch::zeros_like(v);
    for (int64_t r = 0; r < S; r += rows) {
      const int64_t n = std::min(rows, S - r);
      const torch::Tensor dO = d_out.narrow(1, r, n);  // [BH, n, d]
      const torch::Tensor p = probs(qs, kt, r, n);     // [BH, n, S_kv]
      dv.baddbmm_(p.transpose(1, 2), dO);
      torch::Tensor ds = torch::bmm(dO, vt).sub_(delta.narrow(1, r, n)).mul_(p);  // [BH, n, S_kv]
      torch::Tensor dq_rows = dq.narrow(1, r, n);
      torch::bmm_out(dq_rows, ds, k).mul_(sc);
      dk.baddbmm_(ds.transpose(1, 2), qs.narrow(1, r, n));
    }
    return {dq, dk, dv};
  }
};

// softmax(q k^T / sqrt(d)) v on [B, h, S, d] views -> [B, h, S, d], through BlockedAttention.
torch::Tensor blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v) {
  const int64_t B = q.size(0), h = q.size(1), d = q.size(3);
  const torch::Tensor qq = q.reshape({B * h, -1, d});
  const torch::Tensor kk = k.reshape({B * h, -1, d});
  const torch::Tensor vv = v.reshape({B * h, -1, d});
  const bool graph = q.requires_grad() || k.requires_grad() || v.requires_grad();
  torch::Tensor out = graph && torch::GradMode::is_enabled() ? BlockedAttention::apply(qq, kk, vv)
                                                             : BlockedAttention::run(qq, kk, vv);
  return out.view({B, h, -1, d});
}
#endif  // !DRO_TORCH2

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
      "to_q", Linear(LinearOptions(options.query_dim, inner).bias(options.bias)));
  to_k =
      register_module("to_k", Linear(LinearOptions(ctx_dim, inner).bias(options.bias)));
  to_v =
      register_module("to_v", Linear(LinearOptions(ctx_dim, inner).bias(options.bias)));
  // diffusers keeps [Linear, Dropout] in a ModuleList, hence the key "to_out.0".
  to_out = Linear(LinearOptions(inner, options.query_dim).bias(options.out_bias));
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
  if (group_norm) h = norm(group_norm, h);  // GroupNorm treats [B, C, H, W] and [B, C, H*W] alike
  // tokens: [B, S, D] (a transposed view for images)
  torch::Tensor tokens = image ? h.flatten(2).transpose(1, 2) : h;
  const torch::Tensor& kv_in = context.defined() ? context : tokens;

  const int64_t heads = options.heads, d = options.dim_head;
  // q: [B, heads, S, d]; k, v: [B, heads, S_ctx, d]
  torch::Tensor q = to_q(tokens).view({B, -1, heads, d}).transpose(1, 2);
  torch::Tensor k = to_k(kv_in).view({B, -1, heads, d}).transpose(1, 2);
  torch::Tensor v = to_v(kv_in).view({B, -1, heads, d}).transpose(1, 2);
  // LibTorch 2.x has fused attention (compat); 1.x gets the blocked kernel above, except for
  // reduced-precision inputs that ask for float32 scores.
#if DRO_TORCH2
  torch::Tensor o = compat::attention(q, k, v, {}, options.upcast_attention);
#else
  torch::Tensor o = !options.upcast_attention || q.scalar_type() == torch::kFloat
                        ? blocked_attention(q, k, v)
                        : compat::attention(q, k, v, {}, options.upcast_attention);
#endif
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
