#include "dro/models/autoencoder_kl.h"

#include <cstring>

#include "dro/core/error.h"
#include "dro/io/weights.h"

namespace dro::models {

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& config) : config_(config) {
  const int64_t L = config_.latent_channels;
  encoder = register_module("encoder", VaeEncoder(config_));
  decoder = register_module("decoder", VaeDecoder(config_));
  if (config_.use_quant_conv)
    quant_conv =
        register_module("quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * L, 2 * L, 1)));
  if (config_.use_post_quant_conv)
    post_quant_conv =
        register_module("post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(L, L, 1)));
}

torch::Tensor AutoencoderKLImpl::encode_moments(const torch::Tensor& image) {
  torch::Tensor moments = encoder(image);
  return quant_conv ? quant_conv(moments) : moments;
}

DiagonalGaussian AutoencoderKLImpl::encode(const torch::Tensor& image) {
  if (image.dim() != 4 || image.size(1) != config_.in_channels)
    throw UsageError(cat("[vae] encode expects images [B, ", config_.in_channels, ", H, W], got ",
                         image.sizes()));
  if (!slicing_ || image.size(0) <= 1) return DiagonalGaussian(encode_moments(image));
  std::vector<torch::Tensor> parts;
  for (const auto& one : image.split(1)) parts.push_back(encode_moments(one));
  return DiagonalGaussian(torch::cat(parts));
}

torch::Tensor AutoencoderKLImpl::decode_one(const torch::Tensor& z) {
  return decoder(post_quant_conv ? post_quant_conv(z) : z);
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) {
  if (z.dim() != 4 || z.size(1) != config_.latent_channels)
    throw UsageError(cat("[vae] decode expects latents [B, ", config_.latent_channels,
                         ", h, w], got ", z.sizes()));
  if (!slicing_ || z.size(0) <= 1) return decode_one(z);
  std::vector<torch::Tensor> parts;
  for (const auto& one : z.split(1)) parts.push_back(decode_one(one));
  return torch::cat(parts);
}

torch::Tensor AutoencoderKLImpl::scale_latents(const torch::Tensor& z) const {
  return config_.shift_factor ? (z - *config_.shift_factor) * config_.scaling_factor
                              : z * config_.scaling_factor;
}

torch::Tensor AutoencoderKLImpl::unscale_latents(const torch::Tensor& z) const {
  torch::Tensor out = z / config_.scaling_factor;
  return config_.shift_factor ? out + *config_.shift_factor : out;
}

std::string vae_legacy_key(const std::string& key) {
  // Only the mid-block attentions carried the old names (diffusers modeling_utils,
  // _convert_deprecated_attention_blocks).
  if (key.find(".mid_block.attentions.") == std::string::npos) return key;
  static const std::pair<const char*, const char*> kRenames[] = {{".query.", ".to_q."},
                                                                 {".key.", ".to_k."},
                                                                 {".value.", ".to_v."},
                                                                 {".proj_attn.", ".to_out.0."}};
  for (const auto& [old_name, new_name] : kRenames) {
    const auto at = key.rfind(old_name);
    if (at != std::string::npos)
      return key.substr(0, at) + new_name + key.substr(at + std::strlen(old_name));
  }
  return key;
}

AutoencoderKL load_vae(const std::filesystem::path& dir, const nn::LoadOptions& options,
                       const std::string& variant) {
  AutoencoderKL vae(VaeConfig::load(dir));
  const auto weights = io::ComponentWeights::open(dir, variant);
  nn::LoadOptions o = options;
  o.rename = [user = options.rename](const std::string& key) {
    return vae_legacy_key(user ? user(key) : key);
  };
  nn::load_weights(*vae, weights, o, "vae");
  return vae;
}

void save_vae(const std::filesystem::path& dir, const AutoencoderKL& vae,
              c10::optional<torch::Dtype> dtype) {
  nn::save_component(dir, *vae, vae->config().raw, io::kDiffusersWeightsStem, dtype);
}

}  // namespace dro::models
