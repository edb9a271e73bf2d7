// Noise-schedule configuration (diffusers `scheduler/scheduler_config.json`). One struct serves
// every scheduler, as diffusers' `from_config` lets any scheduler read another's config.
#pragma once

#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::sched {

struct SchedulerConfig {
  std::string class_name;  // as stored, e.g. PNDMScheduler
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";  // linear | scaled_linear | squaredcos_cap_v2
  std::vector<double> trained_betas;
  std::string prediction_type = "epsilon";   // epsilon | v_prediction | sample
  std::string timestep_spacing = "leading";  // leading | trailing | linspace
  int64_t steps_offset = 0;
  bool set_alpha_to_one = true;
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  std::string variance_type = "fixed_small";
  std::string final_sigmas_type = "zero";
  bool rescale_betas_zero_snr = false;
  // Dynamic thresholding of the predicted x0 (Imagen); off for latent models.
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  // DPMSolverMultistepScheduler
  int64_t solver_order = 2;
  std::string algorithm_type = "dpmsolver++";  // dpmsolver++ | dpmsolver | sde-dpmsolver++
  std::string solver_type = "midpoint";        // midpoint | heun
  bool lower_order_final = true;
  bool euler_at_final = false;
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  // EulerDiscreteScheduler
  std::string interpolation_type = "linear";  // linear | log_linear
  std::string timestep_type = "discrete";     // discrete | continuous
  // Alternative sigma schedules; read so that asking for one is an error rather than ignored.
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;
  bool use_lu_lambdas = false;
  io::OrderedJson raw;

  // True when the file this config was read from sets `key` (to something other than null).
  // Schedulers use it to apply their own class defaults to absent keys, as diffusers' from_config
  // does (DPM-Solver and Euler default to "linspace" spacing, DDPM/DDIM to "leading").
  bool has(const std::string& key) const;

  static SchedulerConfig from_json(const io::OrderedJson& j, const std::string& where);
  static SchedulerConfig load(const std::filesystem::path& component_dir);
};

}  // namespace dro::sched
