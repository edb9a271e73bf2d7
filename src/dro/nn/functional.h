// Small tensor helpers shared by the model blocks.
#pragma once

#include <torch/torch.h>

#include "dro/core/compat.h"

namespace dro::nn {

// out + residual. When no graph is recorded for them (inference, frozen weights) the sum is
// written into `out`, which saves an allocation per block; otherwise it is a plain add, because
// `out` is often a view (linear on [B, S, D]) and in-place writes to views cost an extra copy in
// backward.
// Under autocast `out` may be bf16 while the residual stream is float32: the sum then promotes to
// float32, which an in-place add into `out` would round away, so that case is a plain add too.
inline torch::Tensor add_residual(torch::Tensor out, const torch::Tensor& residual) {
  if (out.requires_grad() || residual.requires_grad()) return out + residual;
  if (at::result_type(out, residual) != out.scalar_type()) return out + residual;
  return out.add_(residual);
}

// GroupNorm / LayerNorm as autocast runs them on CUDA: in float32 (input and affine weights),
// also on the CPU, where LibTorch 1.13's autocast passes them bf16 activations with float32
// weights and fails. Outside autocast, the module as it is.
inline bool autocast_on_for(const torch::Tensor& x) {
  const auto a = compat::autocast_state();
  return x.is_cuda() ? a.cuda_enabled : x.is_cpu() && a.cpu_enabled;
}
inline torch::Tensor opt_float(const torch::Tensor& t) {
  return t.defined() ? t.to(torch::kFloat) : t;
}
inline torch::Tensor norm(torch::nn::GroupNorm& m, const torch::Tensor& x) {
  if (!autocast_on_for(x)) return m->forward(x);
  const auto& o = m->options;
  return torch::group_norm(x.to(torch::kFloat), o.num_groups(), opt_float(m->weight), opt_float(m->bias), o.eps());
}
inline torch::Tensor norm(torch::nn::LayerNorm& m, const torch::Tensor& x) {
  if (!autocast_on_for(x)) return m->forward(x);
  const auto& o = m->options;
  return torch::layer_norm(x.to(torch::kFloat), o.normalized_shape(), opt_float(m->weight), opt_float(m->bias), o.eps());
}

}  // namespace dro::nn
