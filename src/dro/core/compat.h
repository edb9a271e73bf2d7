// The one place where LibTorch 1.13 (Debian, CPU) and LibTorch 2.x (CUDA wheels) differ.
#pragma once

#include <torch/torch.h>

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif

#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
#define DRO_TORCH2 1
#else
#define DRO_TORCH2 0
#endif

namespace dro::compat {

// softmax(q k^T * scale + mask) v. q: [B, heads, Sq, d], k/v: [B, heads, Sk, d], mask broadcastable
// to [B, heads, Sq, Sk] (additive) or undefined. Fused kernel on LibTorch 2.x, classic path otherwise.
// When upcast is true the scores are computed in float32 (diffusers' upcast_attention).
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask = {}, bool upcast = false);

// Human-readable LibTorch version, e.g. "1.13.1".
std::string torch_version();

}  // namespace dro::compat
