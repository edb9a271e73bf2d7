#include "dro/sched/ddim.h"

#include "dro/core/error.h"
#include "dro/sched/timesteps.h"

namespace dro::sched {

DdimScheduler::DdimScheduler(const SchedulerConfig& config, const SchedulerOptions& options)
    : Scheduler(config, options) {
  set_eta(options.eta);
}

void DdimScheduler::set_eta(double eta) {
  if (!(eta >= 0.0)) throw UsageError(cat("[ddim] eta must be >= 0 (got ", eta, ")"));
  options_.eta = eta;
}

torch::Tensor DdimScheduler::spaced(int64_t n) const {
  return torch::tensor(spaced_timesteps(n, schedule_.num_train_timesteps(),
                                        config_.timestep_spacing, config_.steps_offset),
                       torch::kInt64);
}

void DdimScheduler::prepare(bool custom) {
  table_ = int_table();
  const int64_t N = table_.size(0);
  if (custom) {
    prev_ = torch::cat({table_.slice(0, 1), torch::full({1, table_.size(1)}, -1, torch::kInt64)});
  } else {
    prev_ = table_ - schedule_.num_train_timesteps() / N;
  }
}

torch::Tensor DdimScheduler::step(const torch::Tensor& model_output, int64_t k,
                                  const torch::Tensor& sample, torch::Generator* gen) {
  return step_impl(model_output, k, sample, gen, nullptr);
}

torch::Tensor DdimScheduler::step_with_noise(const torch::Tensor& model_output, int64_t k,
                                             const torch::Tensor& sample,
                                             const torch::Tensor& variance_noise) {
  if (!variance_noise.defined() || variance_noise.sizes() != sample.sizes())
    throw UsageError(cat("[ddim] variance noise must have the sample's shape ", sample.sizes()));
  return step_impl(model_output, k, sample, nullptr, &variance_noise);
}

torch::Tensor DdimScheduler::step_impl(const torch::Tensor& model_output, int64_t k,
                                       const torch::Tensor& sample, torch::Generator* gen,
                                       const torch::Tensor* given_noise) {
  const int64_t C = check_step(model_output, k, sample, "ddim");
  const auto& ac = schedule_.alphas_cumprod;
  auto t = table_[k], prev = prev_[k];  // [C]
  // final_alpha_cumprod for steps that land below 0.
  auto final_alpha =
      config_.set_alpha_to_one ? torch::ones({C}, torch::kFloat32) : ac.slice(0, 0, 1).expand({C});
  auto a_t = ac.index_select(0, t);
  auto a_prev = torch::where(prev >= 0, ac.index_select(0, prev.clamp_min(0)), final_alpha);
  auto beta_prod_t = 1 - a_t;
  auto beta_prod_prev = 1 - a_prev;
  // sigma_t(eta) of eq. (16); the noise std of this step.
  auto variance = (beta_prod_prev / beta_prod_t) * (1 - a_t / a_prev);
  auto std_dev = variance.sqrt() * options_.eta;
  auto dir_coef = (1 - a_prev - std_dev.pow(2)).sqrt();

  const auto dtype = sample.scalar_type();
  auto c =
      to_sample({a_t.sqrt(), beta_prod_t.sqrt(), a_prev.sqrt(), dir_coef, std_dev}, sample, dtype);
  const auto& sqrt_a_t = c[0];
  const auto& sqrt_beta_t = c[1];
  torch::Tensor x0, eps;
  if (config_.prediction_type == "epsilon") {
    x0 = (sample - sqrt_beta_t * model_output) / sqrt_a_t;
    eps = model_output;
  } else if (config_.prediction_type == "sample") {
    x0 = model_output;
    eps = (sample - sqrt_a_t * x0) / sqrt_beta_t;
  } else {  // v_prediction
    x0 = sqrt_a_t * sample - sqrt_beta_t * model_output;
    eps = sqrt_a_t * model_output + sqrt_beta_t * sample;
  }
  x0 = postprocess_x0(x0, config_.clip_sample);
  if (options_.use_clipped_model_output) eps = (sample - sqrt_a_t * x0) / sqrt_beta_t;

  auto prev_sample = c[2] * x0 + c[3] * eps;
  if (options_.eta > 0) {
    auto noise = given_noise ? given_noise->to(sample.device(), dtype)
                             : draw_noise(model_output, gen, std::vector<bool>(C, true));
    prev_sample = prev_sample + c[4] * noise;
  }
  return prev_sample;
}

}  // namespace dro::sched
