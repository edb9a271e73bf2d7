// The reverse-diffusion loop shared by sampling and the Diffusion-DRO buffer: UNet calls with
// optional classifier-free guidance, scheduler steps, and a hook that sees every step's
// (t, x_t, eps) — the replay buffer is filled through it.
#pragma once

#include <functional>
#include <vector>

#include <torch/torch.h>

#include "dro/models/unet.h"
#include "dro/sched/scheduler.h"

namespace dro {
class Progress;
}

namespace dro::pipeline {

// Conditioning for B samples. With guidance, the unconditional rows come first ([2B, ...]),
// as diffusers concatenates [negative, positive].
struct Conditioning {
  torch::Tensor embeds;       // [B or 2B, S, D]
  torch::Tensor text_embeds;  // SDXL [B or 2B, P] or undefined
  torch::Tensor time_ids;     // SDXL [B or 2B, 6] or undefined
};

// Called once per step k with t [B] (int64 or float), the latent the UNet saw x_t [B, C, h, w]
// (before scale_model_input) and the (guided) noise prediction eps [B, C, h, w].
using TrajectoryHook = std::function<void(int64_t k, const torch::Tensor& t, const torch::Tensor& x_t,
                                          const torch::Tensor& eps)>;

struct DenoiseOptions {
  double guidance_scale = 1.0;  // > 1 enables classifier-free guidance
  TrajectoryHook hook;
  Progress* progress = nullptr;  // ticked once per step
  // Stochastic steps (DDPM, DDIM eta > 0) draw their noise row by row from these generators
  // (one per sample), so a sample's result does not depend on its batch mates. When empty, the
  // scheduler draws from `generator` (or the default generator).
  std::vector<at::Generator>* per_sample_generators = nullptr;
  torch::Generator* generator = nullptr;
};

// Runs every step of `scheduler` (its timesteps already set) from `latents` (x_T already scaled by
// init_noise_sigma) and returns the final latents [B, C, h, w]. Runs without gradients.
torch::Tensor denoise(models::UNet2DConditionModel& unet, sched::Scheduler& scheduler,
                      torch::Tensor latents, const Conditioning& cond, const DenoiseOptions& options);

}  // namespace dro::pipeline
