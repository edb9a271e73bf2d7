// Inference timestep grids: diffusers' "leading" / "trailing" / "linspace" spacings, DPM-Solver's
// variant of them, checks for user-given tables, and Diffusion-DRO's per-sample perturbed grid.
// Not here: the noise levels at those timesteps (noise_schedule.h) or how a sampler walks them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace dro::sched {

// DDPM / DDIM / Euler spacing, descending, N entries (Table 2 of arXiv:2305.08891):
//   leading:  arange(N) * (T // N) + steps_offset      (SD1.5, N=20: 951, 901, ..., 1)
//   trailing: round(arange(T, 0, -T/N)) - 1
//   linspace: round(linspace(0, T-1, N))               (numpy rounding: half to even)
std::vector<int64_t> spaced_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                      const std::string& spacing, int64_t steps_offset);

// DPMSolverMultistepScheduler's spacing over [0, last_timestep) (last_timestep is T unless
// lambda_min_clipped cuts the tail). It places N+1 points and drops the smallest, so "leading"
// steps by last_timestep // (N+1): SD1.5, N=20 gives 941, 894, ..., 48 (not 951 ... 1).
std::vector<int64_t> dpm_solver_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                          int64_t last_timestep, const std::string& spacing,
                                          int64_t steps_offset);

// Diffusion-DRO's perturbed per-sample grid (train.py): ratio = T // N,
// table[k, b] = ratio * (N - 1 - k) + perturb[0, b], perturb in [0, ratio). No steps_offset.
// perturb: [1, B] or [B] int64. Returns [N, B] int64 on the CPU.
torch::Tensor perturbed_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                  const torch::Tensor& perturb);
// Same with perturb = randint(0, ratio, [1, B]) drawn from `gen` (the default CPU generator when
// null), as train.py draws it.
torch::Tensor perturbed_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                  int64_t batch_size, torch::Generator* gen = nullptr);

// Validates a user-given table, [N] or [N, B] integer timesteps: every entry in [0, T), each
// column strictly descending. Returns it as a contiguous int64 CPU tensor. UsageError naming
// `who` otherwise.
torch::Tensor check_timestep_table(const torch::Tensor& table, int64_t num_train_timesteps,
                                   const std::string& who);

}  // namespace dro::sched
