// The learner of Diffusion-DRO: the objective on batches drawn from the replay buffer (with the
// expert branch noised here), backward with gradient accumulation, the mean over ranks, clipping,
// AdamW with the LR schedule, the EMA, and the copy of the trained weights into the policy.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/safetensors.h"
#include "dro/train/ema.h"
#include "dro/train/lr_schedule.h"
#include "dro/train/objective.h"
#include "dro/train/precision.h"
#include "dro/train/replay_buffer.h"
#include "dro/train/train_models.h"

namespace dro::dist {
class Group;
}

namespace dro::train {

struct TrainConfig;

// Seconds spent per phase, summed over micro-steps (for `dro bench train`).
struct PhaseTimes {
  double data = 0;         // expert images read and transformed (by the filler)
  double buffer = 0;       // policy sampling (the filler's busy time, overlapped or not)
  double buffer_wait = 0;  // the learner waiting for a refill (the part of `buffer` not hidden)
  double reference = 0, trained_forward = 0, backward = 0, optimizer = 0;
  int64_t micro_steps = 0;
  int64_t refills = 0, refills_ahead = 0;  // refills done, and those sampled ahead on the filler thread
};

// What one optimisation step did (for the metrics).
struct StepRecord {
  int64_t opt_step = 0;  // 1-based, after the step
  double lr = 0, grad_norm = 0;
  std::map<std::string, double> means;  // "loss", "diff", ... over every rank's micro-steps
};

class Learner {
 public:
  Learner(const TrainConfig& cfg, TrainModels& models, const Precision& precision, torch::Device device,
          dist::Group& group, at::Generator gen);

  // The objective on `sample` and its backward (scaled for accumulation); returns the loss.
  // Stops with an Error before anything is updated when the loss is not finite.
  double accumulate(const BufferSample& sample, int64_t micro_step, PhaseTimes& times);
  // The optimisation step at an accumulation boundary: mean of the ranks' gradients, clipping,
  // AdamW at the scheduled rate, EMA. Stops before the update when the gradient norm is not
  // finite. Returns the step's record (its means reduced over the ranks when `log`).
  StepRecord optimise(int64_t micro_step, bool log, PhaseTimes& times);
  // Copies the trained weights (or adapters) into the separate policy copy.
  void refresh_policy();
  // Replaces every rank's accumulated gradients by their mean over the ranks.
  void average_gradients();

  const std::vector<torch::Tensor>& params() const { return params_; }
  const std::vector<std::string>& param_names() const { return names_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  Ema* ema() { return ema_.get(); }
  const LrSchedule& lr() const { return lr_; }
  at::Generator& generator() { return gen_; }
  int64_t opt_step() const { return opt_step_; }
  void set_opt_step(int64_t n) { opt_step_ = n; }
  // This rank's part of an optimisation step in progress (a save between two optimiser steps):
  // "grad/<param>" accumulated gradients, "sum/<stat>" loss sums and "count"; empty on a
  // boundary. set_accumulation_state puts it back (an empty map: nothing accumulated).
  io::NamedTensors accumulation_state() const;
  void set_accumulation_state(const std::map<std::string, torch::Tensor>& t, const std::string& where);
  // Synchronise the device around phases so their times are exact (benchmarks).
  void set_profile(bool on) { profile_ = on; }
  // Mean loss of the micro-steps since the last optimisation step, else of the last step.
  double running_loss() const;

 private:
  Denoiser denoiser(models::UNet2DConditionModel& m, nn::LoraSlot slot, double* timer) const;

  const TrainConfig& cfg_;
  TrainModels& models_;
  Precision precision_;
  torch::Device device_;
  dist::Group& group_;
  at::Generator gen_;
  std::unique_ptr<Objective> objective_;
  std::function<torch::Tensor(const torch::Tensor&)> mean_over_ranks_;  // unset on one rank
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<Ema> ema_;
  LrSchedule lr_;
  int64_t opt_step_ = 0;
  std::map<std::string, double> sums_;  // loss statistics of the current optimisation step
  int64_t count_ = 0;
  double last_step_loss_ = 0;
  bool profile_ = false;
};

}  // namespace dro::train
