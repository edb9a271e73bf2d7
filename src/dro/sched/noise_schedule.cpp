#include "dro/sched/noise_schedule.h"

#include <cmath>

#include "dro/core/error.h"

namespace dro::sched {
namespace {

// Glide's cosine schedule (diffusers betas_for_alpha_bar), evaluated in double like Python.
torch::Tensor cosine_betas(int64_t T) {
  const auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  std::vector<float> betas(T);
  for (int64_t i = 0; i < T; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(T);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(T);
    betas[i] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return torch::tensor(betas, torch::kFloat32);
}

// a_t per sample, shaped [B, 1, ..., 1] to broadcast against `like`, in like's dtype and device.
torch::Tensor gather_alphas(const torch::Tensor& alphas_cumprod, const torch::Tensor& t,
                            const torch::Tensor& like, const char* who) {
  if (!t.defined() || t.is_floating_point() || t.is_complex())
    throw UsageError(cat("[", who, "] timesteps must be an integer tensor"));
  auto idx = t.to(torch::kCPU, torch::kInt64).flatten();  // [B]
  const int64_t T = alphas_cumprod.size(0);
  if (idx.numel() > 0 && (idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= T))
    throw UsageError(cat("[", who, "] timesteps must lie in [0, ", T, "), got [",
                         idx.min().item<int64_t>(), ", ", idx.max().item<int64_t>(), "]"));
  if (like.dim() < 1 || (idx.numel() != 1 && idx.numel() != like.size(0)))
    throw UsageError(
        cat("[", who, "] ", idx.numel(), " timesteps for a batch of shape ", like.sizes()));
  // diffusers casts alphas_cumprod to the sample dtype before taking roots.
  auto a = alphas_cumprod.to(like.scalar_type()).index_select(0, idx);
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = idx.numel();
  return a.reshape(shape);
}

}  // namespace

torch::Tensor make_betas(const SchedulerConfig& c) {
  const int64_t T = c.num_train_timesteps;
  torch::Tensor betas;
  if (!c.trained_betas.empty()) {
    if (static_cast<int64_t>(c.trained_betas.size()) != T)
      throw UsageError(cat("[scheduler] trained_betas has ", c.trained_betas.size(),
                           " values but num_train_timesteps is ", T));
    betas = torch::tensor(c.trained_betas, torch::kFloat64).to(torch::kFloat32);
  } else if (c.beta_schedule == "linear") {
    betas = torch::linspace(c.beta_start, c.beta_end, T, torch::kFloat32);
  } else if (c.beta_schedule == "scaled_linear") {
    // Latent diffusion's schedule: linear in sqrt(beta).
    betas =
        torch::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), T, torch::kFloat32).pow(2);
  } else if (c.beta_schedule == "squaredcos_cap_v2") {
    betas = cosine_betas(T);
  } else {
    throw UsageError(cat("[scheduler] beta_schedule '", c.beta_schedule,
                         "' is not supported (linear, scaled_linear, squaredcos_cap_v2)"));
  }
  if (c.rescale_betas_zero_snr) betas = rescale_zero_terminal_snr(betas);
  return betas;
}

torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas) {
  auto alphas = 1.0 - betas;
  auto s = torch::cumprod(alphas, 0).sqrt();
  auto s0 = s[0].clone();
  auto sT = s[-1].clone();
  s -= sT;
  s *= s0 / (s0 - sT);
  auto ab = s.pow(2);
  auto a = torch::cat({ab.slice(0, 0, 1), ab.slice(0, 1) / ab.slice(0, 0, -1)});
  return 1 - a;
}

NoiseSchedule NoiseSchedule::from_config(const SchedulerConfig& config) {
  NoiseSchedule s;
  s.betas = make_betas(config);
  // On the CPU cumprod accumulates in double and rounds each entry to float, as diffusers' does.
  s.alphas_cumprod = torch::cumprod(1.0 - s.betas, 0);
  return s;
}

torch::Tensor NoiseSchedule::sigmas() const {
  return ((1 - alphas_cumprod) / alphas_cumprod).sqrt();
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                       const torch::Tensor& t) const {
  auto a = gather_alphas(alphas_cumprod, t, x0, "add_noise");
  auto sqrt_a = a.sqrt().to(x0.device());
  auto sqrt_1ma = (1 - a).sqrt().to(x0.device());
  return sqrt_a * x0 + sqrt_1ma * noise;
}

torch::Tensor NoiseSchedule::get_velocity(const torch::Tensor& x0, const torch::Tensor& noise,
                                          const torch::Tensor& t) const {
  auto a = gather_alphas(alphas_cumprod, t, x0, "get_velocity");
  auto sqrt_a = a.sqrt().to(x0.device());
  auto sqrt_1ma = (1 - a).sqrt().to(x0.device());
  return sqrt_a * noise - sqrt_1ma * x0;
}

}  // namespace dro::sched
