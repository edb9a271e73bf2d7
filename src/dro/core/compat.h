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

// Waits for queued kernels on `device` (no-op on CPU).
void synchronize(const torch::Device& device);

// Allows TF32 matrix products on CUDA (no-op elsewhere).
void allow_tf32(bool on);

// bf16 autocast on CUDA for the lifetime of the guard; does nothing when disabled or on CPU.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, bool bf16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool prev_enabled_ = false;
};

// Human-readable LibTorch version, e.g. "1.13.1".
std::string torch_version();

}  // namespace dro::compat
