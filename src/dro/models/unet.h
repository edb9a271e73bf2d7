// UNet2DConditionModel (diffusers 0.32 models/unets/unet_2d_condition.py) for the Stable Diffusion
// 1.5 and SDXL layouts: noise prediction eps(x_t, t, text) with optional SDXL "text_time" added
// conditioning. Parameter names equal the diffusers checkpoint keys.
// Not here: ControlNet / adapter residuals, attention masks, class embeddings, LoRA, FreeU.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/models/unet_config.h"
#include "dro/nn/down_block.h"
#include "dro/nn/mid_block.h"
#include "dro/nn/state_dict.h"
#include "dro/nn/timestep_embedding.h"
#include "dro/nn/up_block.h"

namespace dro::models {

struct UNet2DConditionModelImpl : torch::nn::Module {
  explicit UNet2DConditionModelImpl(const UNetConfig& config);

  // sample: [B, in_channels, H, W] noisy latents.
  // timesteps: 0-dim (shared by the batch) or [B] (or [1]); int64 or floating (fractional values
  //   go through the sinusoidal embedding as they are).
  // encoder_hidden_states: [B, S, cross_attention_dim] text embeddings.
  // text_embeds [B, P] and time_ids [B, 6]: SDXL's added conditions, required exactly when the
  //   config has addition_embed_type "text_time" (UsageError otherwise).
  // -> [B, out_channels, H, W]
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& encoder_hidden_states,
                        const torch::Tensor& text_embeds = {}, const torch::Tensor& time_ids = {});

  // Recompute each resnet and transformer block in backward instead of storing its activations
  // (as diffusers' enable_gradient_checkpointing). Only acts while grad mode is on.
  void set_gradient_checkpointing(bool on);
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

  const UNetConfig& config() const { return config_; }
  // True for SDXL-style configs, whose forward needs text_embeds and time_ids.
  bool needs_added_conditions() const { return config_.addition_embed_type == "text_time"; }

  nn::Conv2d conv_in{nullptr};                    // [C0, in_channels, k, k]
  nn::Timesteps time_proj{nullptr};               // no weights
  nn::TimestepEmbedding time_embedding{nullptr};  // C0 -> 4*C0
  nn::Timesteps add_time_proj{nullptr};  // SDXL: time_ids -> [B, 6 * addition_time_embed_dim]
  nn::TimestepEmbedding add_embedding{
      nullptr};  // SDXL: projection_class_embeddings_input_dim -> 4*C0
  std::vector<nn::DownBlock2D> down_blocks;
  nn::UNetMidBlock2DCrossAttn mid_block{nullptr};  // absent when mid_block_type is null
  std::vector<nn::UpBlock2D> up_blocks;
  torch::nn::GroupNorm conv_norm_out{nullptr};  // [C0]
  nn::Conv2d conv_out{nullptr};                 // [out_channels, C0, k, k]

 private:
  torch::Tensor embed_time(const torch::Tensor& sample, const torch::Tensor& timesteps,
                           const torch::Tensor& text_embeds, const torch::Tensor& time_ids);

  UNetConfig config_;
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(UNet2DConditionModel);

// Builds the UNet of a diffusers `unet/` folder from its config.json and loads its weights
// (`diffusion_pytorch_model[.<variant>].safetensors`, or shards), converted to options.dtype on
// options.device. IoError listing missing / unexpected / mis-shaped keys when they do not match.
UNet2DConditionModel load_unet(const std::filesystem::path& dir,
                               const nn::LoadOptions& options = {},
                               const std::string& variant = "");

// Writes config.json (as loaded) and diffusion_pytorch_model.safetensors (in `dtype` when given).
void save_unet(const std::filesystem::path& dir, const UNet2DConditionModel& unet,
               c10::optional<torch::Dtype> dtype = c10::nullopt);

}  // namespace dro::models
