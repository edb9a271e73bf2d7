// DDIM sampling (Song et al. 2020, arXiv:2010.02502, eq. 12), as diffusers' DDIMScheduler:
// deterministic for eta = 0, with eta * sigma_t noise otherwise. The last step goes to
// final_alpha_cumprod (1 with set_alpha_to_one, else alphas_cumprod[0]).
// Previous timestep: t - T // N after set_timesteps(N), exactly as diffusers (so "linspace" and
// "trailing" grids keep diffusers' quirks); the next table entry for a given table.
#pragma once

#include "dro/sched/scheduler.h"

namespace dro::sched {

class DdimScheduler : public Scheduler {
 public:
  DdimScheduler(const SchedulerConfig& config, const SchedulerOptions& options = {});
  std::string name() const override { return "ddim"; }

  double eta() const { return options_.eta; }
  void set_eta(double eta);

  // eta > 0 draws its noise from `gen`.
  torch::Tensor step(const torch::Tensor& model_output, int64_t step_index,
                     const torch::Tensor& sample, torch::Generator* gen = nullptr) override;
  // The same step with the N(0, 1) noise given ([B, ...] like sample); used only when eta > 0.
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
  torch::Tensor prev_;   // CPU int64 [N, C]: the timestep each step lands on (-1: final alpha)
};

}  // namespace dro::sched
