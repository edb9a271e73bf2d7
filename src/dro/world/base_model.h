// The preference world's base text-to-image model: a small pixel-space Stable Diffusion 1.5-layout
// pipeline folder (no vae/: the UNet denoises 32x32 RGB images in [-1, 1] directly), and its
// pretraining on the world's uniform base renders with the Trainer's "sft" objective.
//
// Folder (diffusers layout, loadable by StableDiffusion::load and by diffusers):
//   model_index.json                StableDiffusionPipeline without a vae entry
//   scheduler/scheduler_config.json DDPMScheduler: linear betas 1e-4..0.02 over 1000 steps (the
//                                   DDPM paper's CIFAR-10 schedule, made for 32x32 pixel space),
//                                   epsilon prediction, x0 clipped to [-1, 1], "leading" spacing
//                                   with steps_offset 1 as SD1.5
//   tokenizer/                      the world tokenizer (vocab_builder.h), 16 tokens
//   text_encoder/                   a small CLIPTextModel, randomly initialised from the seed and
//                                   never trained (a fixed, injective prompt code)
//   unet/                           a small UNet2DConditionModel, 3 -> 3 channels, 32x32
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dro::world {

struct BaseModelConfig {
  uint64_t seed = 0;  // initialisation of the text encoder and the UNet
  int64_t image_size = 32;
  int64_t max_length = 16;  // tokens including start and end
  int64_t text_hidden = 64, text_layers = 2, text_heads = 4;
  std::vector<int64_t> block_out_channels = {32, 64, 64};
  int64_t layers_per_block = 1;
  int64_t norm_num_groups = 8;
  int64_t attention_heads = 4;
};

// Writes a freshly initialised model folder to `dir` (created; existing files replaced).
void write_base_model(const std::filesystem::path& dir, const BaseModelConfig& config = {});

struct PretrainOptions {
  std::filesystem::path world;   // a world folder (write_world); its base/ is the data
  std::filesystem::path out;     // the model folder to write
  std::filesystem::path logdir;  // training run folder (default: OUT.run)
  BaseModelConfig model;
  int64_t steps = 4000;  // optimisation steps (no accumulation)
  int64_t batch_size = 32;
  double learning_rate = 5e-4;
  std::string lr_scheduler = "cosine";
  int64_t warmup_steps = 100;
  double ema_decay = 0.999;
  double prompt_dropout = 0.1;  // for classifier-free guidance
  int64_t checkpointing_steps = 1000;
  int64_t dataloader_workers = 2;
  bool resume = false;
  bool quiet = false;
};

// Writes a fresh model to `out` (unless resuming), trains its UNet on WORLD/base with the "sft"
// objective (random flip off: flips would contradict left / right captions) and replaces
// OUT/unet with the final EMA weights.
void pretrain_base_model(const PretrainOptions& options);

}  // namespace dro::world
