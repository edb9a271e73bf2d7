#include "dro/core/compat.h"

#include <ATen/autocast_mode.h>

#include <cmath>

namespace dro::compat {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, bool upcast) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
#if DRO_TORCH2
  if (!upcast || q.scalar_type() == torch::kFloat) {
    return at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask)
                                                                     : c10::nullopt);
  }
#endif
  const auto dtype = q.scalar_type();
  torch::Tensor qq = upcast ? q.to(torch::kFloat) : q;
  torch::Tensor kk = upcast ? k.to(torch::kFloat) : k;
  // scores: [B, heads, Sq, Sk]
  torch::Tensor scores = torch::matmul(qq * scale, kk.transpose(-1, -2));
  if (mask.defined()) scores = scores + mask.to(scores.scalar_type());
  torch::Tensor probs = torch::softmax(scores, -1).to(dtype);
  return torch::matmul(probs, v);
}

void synchronize(const torch::Device& device) {
  if (!device.is_cuda()) return;
#if DRO_TORCH2
  torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
#else
  // LibTorch 1.x has no public synchronize; a blocking copy of a scalar drains the stream.
  torch::zeros({1}, torch::TensorOptions().device(device)).cpu();
#endif
}

void allow_tf32(bool on) { at::globalContext().setAllowTF32CuBLAS(on); }

AutocastGuard::AutocastGuard(const torch::Device& device, bool bf16) {
  if (!bf16 || !device.is_cuda()) return;
  active_ = true;
#if DRO_TORCH2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 4)
  prev_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
  prev_enabled_ = at::autocast::is_enabled();
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  at::autocast::set_enabled(true);
#endif
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
#if DRO_TORCH2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
#else
  at::autocast::set_enabled(prev_enabled_);
#endif
  at::autocast::clear_cache();
}

std::string torch_version() {
#if defined(TORCH_VERSION)
  return TORCH_VERSION;
#elif defined(TORCH_VERSION_MAJOR)
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#else
  return "unknown";
#endif
}

}  // namespace dro::compat
