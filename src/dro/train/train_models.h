// The models a training run holds, loaded under the precision policy: the trained UNet, the frozen
// reference and (when it cannot be the trained weights) a lagged policy copy, the VAE and the text
// encoders, and the model's noise schedule.
#pragma once

#include <optional>
#include <string>

#include <torch/torch.h>

#include "dro/io/model_folder.h"
#include "dro/models/autoencoder_kl.h"
#include "dro/models/unet.h"
#include "dro/pipeline/prompt_encoder.h"
#include "dro/sched/noise_schedule.h"
#include "dro/sched/scheduler.h"
#include "dro/train/precision.h"

namespace dro::train {

struct TrainConfig;

struct TrainModels {
  io::ModelFolder folder;
  std::optional<pipeline::PromptEncoder> prompts;
  models::AutoencoderKL vae{nullptr};  // null: a pixel-space model (latents are the images)
  models::UNet2DConditionModel unet{nullptr};         // trained, in precision.trained
  models::UNet2DConditionModel reference{nullptr};    // frozen; objectives with a reference only
  models::UNet2DConditionModel policy_copy{nullptr};  // frozen lagged policy; null when shared
  sched::SchedulerConfig scheduler_config;
  sched::NoiseSchedule noise;
  int64_t latent_channels = 4, latent_size = 64;

  // Loads everything `cfg` names onto `device`: a frozen reference when `reference`, and for
  // objectives with `policy_samples`, when buffer_update_steps does not divide
  // gradient_accumulation_steps, a separate policy copy.
  static TrainModels load(const TrainConfig& cfg, const Precision& precision, const torch::Device& device,
                          bool reference, bool policy_samples);

  // The UNet that samples the buffer: the trained one when the policy equals it at every refill.
  bool policy_shared() const { return !policy_copy; }
  models::UNet2DConditionModel& policy() { return policy_copy ? policy_copy : unet; }
  bool sdxl() const { return prompts->sdxl(); }
  ModelSizes sizes() const;
};

}  // namespace dro::train
