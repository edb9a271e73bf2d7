// What a run records: TensorBoard event files and metrics.jsonl (one row per logged optimisation
// step) in LOGDIR, written by rank 0. After a resume, the rows and events of micro-steps past the
// restored state are dropped / superseded so each step appears once.
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>

#include "dro/train/learner.h"
#include "dro/train/tensorboard.h"

namespace dro::train {

struct TrainConfig;

class Metrics {
 public:
  // Opens LOGDIR's outputs and writes training_config.json; `step` is the micro-step the run
  // starts from (the restored one when resuming).
  Metrics(const TrainConfig& cfg, int64_t step);
  void log(int64_t micro_step, const StepRecord& r, int64_t buffer_size);

  // Rewrites `file` (atomically) without the rows of micro-steps after `last` and torn lines.
  static void drop_rows_after(const std::filesystem::path& file, int64_t last);

 private:
  std::unique_ptr<TensorBoardWriter> tb_;
  std::ofstream jsonl_;
};

}  // namespace dro::train
