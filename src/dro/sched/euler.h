// Euler sampling of the probability-flow ODE in the variance-exploding parametrisation (Karras et
// al. 2022, arXiv:2206.00364, Algorithm 2 without churn), as diffusers' EulerDiscreteScheduler
// with s_churn = 0: x_{k+1} = x_k + (x_k - x0_pred) / sigma_k * (sigma_{k+1} - sigma_k).
// Samples live at scale sqrt(sigma^2 + 1): x_T = init_noise_sigma() * N(0, 1), and the model sees
// scale_model_input(x). Sigmas are linearly interpolated at the (possibly fractional) timesteps.
// Not supported: churn (stochastic steps), log_linear interpolation, karras / exponential / beta
// sigma schedules.
#pragma once

#include "dro/sched/scheduler.h"

namespace dro::sched {

class EulerScheduler : public Scheduler {
 public:
  explicit EulerScheduler(const SchedulerConfig& config);
  std::string name() const override { return "euler"; }

  // sqrt(max_sigma^2 + 1) for "leading" spacing, max_sigma for "linspace" / "trailing".
  double init_noise_sigma() const override;
  // sample / sqrt(sigma_k^2 + 1).
  torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t step_index) const override;
  // Deterministic; `gen` is unused. Computed in float32, returned in model_output's dtype.
  torch::Tensor step(const torch::Tensor& model_output, int64_t step_index,
                     const torch::Tensor& sample, torch::Generator* gen = nullptr) override;
  // x0 + sigma(t) noise, t looked up among the table's timesteps (UsageError if absent).
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                          const torch::Tensor& t) const override;

  // [N + 1] (last one 0 or sigma_min), or [N + 1, B] for a per-sample table.
  torch::Tensor sigmas() const;

 protected:
  torch::Tensor spaced(int64_t num_inference_steps) const override;
  void prepare(bool custom) override;

 private:
  torch::Tensor sigmas_;  // CPU float32 [N + 1, C]
};

}  // namespace dro::sched
