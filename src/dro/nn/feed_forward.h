// diffusers `FeedForward` with the GEGLU activation (attention.py / activations.py), the MLP of
// Stable Diffusion's transformer blocks: net.0.proj (dim -> 2*inner), value * gelu(gate),
// net.2 (inner -> dim). Not here: the other activation choices.
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

namespace dro::nn {

// diffusers `GEGLU`: proj, then the first half times GELU (exact, erf) of the second half.
struct GEGLUImpl : torch::nn::Module {
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  // x: [..., dim_in] -> [..., dim_out]
  torch::Tensor forward(const torch::Tensor& x);

  Linear proj{nullptr};  // [2*dim_out, dim_in]
};
TORCH_MODULE(GEGLU);

struct FeedForwardImpl : torch::nn::Module {
  // inner = mult * dim (4 in Stable Diffusion)
  FeedForwardImpl(int64_t dim, int64_t mult = 4, double dropout = 0.0);
  // x: [B, S, dim] -> [B, S, dim]
  torch::Tensor forward(const torch::Tensor& x);

  double dropout;
  GEGLU act{nullptr};   // "net.0"
  Linear out{nullptr};  // "net.2": [dim, inner]
};
TORCH_MODULE(FeedForward);

}  // namespace dro::nn
