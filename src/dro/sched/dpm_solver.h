// Multistep DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), as diffusers'
// DPMSolverMultistepScheduler: data-prediction form, orders 1-3, midpoint or heun second-order
// update, lower-order final steps, final sigma 0 or sigma_min. Also its older noise-prediction
// form "dpmsolver" and the stochastic "sde-dpmsolver++".
//
// Noise levels are sigma = sqrt((1 - a) / a) at the table's timesteps plus the final sigma. With an
// [N, B] table each sample is integrated on its own levels, unless
// SchedulerOptions::official_sigma_sharing asks for the official Diffusion-DRO behaviour: all
// samples use column 0's levels (per-sample timesteps then only reach the model).
// Not supported: karras / exponential / beta / lu sigma schedules, flow sigmas.
#pragma once

#include <vector>

#include "dro/sched/scheduler.h"

namespace dro::sched {

class DpmSolverScheduler : public Scheduler {
 public:
  DpmSolverScheduler(const SchedulerConfig& config, const SchedulerOptions& options = {});
  std::string name() const override { return "dpmsolver++"; }

  // Steps must come in order 0, 1, ... (step 0 starts a new trajectory); starting at k > 0 is
  // allowed with an empty history (img2img). "sde-dpmsolver++" draws its noise from `gen`.
  torch::Tensor step(const torch::Tensor& model_output, int64_t step_index,
                     const torch::Tensor& sample, torch::Generator* gen = nullptr) override;
  // sigma(t) looked up in the schedule: t must be one of the table's timesteps (otherwise the last
  // step's level is used, as diffusers' index_for_timestep does). Per-sample tables look sample b's
  // timestep up in column b.
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                          const torch::Tensor& t) const override;
  void reset() override;

  // The noise levels: [N + 1] when there is one column of them (a shared table, official sigma
  // sharing), else [N + 1, B]. Undefined before set_timesteps.
  torch::Tensor sigmas() const;
  // The largest timestep count reached by spacing (T unless lambda_min_clipped cuts the tail).
  int64_t last_timestep() const;

 protected:
  torch::Tensor spaced(int64_t num_inference_steps) const override;
  void prepare(bool custom) override;

 private:
  int64_t sigma_columns() const { return sigmas_.size(1); }
  // Index of timestep t in a column of the table, as diffusers' index_for_timestep.
  int64_t index_for_timestep(int64_t t, int64_t column) const;

  torch::Tensor table_;                 // CPU int64 [N, C]
  torch::Tensor sigmas_;                // CPU float32 [N + 1, 1 or C]
  std::vector<torch::Tensor> history_;  // converted model outputs, newest last (<= solver_order)
  int64_t lower_order_nums_ = 0;
  int64_t last_step_ = -1;
};

}  // namespace dro::sched
