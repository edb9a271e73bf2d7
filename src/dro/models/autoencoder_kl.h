// AutoencoderKL (diffusers 0.32 models/autoencoders/autoencoder_kl.py): the Stable Diffusion VAE.
// encode(image in [-1, 1]) -> posterior over latents; decode(latents) -> image. Latents from
// encode are *unscaled*: the diffusion model works on scale_latents(z), and decode takes
// unscale_latents(z_model). Parameter names equal the diffusers checkpoint keys.
//
// force_upcast (config): the SD / SDXL VAE overflows in float16 at high resolution, so pipelines
// should run it in float32 when force_upcast() is true (load it with LoadOptions::dtype float32).
// Not here: tiling, latents_mean / latents_std normalisation.
#pragma once

#include <filesystem>
#include <string>

#include <torch/torch.h>

#include "dro/models/diagonal_gaussian.h"
#include "dro/models/vae.h"
#include "dro/models/vae_config.h"
#include "dro/nn/state_dict.h"

namespace dro::models {

struct AutoencoderKLImpl : torch::nn::Module {
  explicit AutoencoderKLImpl(const VaeConfig& config);

  // image: [B, in_channels, H, W] in [-1, 1] -> posterior over [B, latent_channels, H/f, W/f]
  DiagonalGaussian encode(const torch::Tensor& image);
  // z: [B, latent_channels, h, w] (unscaled) -> [B, out_channels, h*f, w*f], not clamped
  torch::Tensor decode(const torch::Tensor& z);

  // (z - shift_factor) * scaling_factor: VAE latents -> what the UNet sees.
  torch::Tensor scale_latents(const torch::Tensor& z) const;
  // z / scaling_factor + shift_factor: UNet-space latents -> VAE latents for decode.
  torch::Tensor unscale_latents(const torch::Tensor& z) const;

  // Encode / decode one sample at a time to bound peak memory (diffusers enable_slicing).
  void set_slicing(bool on) { slicing_ = on; }
  // Recompute encoder / decoder blocks in backward (diffusers' VAE gradient checkpointing).
  void set_gradient_checkpointing(bool on) {
    encoder->gradient_checkpointing = decoder->gradient_checkpointing = on;
  }
  bool force_upcast() const { return config_.force_upcast; }
  double scaling_factor() const { return config_.scaling_factor; }
  double shift_factor() const { return config_.shift_factor.value_or(0.0); }
  const VaeConfig& config() const { return config_; }

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr};       // [2L, 2L, 1, 1] when use_quant_conv
  torch::nn::Conv2d post_quant_conv{nullptr};  // [L, L, 1, 1] when use_post_quant_conv

 private:
  torch::Tensor encode_moments(const torch::Tensor& image);
  torch::Tensor decode_one(const torch::Tensor& z);

  VaeConfig config_;
  bool slicing_ = false;
};
TORCH_MODULE(AutoencoderKL);

// Maps the legacy VAE mid-block attention names of older checkpoints (query, key, value,
// proj_attn) to the current ones (to_q, to_k, to_v, to_out.0); other keys pass unchanged.
// Legacy [C, C, 1, 1] weights are flattened by nn::load_weights.
std::string vae_legacy_key(const std::string& key);

// Builds the VAE of a diffusers `vae/` folder and loads its weights (variant aware), accepting the
// legacy attention names (after options.rename, when one is given).
AutoencoderKL load_vae(const std::filesystem::path& dir, const nn::LoadOptions& options = {},
                       const std::string& variant = "");

// Writes config.json (as loaded) and diffusion_pytorch_model.safetensors (current key names).
void save_vae(const std::filesystem::path& dir, const AutoencoderKL& vae,
              c10::optional<torch::Dtype> dtype = c10::nullopt);

}  // namespace dro::models
