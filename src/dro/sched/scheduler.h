// The sampler interface shared by DDPM, DDIM, DPM-Solver++ and Euler, and the factory that builds
// one from any diffusers scheduler_config.json (as diffusers' `from_config` does).
//
// A scheduler walks a timestep table addressed by step index k = 0 .. N-1. The table is either one
// column shared by the batch ([N], diffusers' behaviour) or one column per sample ([N, B],
// Diffusion-DRO's perturbed timesteps): then each sample of the batch is stepped at its own
// timestep, with its own noise level, exactly as if it were run alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/sched/noise_schedule.h"
#include "dro/sched/scheduler_config.h"

namespace dro::sched {

// Settings that diffusers passes to `step` or that are ours rather than the config's.
struct SchedulerOptions {
  double eta = 0.0;                       // DDIM: 0 deterministic, 1 ancestral (DDPM-like)
  bool use_clipped_model_output = false;  // DDIM: recompute eps from the clipped x0
  // DPM-Solver++ with an [N, B] table: integrate every sample on the noise levels of column 0, as
  // the official Diffusion-DRO patch (misc/patch.py) does. Off: each sample on its own levels.
  bool official_sigma_sharing = false;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // "ddpm", "ddim", "dpmsolver++" or "euler".
  virtual std::string name() const = 0;
  const SchedulerConfig& config() const { return config_; }
  const NoiseSchedule& noise_schedule() const { return schedule_; }

  // N timesteps from the config's spacing (shared by the batch). Resets the sampler state.
  void set_timesteps(int64_t num_inference_steps);
  // A given table: [N] shared or [N, B] int64 per sample (column b is sample b's descending
  // timesteps, each in [0, T)). Resets the sampler state.
  void set_timesteps(const torch::Tensor& table);

  // [N] or [N, B]; int64 (Euler: float32, as diffusers). Undefined before set_timesteps.
  const torch::Tensor& timesteps() const { return timesteps_; }
  int64_t num_inference_steps() const { return timesteps_.defined() ? timesteps_.size(0) : 0; }
  bool per_sample() const { return timesteps_.defined() && timesteps_.dim() == 2; }
  // What the model sees at step k: a 0-dim timestep, or [B] with a per-sample table.
  torch::Tensor timestep(int64_t step_index) const;

  // Standard deviation of the starting noise x_T (1 except for Euler).
  virtual double init_noise_sigma() const { return 1.0; }
  // The model input at step k (identity except for Euler, which divides by sqrt(sigma^2 + 1)).
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t step_index) const;

  // One reverse step from step k to k+1: returns x at the next (smaller) timestep.
  // model_output, sample: [B, ...]. Stochastic samplers draw their noise from `gen` (the default
  // generator when null). Multistep samplers keep a history: call steps in order from 0.
  virtual torch::Tensor step(const torch::Tensor& model_output, int64_t step_index,
                             const torch::Tensor& sample, torch::Generator* gen = nullptr) = 0;

  // Noises clean samples to timesteps t ([B] or one), the way this scheduler defines it
  // (DDPM/DDIM: alphas_cumprod[t]; DPM-Solver/Euler: the noise level of t in their schedule).
  virtual torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                  const torch::Tensor& t) const;

  // Forgets the multistep history so the same timesteps can drive a new trajectory.
  virtual void reset() {}

 protected:
  Scheduler(SchedulerConfig config, SchedulerOptions options);

  // The [N] timesteps for set_timesteps(N) (int64, or float32 for Euler).
  virtual torch::Tensor spaced(int64_t num_inference_steps) const = 0;
  // Builds per-step tables after timesteps_ changed; `custom` when the caller gave the table.
  virtual void prepare(bool custom) = 0;

  // Validates the arguments of a step; returns the number of table columns (1 or B).
  int64_t check_step(const torch::Tensor& model_output, int64_t step_index,
                     const torch::Tensor& sample, const char* who) const;
  // Table columns: 1 for a shared table, B per sample.
  int64_t columns() const { return per_sample() ? timesteps_.size(1) : 1; }
  // timesteps_ as CPU int64 [N, C].
  torch::Tensor int_table() const;

  // Per-column coefficients ([C] float32 CPU tensors) moved to `like`'s device in `dtype`, shaped
  // to broadcast against it: 0-dim for a shared table, [B, 1, ..., 1] per sample. One transfer.
  std::vector<torch::Tensor> to_sample(const std::vector<torch::Tensor>& coeffs,
                                       const torch::Tensor& like, torch::Dtype dtype) const;

  // N(0, 1) noise shaped like `like` as diffusers' randn_tensor draws it (on the generator's
  // device, then moved). Per-sample tables draw one sample at a time in batch order and only
  // where draw[b] is true (zeros elsewhere), as the official patch steps samples one by one.
  torch::Tensor draw_noise(const torch::Tensor& like, torch::Generator* gen,
                           const std::vector<bool>& draw) const;

  // Dynamic thresholding of a predicted x0 (Imagen, arXiv:2205.11487) when the config enables it,
  // else (if `clip`) clamping to +-clip_sample_range.
  torch::Tensor postprocess_x0(const torch::Tensor& x0, bool clip) const;

  SchedulerConfig config_;
  SchedulerOptions options_;
  NoiseSchedule schedule_;
  torch::Tensor timesteps_;
};

// Builds "ddpm", "ddim", "dpmsolver++" or "euler" (or a diffusers class name such as
// "DPMSolverMultistepScheduler") from any scheduler config. Keys the config file does not set take
// the chosen scheduler's diffusers defaults. UsageError for an unknown name or unsupported setting.
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const SchedulerConfig& config,
                                          const SchedulerOptions& options = {});

// The accepted names, for help texts.
std::vector<std::string> scheduler_names();

}  // namespace dro::sched
