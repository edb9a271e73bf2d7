#include "dro/sched/scheduler_config.h"

namespace dro::sched {

SchedulerConfig SchedulerConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  SchedulerConfig c;
  c.raw = j;
  c.class_name = get_or<std::string>(j, "_class_name", "", where);
  c.num_train_timesteps = get_or<int64_t>(j, "num_train_timesteps", 1000, where);
  c.beta_start = get_or<double>(j, "beta_start", 0.0001, where);
  c.beta_end = get_or<double>(j, "beta_end", 0.02, where);
  c.beta_schedule = get_or<std::string>(j, "beta_schedule", "linear", where);
  c.trained_betas = get_or<std::vector<double>>(j, "trained_betas", {}, where);
  c.prediction_type = get_or<std::string>(j, "prediction_type", "epsilon", where);
  c.timestep_spacing = get_or<std::string>(j, "timestep_spacing", "leading", where);
  c.steps_offset = get_or<int64_t>(j, "steps_offset", 0, where);
  c.set_alpha_to_one = get_or<bool>(j, "set_alpha_to_one", true, where);
  c.clip_sample = get_or<bool>(j, "clip_sample", true, where);
  c.clip_sample_range = get_or<double>(j, "clip_sample_range", 1.0, where);
  c.variance_type = get_or<std::string>(j, "variance_type", "fixed_small", where);
  c.final_sigmas_type = get_or<std::string>(j, "final_sigmas_type", "zero", where);
  c.rescale_betas_zero_snr = get_or<bool>(j, "rescale_betas_zero_snr", false, where);
  c.thresholding = get_or<bool>(j, "thresholding", false, where);
  c.dynamic_thresholding_ratio = get_or<double>(j, "dynamic_thresholding_ratio", 0.995, where);
  c.sample_max_value = get_or<double>(j, "sample_max_value", 1.0, where);
  c.solver_order = get_or<int64_t>(j, "solver_order", 2, where);
  c.algorithm_type = get_or<std::string>(j, "algorithm_type", "dpmsolver++", where);
  c.solver_type = get_or<std::string>(j, "solver_type", "midpoint", where);
  c.lower_order_final = get_or<bool>(j, "lower_order_final", true, where);
  c.euler_at_final = get_or<bool>(j, "euler_at_final", false, where);
  c.lambda_min_clipped = get_or<double>(j, "lambda_min_clipped", c.lambda_min_clipped, where);
  c.interpolation_type = get_or<std::string>(j, "interpolation_type", "linear", where);
  c.timestep_type = get_or<std::string>(j, "timestep_type", "discrete", where);
  c.use_karras_sigmas = get_or<bool>(j, "use_karras_sigmas", false, where);
  c.use_exponential_sigmas = get_or<bool>(j, "use_exponential_sigmas", false, where);
  c.use_beta_sigmas = get_or<bool>(j, "use_beta_sigmas", false, where);
  c.use_lu_lambdas = get_or<bool>(j, "use_lu_lambdas", false, where);
  if (c.beta_schedule != "linear" && c.beta_schedule != "scaled_linear" &&
      c.beta_schedule != "squaredcos_cap_v2")
    throw UsageError(cat("[config] ", where, ": beta_schedule '", c.beta_schedule,
                         "' is not supported (linear, scaled_linear, squaredcos_cap_v2)"));
  if (c.prediction_type != "epsilon" && c.prediction_type != "v_prediction" &&
      c.prediction_type != "sample")
    throw UsageError(cat("[config] ", where, ": prediction_type '", c.prediction_type,
                         "' is not supported (epsilon, v_prediction, sample)"));
  if (c.timestep_spacing != "leading" && c.timestep_spacing != "trailing" &&
      c.timestep_spacing != "linspace")
    throw UsageError(cat("[config] ", where, ": timestep_spacing '", c.timestep_spacing,
                         "' is not supported (leading, trailing, linspace)"));
  if (c.num_train_timesteps <= 0)
    throw UsageError(cat("[config] ", where, ": num_train_timesteps must be positive"));
  return c;
}

bool SchedulerConfig::has(const std::string& key) const {
  if (!raw.is_object()) return false;
  auto it = raw.find(key);
  return it != raw.end() && !it->is_null();
}

SchedulerConfig SchedulerConfig::load(const std::filesystem::path& dir) {
  const auto path = dir / "scheduler_config.json";
  return from_json(io::read_json(path), path.string());
}

}  // namespace dro::sched
