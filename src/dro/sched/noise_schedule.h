// The forward-process noise schedule of a diffusion model: betas, cumulative alphas, and the
// closed-form noising q(x_t | x_0) with each sample at its own timestep. Computed in float32 on
// the CPU exactly as diffusers 0.32 computes them, so the values match it bit for bit.
// Not here: inference timestep grids (timesteps.h) or samplers (ddpm.h, ddim.h, ...).
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "dro/sched/scheduler_config.h"

namespace dro::sched {

// betas [T] float32 from beta_schedule (linear, scaled_linear, squaredcos_cap_v2) or
// trained_betas, then rescaled to zero terminal SNR when the config asks (arXiv:2305.08891).
torch::Tensor make_betas(const SchedulerConfig& config);

// Algorithm 1 of arXiv:2305.08891: shifts and scales sqrt(alphas_cumprod) so the last one is 0.
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas);

struct NoiseSchedule {
  torch::Tensor betas;           // [T] float32, CPU
  torch::Tensor alphas_cumprod;  // [T] float32, CPU: prod_{s<=t} (1 - beta_s)

  static NoiseSchedule from_config(const SchedulerConfig& config);
  int64_t num_train_timesteps() const { return betas.size(0); }

  // sqrt((1 - alphas_cumprod) / alphas_cumprod): the noise level of every training timestep in
  // the variance-exploding parametrisation x_t / alpha_t = x_0 + sigma * eps. [T] float32.
  torch::Tensor sigmas() const;

  // sqrt(a_t) x0 + sqrt(1 - a_t) noise with a_t = alphas_cumprod[t]. x0, noise: [B, ...];
  // t: [B] (one timestep per sample) or a single one; any device, computed in x0's dtype.
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                          const torch::Tensor& t) const;
  // The v-prediction target sqrt(a_t) noise - sqrt(1 - a_t) x0 (arXiv:2202.00512).
  torch::Tensor get_velocity(const torch::Tensor& x0, const torch::Tensor& noise,
                             const torch::Tensor& t) const;
};

}  // namespace dro::sched
