// Small tensor helpers shared by the model blocks.
#pragma once

#include <torch/torch.h>

namespace dro::nn {

// out + residual. When no graph is recorded for them (inference, frozen weights) the sum is
// written into `out`, which saves an allocation per block; otherwise it is a plain add, because
// `out` is often a view (linear on [B, S, D]) and in-place writes to views cost an extra copy in
// backward.
inline torch::Tensor add_residual(torch::Tensor out, const torch::Tensor& residual) {
  if (out.requires_grad() || residual.requires_grad()) return out + residual;
  return out.add_(residual);
}

}  // namespace dro::nn
