#include "dro/sched/euler.h"

#include <cmath>

#include "dro/core/error.h"
#include "dro/sched/timesteps.h"

namespace dro::sched {

EulerScheduler::EulerScheduler(const SchedulerConfig& config) : Scheduler(config, {}) {
  auto& c = config_;
  // diffusers' class default, for configs read from another scheduler's file.
  if (c.raw.is_object() && !c.has("timestep_spacing")) c.timestep_spacing = "linspace";
  if (c.interpolation_type != "linear")
    throw UsageError(
        cat("[euler] interpolation_type '", c.interpolation_type, "' is not supported (linear)"));
  if (c.timestep_type != "discrete" && c.timestep_type != "continuous")
    throw UsageError(cat("[euler] timestep_type '", c.timestep_type,
                         "' is not supported (discrete, continuous)"));
  if (c.final_sigmas_type != "zero" && c.final_sigmas_type != "sigma_min")
    throw UsageError(cat("[euler] final_sigmas_type '", c.final_sigmas_type,
                         "' is not supported (zero, sigma_min)"));
  if (c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas)
    throw UsageError("[euler] karras / exponential / beta sigma schedules are not supported");
  if (c.rescale_betas_zero_snr) {
    // diffusers keeps the first level finite: alpha_bar_T = 2^-24 instead of 0.
    schedule_.alphas_cumprod = schedule_.alphas_cumprod.clone();
    schedule_.alphas_cumprod[-1] = std::ldexp(1.0, -24);
  }
}

torch::Tensor EulerScheduler::spaced(int64_t n) const {
  const int64_t T = schedule_.num_train_timesteps();
  if (config_.timestep_spacing != "linspace")
    return torch::tensor(spaced_timesteps(n, T, config_.timestep_spacing, config_.steps_offset),
                         torch::kInt64)
        .to(torch::kFloat32);
  // Unlike DDPM/DDIM, Euler keeps linspace timesteps fractional: linspace(0, T-1, N) in float32.
  if (n > T) throw UsageError(cat("[euler] num_inference_steps ", n, " cannot be larger than ", T));
  std::vector<float> t(n);
  const double step = n > 1 ? static_cast<double>(T - 1) / static_cast<double>(n - 1) : 0.0;
  for (int64_t i = 0; i < n; ++i)
    t[n - 1 - i] = static_cast<float>(i == n - 1 && n > 1 ? static_cast<double>(T - 1)
                                                          : static_cast<double>(i) * step);
  return torch::tensor(t, torch::kFloat32);
}

void EulerScheduler::prepare(bool custom) {
  const bool continuous =
      config_.timestep_type == "continuous" && config_.prediction_type == "v_prediction";
  if (custom && continuous)
    throw UsageError(
        "[euler] a timestep table cannot be used with timestep_type 'continuous' "
        "and v_prediction");
  timesteps_ = timesteps_.to(torch::kFloat32);
  auto ts = (timesteps_.dim() == 1 ? timesteps_.unsqueeze(1) : timesteps_).contiguous();  // [N, C]
  const int64_t N = ts.size(0), C = ts.size(1);
  auto all = schedule_.sigmas();  // [T]
  const int64_t T = all.size(0);
  auto all_a = all.accessor<float, 1>();
  auto ts_a = ts.accessor<float, 2>();
  auto s = torch::empty({N + 1, C}, torch::kFloat32);
  auto s_a = s.accessor<float, 2>();
  for (int64_t k = 0; k < N; ++k) {
    for (int64_t c = 0; c < C; ++c) {
      // numpy.interp(t, arange(T), sigmas) in double, stored as float32.
      const double t = ts_a[k][c];
      double v;
      if (t <= 0) {
        v = all_a[0];
      } else if (t >= static_cast<double>(T - 1)) {
        v = all_a[T - 1];
      } else {
        const auto j = static_cast<int64_t>(std::floor(t));
        const double slope = static_cast<double>(all_a[j + 1]) - static_cast<double>(all_a[j]);
        v = slope * (t - static_cast<double>(j)) + static_cast<double>(all_a[j]);
      }
      s_a[k][c] = static_cast<float>(v);
    }
  }
  for (int64_t c = 0; c < C; ++c) s_a[N][c] = config_.final_sigmas_type == "zero" ? 0.0f : all_a[0];
  sigmas_ = s;
  // EDM-style timesteps for continuous v-prediction models: c_noise = log(sigma) / 4.
  if (continuous) timesteps_ = 0.25 * torch::log(sigmas_.slice(0, 0, N).select(1, 0));
}

torch::Tensor EulerScheduler::sigmas() const {
  if (!sigmas_.defined()) return sigmas_;
  return per_sample() ? sigmas_ : sigmas_.squeeze(1);
}

double EulerScheduler::init_noise_sigma() const {
  auto max_sigma = sigmas_.defined() ? sigmas_.max() : schedule_.sigmas().max();
  if (config_.timestep_spacing == "linspace" || config_.timestep_spacing == "trailing")
    return max_sigma.item<float>();
  return (max_sigma.pow(2) + 1).sqrt().item<float>();
}

torch::Tensor EulerScheduler::scale_model_input(const torch::Tensor& sample, int64_t k) const {
  check_step(sample, k, sample, "euler");
  auto denom = (sigmas_[k].pow(2) + 1).sqrt();
  return sample / to_sample({denom}, sample, sample.scalar_type())[0];
}

torch::Tensor EulerScheduler::step(const torch::Tensor& model_output_in, int64_t k,
                                   const torch::Tensor& sample_in, torch::Generator*) {
  check_step(model_output_in, k, sample_in, "euler");
  const auto f32 = torch::kFloat32;
  auto mo = model_output_in.to(f32);
  auto x = sample_in.to(f32);
  auto sigma = sigmas_[k];
  auto sigma_hat = sigma * 1.0;  // sigma * (gamma + 1) with gamma = 0 (no churn)
  auto v_in = -sigma / (sigma.pow(2) + 1).sqrt();
  auto v_x = sigma.pow(2) + 1;
  auto dt = sigmas_[k + 1] - sigma_hat;
  auto c = to_sample({sigma_hat, v_in, v_x, dt}, x, f32);
  torch::Tensor x0;
  if (config_.prediction_type == "epsilon")
    x0 = x - c[0] * mo;
  else if (config_.prediction_type == "v_prediction")
    x0 = mo * c[1] + (x / c[2]);
  else
    x0 = mo;
  auto derivative = (x - x0) / c[0];
  return (x + derivative * c[3]).to(model_output_in.scalar_type());
}

torch::Tensor EulerScheduler::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                        const torch::Tensor& t) const {
  if (!timesteps_.defined())
    throw UsageError("[euler] call set_timesteps before add_noise (levels come from it)");
  if (!t.defined() || x0.dim() < 1)
    throw UsageError("[euler] add_noise needs timesteps and a batched sample");
  auto tt = t.to(torch::kCPU, torch::kFloat64).flatten();
  const int64_t B = tt.numel();
  if (B != 1 && B != x0.size(0))
    throw UsageError(cat("[euler] ", B, " timesteps for a batch of ", x0.size(0)));
  if (per_sample() && B != timesteps_.size(1))
    throw UsageError(cat("[euler] a per-sample table needs one timestep per sample (",
                         timesteps_.size(1), "), got ", B));
  auto ts = (timesteps_.dim() == 1 ? timesteps_.unsqueeze(1) : timesteps_).to(torch::kFloat64);
  std::vector<float> s(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t col = per_sample() ? b : 0;
    const double want = tt[b].item<double>();
    std::vector<int64_t> hits;
    for (int64_t i = 0; i < ts.size(0); ++i)
      if (ts[i][col].item<double>() == want) hits.push_back(i);
    if (hits.empty()) throw UsageError(cat("[euler] timestep ", want, " is not in the schedule"));
    // diffusers takes the second match when a timestep repeats.
    s[b] = sigmas_[hits.size() > 1 ? hits[1] : hits[0]][col].item<float>();
  }
  std::vector<int64_t> shape(x0.dim(), 1);
  shape[0] = B;
  auto sig = torch::tensor(s, torch::kFloat32).to(x0.scalar_type()).reshape(shape);
  return x0 + noise * sig.to(x0.device());
}

}  // namespace dro::sched
