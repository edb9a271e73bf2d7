// The VAE posterior q(z | x) = N(mean, exp(logvar)) that AutoencoderKL::encode returns
// (diffusers DiagonalGaussianDistribution).
#pragma once

#include <torch/torch.h>

namespace dro::models {

struct DiagonalGaussian {
  // moments: [B, 2C, h, w], the encoder output; mean = first C channels, logvar = last C clamped
  // to [-30, 20].
  explicit DiagonalGaussian(const torch::Tensor& moments);

  // mean + std * eps with eps ~ N(0, 1) drawn from `generator` (default generator when absent).
  // Like diffusers' randn_tensor, a CPU generator with GPU moments draws on the CPU and moves.
  torch::Tensor sample(c10::optional<torch::Generator> generator = c10::nullopt) const;
  const torch::Tensor& mode() const { return mean; }
  // KL divergence to N(0, I) per sample: [B].
  torch::Tensor kl() const;

  torch::Tensor mean;    // [B, C, h, w]
  torch::Tensor logvar;  // [B, C, h, w]
  torch::Tensor std;     // exp(logvar / 2)
};

}  // namespace dro::models
