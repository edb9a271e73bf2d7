// Exponential moving average of weights with diffusers' EMAModel rule: at update s (1-based)
// decay = min(max_decay, (1 + k) / (10 + k)) with k = s - 1 (decay 0 at the first update, so the
// average starts as a copy), optionally held on another device (e.g. CPU to save GPU memory).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace dro::train {

class Ema {
 public:
  // Shadows `params` (copies them to `device`).
  Ema(const std::vector<torch::Tensor>& params, double max_decay = 0.9999,
      torch::Device device = torch::kCPU);

  // Decay used at 1-based update number `step`.
  double decay_at(int64_t step) const;
  // One update towards `params` (same order as at construction).
  void update(const std::vector<torch::Tensor>& params);
  // Copies the averaged weights into `params`.
  void copy_to(const std::vector<torch::Tensor>& params) const;

  const std::vector<torch::Tensor>& shadow() const { return shadow_; }
  std::vector<torch::Tensor>& shadow() { return shadow_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t n) { updates_ = n; }

 private:
  std::vector<torch::Tensor> shadow_;
  double max_decay_;
  int64_t updates_ = 0;
};

}  // namespace dro::train
