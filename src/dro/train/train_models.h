// The models a training run holds, loaded under the precision policy: the trained UNet, the frozen
// reference and (when it cannot be the trained weights) a lagged policy copy, the VAE and the text
// encoders, and the model's noise schedule.
#pragma once

#include <optional>
#include <string>

#include <torch/torch.h>

#include "dro/io/model_folder.h"
#include <memory>

#include "dro/models/autoencoder_kl.h"
#include "dro/models/lora.h"
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
  models::UNet2DConditionModel policy_copy{nullptr};  // frozen lagged policy; null when shared or LoRA
  // LoRA: the trained adapters on `unet`, which is then frozen; the reference is `unet` with the
  // adapters off (unless --reference-unet names another) and the lagged policy a second adapter set.
  std::shared_ptr<models::UnetLora> lora;
  sched::SchedulerConfig scheduler_config;
  sched::NoiseSchedule noise;
  int64_t latent_channels = 4, latent_size = 64;

  // Loads everything `cfg` names onto `device`: a frozen reference when `reference`, and for
  // objectives with `policy_samples`, when buffer_update_steps does not divide
  // gradient_accumulation_steps, a separate policy copy.
  static TrainModels load(const TrainConfig& cfg, const Precision& precision, const torch::Device& device,
                          bool reference, bool policy_samples);

  // The UNet that samples the buffer: the trained one when the policy equals it at every refill.
  bool policy_shared() const { return !policy_copy && !(lora && lora->has_policy_slot()); }
  models::UNet2DConditionModel& policy() { return policy_copy ? policy_copy : unet; }
  // The adapters the policy's forwards apply.
  nn::LoraSlot policy_slot() const { return lora && lora->has_policy_slot() ? nn::LoraSlot::kPolicy : nn::LoraSlot::kTrained; }
  // The frozen reference and the adapters its forwards apply.
  models::UNet2DConditionModel& reference_model() { return reference ? reference : unet; }
  nn::LoraSlot reference_slot() const { return reference ? nn::LoraSlot::kTrained : nn::LoraSlot::kOff; }
  bool sdxl() const { return prompts->sdxl(); }
  ModelSizes sizes() const;
};

}  // namespace dro::train
