#include "dro/sched/ddpm.h"

#include <algorithm>

#include "dro/core/error.h"
#include "dro/sched/timesteps.h"

namespace dro::sched {

DdpmScheduler::DdpmScheduler(const SchedulerConfig& config) : Scheduler(config, {}) {
  const auto& v = config_.variance_type;
  if (v == "fixed_large_log")
    throw UsageError(
        "[ddpm] variance_type 'fixed_large_log' is not supported: diffusers 0.32 takes the square "
        "root of a log variance there (NaN noise); use fixed_large");
  if (v != "fixed_small" && v != "fixed_small_log" && v != "fixed_large" && v != "learned" &&
      v != "learned_range")
    throw UsageError(cat("[ddpm] variance_type '", v,
                         "' is not supported (fixed_small, fixed_small_log, fixed_large, learned, "
                         "learned_range)"));
}

torch::Tensor DdpmScheduler::spaced(int64_t n) const {
  return torch::tensor(spaced_timesteps(n, schedule_.num_train_timesteps(),
                                        config_.timestep_spacing, config_.steps_offset),
                       torch::kInt64);
}

void DdpmScheduler::prepare(bool) {
  table_ = int_table();
}

torch::Tensor DdpmScheduler::step(const torch::Tensor& model_output, int64_t k,
                                  const torch::Tensor& sample, torch::Generator* gen) {
  return step_impl(model_output, k, sample, gen, nullptr);
}

torch::Tensor DdpmScheduler::step_with_noise(const torch::Tensor& model_output, int64_t k,
                                             const torch::Tensor& sample,
                                             const torch::Tensor& variance_noise) {
  if (!variance_noise.defined() || variance_noise.sizes() != sample.sizes())
    throw UsageError(cat("[ddpm] variance noise must have the sample's shape ", sample.sizes()));
  return step_impl(model_output, k, sample, nullptr, &variance_noise);
}

torch::Tensor DdpmScheduler::step_impl(const torch::Tensor& model_output_in, int64_t k,
                                       const torch::Tensor& sample, torch::Generator* gen,
                                       const torch::Tensor* given_noise) {
  const int64_t C = check_step(model_output_in, k, sample, "ddpm");
  const int64_t N = table_.size(0);
  const auto& vt = config_.variance_type;

  torch::Tensor model_output = model_output_in, predicted_variance;
  if (sample.dim() >= 2 && model_output.size(1) == 2 * sample.size(1) &&
      (vt == "learned" || vt == "learned_range")) {
    auto parts = model_output.split(sample.size(1), 1);
    model_output = parts[0];
    predicted_variance = parts[1];
  }

  // Per-column scalars, float32 as diffusers computes them from 0-dim tensors.
  auto t = table_[k];                                                           // [C]
  auto prev = k + 1 < N ? table_[k + 1] : torch::full({C}, -1, torch::kInt64);  // [C]
  const auto& ac = schedule_.alphas_cumprod;
  auto a_t = ac.index_select(0, t);
  auto a_prev = torch::where(prev >= 0, ac.index_select(0, prev.clamp_min(0)),
                             torch::ones({C}, torch::kFloat32));
  auto beta_prod_t = 1 - a_t;
  auto beta_prod_prev = 1 - a_prev;
  auto cur_alpha = a_t / a_prev;
  auto cur_beta = 1 - cur_alpha;
  // Posterior mean coefficients, eq. (7) of the DDPM paper.
  auto c_x0 = (a_prev.sqrt() * cur_beta) / beta_prod_t;
  auto c_xt = cur_alpha.sqrt() * beta_prod_prev / beta_prod_t;
  // Posterior variance beta~_t, clamped as diffusers' _get_variance.
  auto variance = ((1 - a_prev) / (1 - a_t) * cur_beta).clamp_min(1e-20);

  const auto dtype = sample.scalar_type();
  auto c = to_sample({a_t.sqrt(), beta_prod_t.sqrt(), c_x0, c_xt}, sample, dtype);
  const auto& sqrt_a_t = c[0];
  const auto& sqrt_beta_t = c[1];
  torch::Tensor x0;
  if (config_.prediction_type == "epsilon")
    x0 = (sample - sqrt_beta_t * model_output) / sqrt_a_t;
  else if (config_.prediction_type == "sample")
    x0 = model_output;
  else  // v_prediction
    x0 = sqrt_a_t * sample - sqrt_beta_t * model_output;
  x0 = postprocess_x0(x0, config_.clip_sample);
  auto prev_sample = c[2] * x0 + c[3] * sample;

  // Noise only where t > 0.
  std::vector<bool> draw(C);
  bool any = false;
  for (int64_t j = 0; j < C; ++j) any |= (draw[j] = t[j].item<int64_t>() > 0);
  if (!any) return prev_sample;

  torch::Tensor noise;
  if (given_noise) {
    noise = given_noise->to(sample.device(), dtype);
    if (per_sample() && !std::all_of(draw.begin(), draw.end(), [](bool d) { return d; })) {
      noise = noise.clone();
      for (int64_t j = 0; j < C; ++j)
        if (!draw[j]) noise[j].zero_();
    }
  } else {
    noise = draw_noise(model_output, gen, draw);
  }

  torch::Tensor term;
  if (vt == "fixed_small") {
    term = to_sample({variance.sqrt()}, sample, dtype)[0] * noise;
  } else if (vt == "fixed_small_log") {
    term = to_sample({torch::exp(0.5 * torch::log(variance))}, sample, dtype)[0] * noise;
  } else if (vt == "fixed_large") {
    term = to_sample({cur_beta.sqrt()}, sample, dtype)[0] * noise;
  } else {
    if (!predicted_variance.defined())
      throw UsageError(cat("[ddpm] variance_type '", vt, "' needs a model output with ",
                           2 * sample.size(1), " channels (mean and variance)"));
    if (vt == "learned") {
      term = predicted_variance.pow(0.5) * noise;
    } else {  // learned_range: interpolate log variance between beta~_t and beta_t
      auto logs = to_sample({torch::log(variance), torch::log(cur_beta)}, sample, dtype);
      auto frac = (predicted_variance + 1) / 2;
      auto log_var = frac * logs[1] + (1 - frac) * logs[0];
      term = torch::exp(0.5 * log_var) * noise;
    }
  }
  return prev_sample + term;
}

}  // namespace dro::sched
