// Text-to-image generation with a Stable Diffusion 1.5 / SDXL model folder, as diffusers'
// StableDiffusionPipeline / StableDiffusionXLPipeline: prompt encoding, negative prompts,
// classifier-free guidance, SDXL add_time_ids, per-image seeds, VAE decode.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/model_folder.h"
#include "dro/models/autoencoder_kl.h"
#include "dro/models/lora_file.h"
#include "dro/models/unet.h"
#include "dro/pipeline/denoise.h"
#include "dro/pipeline/prompt_encoder.h"
#include "dro/sched/scheduler_config.h"

namespace dro::pipeline {

struct LoadSpec {
  std::filesystem::path model;  // diffusers pipeline folder
  std::filesystem::path unet;   // optional UNet folder replacing model/unet (e.g. LOGDIR/ckpt-N/unet)
  std::string variant;          // e.g. fp16
  std::string unet_variant;     // weights variant of `unet` (default: none)
  std::filesystem::path vae;    // optional VAE folder replacing model/vae (e.g. sdxl-vae-fp16-fix)
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
  bool load_vae = true;
  // LoRA files merged into the UNet's weights after loading, in order (diffusers / peft or kohya).
  std::vector<models::LoraSpec> loras;
};

struct StableDiffusion {
  io::ModelFolder folder;
  PromptEncoder prompts;
  models::UNet2DConditionModel unet{nullptr};
  models::AutoencoderKL vae{nullptr};  // null when not loaded or when the model has none
  // A model folder without a vae/ component works in pixel space: latents are images in [-1, 1].
  bool pixel_space = false;
  std::filesystem::path vae_dir;  // the VAE folder (model/vae or LoadSpec::vae)
  sched::SchedulerConfig scheduler_config;
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;

  static StableDiffusion load(const LoadSpec& spec);
  bool sdxl() const { return prompts.sdxl(); }
  int64_t vae_scale_factor() const;
  // Default image size: UNet sample_size x VAE scale factor.
  int64_t default_size() const { return unet->config().sample_size * vae_scale_factor(); }
};

struct GenerateOptions {
  std::string scheduler = "ddim";  // ddpm | ddim | dpmsolver++ | euler
  int64_t steps = 50;
  double guidance_scale = 7.5;
  double eta = 0.0;  // DDIM
  int64_t height = 0, width = 0;  // 0: default_size()
  // SDXL micro-conditioning; 0 means the target size / (0, 0) as diffusers defaults.
  int64_t original_height = 0, original_width = 0, crop_top = 0, crop_left = 0;
};

// One image request: its prompt, negative prompt and seed (initial noise and any per-step noise
// come from a generator seeded with it, so the image can be regenerated alone).
struct ImageRequest {
  std::string prompt;
  std::string negative_prompt;  // "" = none
  uint64_t seed = 0;
  torch::Tensor init_latents;   // optional [C, h, w] unit-variance noise (diffusers' latents=)
};

struct GenerateResult {
  torch::Tensor latents;  // [B, C, h, w] before VAE decode
  torch::Tensor images;   // [B, 3, H, W] in [0, 1] (undefined without a VAE)
};

// Generates one batch of images.
GenerateResult generate(StableDiffusion& sd, const std::vector<ImageRequest>& batch,
                        const GenerateOptions& options, const TrajectoryHook& hook = {},
                        Progress* progress = nullptr);

// Builds the conditioning (with unconditional rows first when guidance_scale > 1).
Conditioning make_conditioning(StableDiffusion& sd, const std::vector<std::string>& prompts,
                               const std::vector<std::string>& negative_prompts,
                               double guidance_scale, const GenerateOptions& options);

// Decodes latents to images in [0, 1] (float32 [B, 3, H, W]) (pixel-space models: rescales), upcasting the VAE when the model
// dtype is float16 and the VAE config asks for it (force_upcast).
torch::Tensor decode_latents(StableDiffusion& sd, const torch::Tensor& latents);

}  // namespace dro::pipeline
