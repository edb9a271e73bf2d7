// Noise-schedule configuration (diffusers `scheduler/scheduler_config.json`). One struct serves
// every scheduler, as diffusers' `from_config` lets any scheduler read another's config.
#pragma once

#include <filesystem>
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
  std::string prediction_type = "epsilon";  // epsilon | v_prediction | sample
  std::string timestep_spacing = "leading"; // leading | trailing | linspace
  int64_t steps_offset = 0;
  bool set_alpha_to_one = true;
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  std::string variance_type = "fixed_small";
  std::string final_sigmas_type = "zero";
  bool rescale_betas_zero_snr = false;
  io::OrderedJson raw;

  static SchedulerConfig from_json(const io::OrderedJson& j, const std::string& where);
  static SchedulerConfig load(const std::filesystem::path& component_dir);
};

}  // namespace dro::sched
