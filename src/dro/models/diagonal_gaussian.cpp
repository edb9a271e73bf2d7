#include "dro/models/diagonal_gaussian.h"

#include "dro/core/error.h"

namespace dro::models {

DiagonalGaussian::DiagonalGaussian(const torch::Tensor& moments) {
  if (moments.dim() < 2 || moments.size(1) % 2 != 0)
    throw UsageError(
        cat("[vae] posterior moments must have an even channel count, got ", moments.sizes()));
  auto halves = moments.chunk(2, 1);
  mean = halves[0];
  logvar = halves[1].clamp(-30.0, 20.0);
  std = (logvar * 0.5).exp();
}

torch::Tensor DiagonalGaussian::sample(c10::optional<torch::Generator> generator) const {
  const auto options = mean.options();
  torch::Tensor eps;
  if (generator && generator->device() != mean.device()) {
    eps = torch::randn(mean.sizes(), generator, options.device(generator->device()))
              .to(mean.device());
  } else {
    eps = torch::randn(mean.sizes(), generator, options);
  }
  return mean + std * eps;
}

torch::Tensor DiagonalGaussian::kl() const {
  return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum({1, 2, 3});
}

}  // namespace dro::models
