// The scorer options shared by `dro score` and `dro eval`: which scorers, their model files, the
// device and dtype, batching and image handling.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "dro/dist/process_group.h"
#include "dro/eval/score_run.h"

namespace dro::app {

struct ScorerFlags {
  bool pickscore = false, hpsv2 = false, aestheticv1 = false, aestheticv2 = false, clip = false;
  bool imagereward = false;
  int batch_size = 32;
  int workers = 2;
  std::string hps_version = "v2.0";
  std::string models_file;
  eval::ScorerModels models;
  std::string device = "auto";
  std::string dtype = "fp32";
  bool skip_bad = false, first_png = false, keep_small = false;
};

void add_scorer_flags(CLI::App* cmd, ScorerFlags& f);

// The scorers chosen (UsageError naming the flags when none); `who` prefixes messages.
std::vector<eval::ScorerRequest> scorer_requests(const ScorerFlags& f, const std::string& who);
// The model paths from the flags and --models (flags win).
eval::ScorerModels scorer_models(const ScorerFlags& f);
// Device (cuda:LOCAL_RANK under a launcher), dtype and HPS version.
eval::ScorerOptions scorer_options(const ScorerFlags& f, const dist::Env& env);
// Batch size, workers and image handling into `run`.
void apply_scorer_flags(const ScorerFlags& f, eval::ScoreRunOptions& run);

// Joins the launcher's process group (a group of one for a plain run) and runs the scorers of `f`
// over `run` (its batching and image flags applied). `is_main` tells whether this is rank 0.
eval::ScoreRunResult run_scorers(const ScorerFlags& f, const std::vector<eval::ScorerRequest>& requests,
                                 eval::ScoreRunOptions& run, bool* is_main);

}  // namespace dro::app
