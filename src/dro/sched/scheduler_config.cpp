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

SchedulerConfig SchedulerConfig::load(const std::filesystem::path& dir) {
  const auto path = dir / "scheduler_config.json";
  return from_json(io::read_json(path), path.string());
}

}  // namespace dro::sched
