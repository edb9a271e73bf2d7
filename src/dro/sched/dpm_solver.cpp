#include "dro/sched/dpm_solver.h"

#include <cmath>

#include "dro/core/error.h"
#include "dro/sched/timesteps.h"

namespace dro::sched {
namespace {

// VP coefficients of a variance-exploding level: alpha = 1 / sqrt(sigma^2 + 1), sigma_t = sigma *
// alpha; lambda = log(alpha / sigma_t) is the half log-SNR the solver steps in.
struct Level {
  torch::Tensor alpha, sigma, lambda;  // [C] float32
};

Level level(const torch::Tensor& s) {
  Level l;
  l.alpha = 1 / (s.pow(2) + 1).sqrt();
  l.sigma = s * l.alpha;
  l.lambda = torch::log(l.alpha) - torch::log(l.sigma);
  return l;
}

}  // namespace

DpmSolverScheduler::DpmSolverScheduler(const SchedulerConfig& config,
                                       const SchedulerOptions& options)
    : Scheduler(config, options) {
  auto& c = config_;
  // diffusers' class default, for configs read from another scheduler's file.
  if (c.raw.is_object() && !c.has("timestep_spacing")) c.timestep_spacing = "linspace";
  if (c.algorithm_type == "deis") c.algorithm_type = "dpmsolver++";
  if (c.solver_type == "logrho" || c.solver_type == "bh1" || c.solver_type == "bh2")
    c.solver_type = "midpoint";
  if (c.algorithm_type != "dpmsolver++" && c.algorithm_type != "dpmsolver" &&
      c.algorithm_type != "sde-dpmsolver++")
    throw UsageError(cat("[dpmsolver++] algorithm_type '", c.algorithm_type,
                         "' is not supported (dpmsolver++, dpmsolver, sde-dpmsolver++)"));
  if (c.solver_type != "midpoint" && c.solver_type != "heun")
    throw UsageError(
        cat("[dpmsolver++] solver_type '", c.solver_type, "' is not supported (midpoint, heun)"));
  if (c.solver_order < 1 || c.solver_order > 3)
    throw UsageError(
        cat("[dpmsolver++] solver_order must be 1, 2 or 3 (got ", c.solver_order, ")"));
  if (c.final_sigmas_type != "zero" && c.final_sigmas_type != "sigma_min")
    throw UsageError(cat("[dpmsolver++] final_sigmas_type '", c.final_sigmas_type,
                         "' is not supported (zero, sigma_min)"));
  if (c.algorithm_type == "dpmsolver" && c.final_sigmas_type == "zero")
    throw UsageError(
        "[dpmsolver++] final_sigmas_type 'zero' needs algorithm_type dpmsolver++ or "
        "sde-dpmsolver++ (use sigma_min)");
  if (c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas || c.use_lu_lambdas)
    throw UsageError(
        "[dpmsolver++] karras / exponential / beta / lu sigma schedules are not "
        "supported");
  if (c.variance_type == "learned" || c.variance_type == "learned_range")
    throw UsageError("[dpmsolver++] learned variance outputs are not supported");
  if (c.rescale_betas_zero_snr) {
    // diffusers keeps the last level finite: alpha_bar_T = 2^-24 instead of 0.
    schedule_.alphas_cumprod = schedule_.alphas_cumprod.clone();
    schedule_.alphas_cumprod[-1] = std::ldexp(1.0, -24);
  }
}

int64_t DpmSolverScheduler::last_timestep() const {
  const auto& ac = schedule_.alphas_cumprod;
  auto lambda = torch::log(ac.sqrt()) - torch::log((1 - ac).sqrt());  // decreasing in t
  // searchsorted(flip(lambda), lambda_min_clipped): the tail whose lambda is below the clip.
  const int64_t clipped = (lambda < config_.lambda_min_clipped).sum().item<int64_t>();
  return schedule_.num_train_timesteps() - clipped;
}

torch::Tensor DpmSolverScheduler::spaced(int64_t n) const {
  return torch::tensor(dpm_solver_timesteps(n, schedule_.num_train_timesteps(), last_timestep(),
                                            config_.timestep_spacing, config_.steps_offset),
                       torch::kInt64);
}

void DpmSolverScheduler::prepare(bool) {
  table_ = int_table();  // [N, C]
  const int64_t N = table_.size(0);
  const int64_t cols = options_.official_sigma_sharing ? 1 : table_.size(1);
  auto all = schedule_.sigmas();  // [T]
  auto cols_t = table_.slice(1, 0, cols).contiguous();
  auto s = all.index_select(0, cols_t.flatten()).reshape({N, cols});
  auto last = config_.final_sigmas_type == "zero" ? torch::zeros({1, cols}, torch::kFloat32)
                                                  : all.slice(0, 0, 1).expand({1, cols});
  sigmas_ = torch::cat({s, last}).contiguous();  // [N + 1, cols]
}

torch::Tensor DpmSolverScheduler::sigmas() const {
  if (!sigmas_.defined()) return sigmas_;
  return sigmas_.size(1) == 1 ? sigmas_.squeeze(1) : sigmas_;
}

void DpmSolverScheduler::reset() {
  history_.clear();
  lower_order_nums_ = 0;
  last_step_ = -1;
}

int64_t DpmSolverScheduler::index_for_timestep(int64_t t, int64_t column) const {
  const int64_t N = table_.size(0);
  auto col = table_.select(1, column);
  std::vector<int64_t> hits;
  for (int64_t i = 0; i < N; ++i)
    if (col[i].item<int64_t>() == t) hits.push_back(i);
  if (hits.empty()) return N - 1;
  return hits.size() > 1 ? hits[1] : hits[0];
}

torch::Tensor DpmSolverScheduler::step(const torch::Tensor& model_output_in, int64_t k,
                                       const torch::Tensor& sample_in, torch::Generator* gen) {
  check_step(model_output_in, k, sample_in, "dpmsolver++");
  if (k == 0) {
    reset();
  } else if (!history_.empty() && k != last_step_ + 1) {
    throw UsageError(cat("[dpmsolver++] step ", k, " after step ", last_step_,
                         ": multistep steps must come in order (call reset() to start over)"));
  }
  const auto& c = config_;
  const int64_t N = table_.size(0);
  const auto f32 = torch::kFloat32;
  auto model_output = model_output_in.to(f32);
  auto x = sample_in.to(f32);  // diffusers upcasts the sample for the update

  // Convert the model output to what the solver integrates: x0 (dpmsolver++) or eps (dpmsolver).
  const Level s0 = level(sigmas_[k]);
  auto cv = to_sample({s0.alpha, s0.sigma}, x, f32);
  const auto& alpha_s0 = cv[0];
  const auto& sigma_s0 = cv[1];
  torch::Tensor m;
  if (c.algorithm_type != "dpmsolver") {
    if (c.prediction_type == "epsilon")
      m = (x - sigma_s0 * model_output) / alpha_s0;
    else if (c.prediction_type == "sample")
      m = model_output;
    else
      m = alpha_s0 * x - sigma_s0 * model_output;
    m = postprocess_x0(m, false);
  } else {
    if (c.prediction_type == "epsilon")
      m = model_output;
    else if (c.prediction_type == "sample")
      m = (x - alpha_s0 * model_output) / sigma_s0;
    else
      m = alpha_s0 * model_output + sigma_s0 * x;
    if (c.thresholding) {
      auto x0 = postprocess_x0((x - sigma_s0 * m) / alpha_s0, false);
      m = (x - alpha_s0 * x0) / sigma_s0;
    }
  }
  history_.push_back(m);
  if (static_cast<int64_t>(history_.size()) > c.solver_order) history_.erase(history_.begin());

  // Lower orders at the end: always for a final sigma of 0, else below 15 steps.
  const bool lower_final = k == N - 1 && (c.euler_at_final || (c.lower_order_final && N < 15) ||
                                          c.final_sigmas_type == "zero");
  const bool lower_second = k == N - 2 && c.lower_order_final && N < 15;
  int order = 3;
  if (c.solver_order == 1 || lower_order_nums_ < 1 || lower_final)
    order = 1;
  else if (c.solver_order == 2 || lower_order_nums_ < 2 || lower_second)
    order = 2;

  const bool sde = c.algorithm_type == "sde-dpmsolver++";
  const bool pp = c.algorithm_type != "dpmsolver";  // data prediction
  torch::Tensor noise;
  if (sde) noise = draw_noise(x, gen, std::vector<bool>(x.size(0), true));

  const Level t = level(sigmas_[k + 1]);
  auto h = t.lambda - s0.lambda;
  auto em1 = torch::exp(-h) - 1.0;     // e^{-h} - 1
  auto ep1 = torch::exp(h) - 1.0;      // e^{h} - 1
  auto e2 = 1 - torch::exp(-2.0 * h);  // 1 - e^{-2h}
  auto noise_coef = t.sigma * (1.0 - torch::exp(-2.0 * h)).sqrt();
  // The sample coefficient and the coefficient of D0 (the newest output), by algorithm.
  torch::Tensor cx, c0;
  if (sde) {
    cx = t.sigma / s0.sigma * torch::exp(-h);
    c0 = e2 * t.alpha;  // added
  } else if (pp) {
    cx = t.sigma / s0.sigma;
    c0 = t.alpha * em1;  // subtracted
  } else {
    cx = t.alpha / s0.alpha;
    c0 = t.sigma * ep1;  // subtracted
  }
  const auto& m0 = history_.back();

  torch::Tensor prev;
  if (order == 1) {
    auto k1 = to_sample({cx, c0, noise_coef}, x, f32);
    prev = sde ? k1[0] * x + k1[1] * m0 + k1[2] * noise : k1[0] * x - k1[1] * m0;
  } else if (order == 2) {
    const Level s1 = level(sigmas_[k - 1]);
    auto r0 = (s0.lambda - s1.lambda) / h;
    const auto& m1 = history_[history_.size() - 2];
    // The D1 coefficient: midpoint 0.5 * c0, heun from the exponential integrator.
    torch::Tensor c1;
    if (c.solver_type == "midpoint")
      c1 = 0.5 * c0;
    else if (sde)
      c1 = t.alpha * (e2 / (-2.0 * h) + 1.0);
    else if (pp)
      c1 = t.alpha * (em1 / h + 1.0);
    else
      c1 = t.sigma * (ep1 / h - 1.0);
    auto k2 = to_sample({cx, c0, c1, 1.0 / r0, noise_coef}, x, f32);
    auto D1 = k2[3] * (m0 - m1);
    if (sde)
      prev = k2[0] * x + k2[1] * m0 + k2[2] * D1 + k2[4] * noise;
    else if (pp && c.solver_type == "heun")
      prev = k2[0] * x - k2[1] * m0 + k2[2] * D1;
    else
      prev = k2[0] * x - k2[1] * m0 - k2[2] * D1;
  } else {
    const Level s1 = level(sigmas_[k - 1]);
    const Level s2 = level(sigmas_[k - 2]);
    auto r0 = (s0.lambda - s1.lambda) / h;
    auto r1 = (s1.lambda - s2.lambda) / h;
    const auto& m1 = history_[history_.size() - 2];
    const auto& m2 = history_[history_.size() - 3];
    torch::Tensor c1, c2;
    if (sde) {
      c1 = t.alpha * (e2 / (-2.0 * h) + 1.0);
      c2 = t.alpha * ((1.0 - torch::exp(-2.0 * h) - 2.0 * h) / (2.0 * h).pow(2) - 0.5);
    } else if (pp) {
      c1 = t.alpha * (em1 / h + 1.0);
      c2 = t.alpha * ((torch::exp(-h) - 1.0 + h) / h.pow(2) - 0.5);
    } else {
      c1 = t.sigma * (ep1 / h - 1.0);
      c2 = t.sigma * ((torch::exp(h) - 1.0 - h) / h.pow(2) - 0.5);
    }
    auto k3 = to_sample(
        {cx, c0, c1, c2, 1.0 / r0, 1.0 / r1, r0 / (r0 + r1), 1.0 / (r0 + r1), noise_coef}, x, f32);
    auto D1_0 = k3[4] * (m0 - m1);
    auto D1_1 = k3[5] * (m1 - m2);
    auto D1 = D1_0 + k3[6] * (D1_0 - D1_1);
    auto D2 = k3[7] * (D1_0 - D1_1);
    if (sde)
      prev = k3[0] * x + k3[1] * m0 + k3[2] * D1 + k3[3] * D2 + k3[8] * noise;
    else if (pp)
      prev = k3[0] * x - k3[1] * m0 + k3[2] * D1 - k3[3] * D2;
    else
      prev = k3[0] * x - k3[1] * m0 - k3[2] * D1 - k3[3] * D2;
  }

  if (lower_order_nums_ < c.solver_order) ++lower_order_nums_;
  last_step_ = k;
  return prev.to(model_output_in.scalar_type());
}

torch::Tensor DpmSolverScheduler::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                            const torch::Tensor& t) const {
  if (!timesteps_.defined())
    throw UsageError("[dpmsolver++] call set_timesteps before add_noise (levels come from it)");
  if (!t.defined() || t.is_floating_point() || x0.dim() < 1)
    throw UsageError("[dpmsolver++] add_noise needs integer timesteps and a batched sample");
  auto tt = t.to(torch::kCPU, torch::kInt64).flatten();
  const int64_t B = tt.numel();
  if (B != 1 && B != x0.size(0))
    throw UsageError(cat("[dpmsolver++] ", B, " timesteps for a batch of ", x0.size(0)));
  if (per_sample() && B != columns())
    throw UsageError(cat("[dpmsolver++] a per-sample table needs one timestep per sample (",
                         columns(), "), got ", B));
  std::vector<float> s(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t idx = index_for_timestep(tt[b].item<int64_t>(), per_sample() ? b : 0);
    s[b] = sigmas_[idx][sigma_columns() == 1 ? 0 : b].item<float>();
  }
  // diffusers casts the levels to the sample dtype before converting them.
  auto sig = torch::tensor(s, torch::kFloat32).to(x0.scalar_type());
  auto alpha = 1 / (sig.pow(2) + 1).sqrt();
  auto sigma_t = sig * alpha;
  std::vector<int64_t> shape(x0.dim(), 1);
  shape[0] = B;
  return alpha.reshape(shape).to(x0.device()) * x0 + sigma_t.reshape(shape).to(x0.device()) * noise;
}

}  // namespace dro::sched
