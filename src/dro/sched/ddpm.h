// DDPM ancestral sampling (Ho et al. 2020, arXiv:2006.11239), as diffusers' DDPMScheduler: the
// posterior mean of q(x_prev | x_t, x0_pred) plus noise of the configured variance_type
// (fixed_small, fixed_small_log, fixed_large, learned, learned_range).
// The previous timestep is the next table entry (the last step goes to alpha = 1).
#pragma once

#include "dro/sched/scheduler.h"

namespace dro::sched {

class DdpmScheduler : public Scheduler {
 public:
  explicit DdpmScheduler(const SchedulerConfig& config);
  std::string name() const override { return "ddpm"; }

  // Draws the step noise from `gen` (no noise where the timestep is 0).
  torch::Tensor step(const torch::Tensor& model_output, int64_t step_index,
                     const torch::Tensor& sample, torch::Generator* gen = nullptr) override;
  // The same step with the N(0, 1) noise given ([B, ...] like sample), e.g. to replay a recorded
  // trajectory; rows of samples at timestep 0 are ignored.
  torch::Tensor step_with_noise(const torch::Tensor& model_output, int64_t step_index,
                                const torch::Tensor& sample, const torch::Tensor& variance_noise);

 protected:
  torch::Tensor spaced(int64_t num_inference_steps) const override;
  void prepare(bool custom) override;

 private:
  torch::Tensor step_impl(const torch::Tensor& model_output, int64_t step_index,
                          const torch::Tensor& sample, torch::Generator* gen,
                          const torch::Tensor* variance_noise);
  torch::Tensor table_;  // CPU int64 [N, C]
};

}  // namespace dro::sched
