// The Diffusion-DRO trainer (the official train.py, step for step). It wires the parts together:
// the models under the precision policy (train_models.h, precision.h), the buffer filler that
// samples policy trajectories for expert prompts (buffer_filler.h; ahead of the learner on a second
// thread between policy refreshes), the replay buffer, the learner (learner.h: objective, AdamW,
// LR schedule, clipping, accumulation, EMA, policy refresh), the resumable state and checkpoints
// (train_state.h) and the metrics (metrics.h).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "dro/train/learner.h"
#include "dro/train/train_config.h"

namespace dro::models {
struct UNet2DConditionModelImpl;
}
namespace dro::dist {
class Group;
}

namespace dro::train {

struct TrainerOptions {
  // Replaces the expert folder with random images of the configured resolution and the given
  // prompt (benchmarks); `train_dataset` is then not read.
  bool random_data = false;
  std::string random_prompt = "a photo";
  bool profile = false;         // synchronise the device around phases so times are exact
  bool write_outputs = true;    // logs, checkpoints and state (off for benchmarks)
  // The data-parallel group; null joins the one the launcher's environment describes (a group of
  // one for a plain run). Rank 0 writes every file; all ranks must call run() / save() alike.
  std::shared_ptr<dist::Group> group;
};

class Trainer {
 public:
  explicit Trainer(TrainConfig config, TrainerOptions options = {});
  ~Trainer();

  // Trains until config.num_steps micro-steps, resuming from LOGDIR/state when config.resume.
  void run();
  // One micro-step (buffer refill when due, objective, backward, and the optimiser on the
  // accumulation boundary). Returns the micro-step number just done (1-based).
  int64_t micro_step();

  int64_t step() const;
  // Phase times so far (the filler's included).
  PhaseTimes times() const;
  const TrainConfig& config() const;
  models::UNet2DConditionModelImpl& unet();
  // Writes LOGDIR/state (atomically) and, with `checkpoint`, LOGDIR/ckpt-<step>/unet.
  void save(bool checkpoint);
  // Replaces every rank's accumulated gradients by their mean over the ranks (done by micro_step
  // at each accumulation boundary; exposed for tests).
  void average_gradients();
  dist::Group& group();
  // Parameters the optimiser updates (the UNet's, or the LoRA adapters').
  int64_t trained_parameter_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dro::train
