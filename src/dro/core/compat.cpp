#include "dro/core/compat.h"

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
