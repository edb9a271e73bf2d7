#include "dro/train/ema.h"

#include <algorithm>

namespace dro::train {

Ema::Ema(const std::vector<torch::Tensor>& params, double max_decay, torch::Device device)
    : max_decay_(max_decay) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params) shadow_.push_back(p.detach().to(device, /*non_blocking=*/false, /*copy=*/true));
}

double Ema::decay_at(int64_t step) const {
  const int64_t k = std::max<int64_t>(0, step - 1);
  if (k <= 0) return 0.0;
  return std::min(max_decay_, (1.0 + k) / (10.0 + k));
}

void Ema::update(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  ++updates_;
  const double one_minus = 1.0 - decay_at(updates_);
  for (size_t i = 0; i < shadow_.size(); ++i) {
    auto& s = shadow_[i];
    const auto p = params[i].detach().to(s.device(), s.scalar_type());
    s.sub_(s - p, one_minus);  // s -= (1 - decay) (s - p)
  }
}

void Ema::copy_to(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) params[i].copy_(shadow_[i]);
}

}  // namespace dro::train
