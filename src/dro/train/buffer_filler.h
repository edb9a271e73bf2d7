// The buffer filler (the actor of Diffusion-DRO): for a batch of expert examples it applies prompt
// dropout, encodes the captions and the images (VAE), draws the initial noise and the perturbed
// sampler timesteps, samples the policy and records every step's (t, x_t, eps) as trajectories for
// the replay buffer. It owns the random streams and the data position it consumes, so its output
// depends on nothing the learner does between two policy refreshes; FillerThread runs it ahead of
// the learner on a second thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "dro/data/expert_dataset.h"
#include "dro/train/precision.h"
#include "dro/train/replay_buffer.h"
#include "dro/train/train_models.h"

namespace dro::train {

struct TrainConfig;

// Everything the filler's output depends on besides the policy weights.
struct FillerState {
  torch::Tensor filler_rng, random_data_rng;  // generator states
  int64_t epoch = 0, position = 0;            // the expert stream (0, 0 without a loader)
};

class BufferFiller {
 public:
  // `loader` null: random images of the configured resolution captioned `random_prompt`
  // (benchmarks), drawn from `random_data_gen`.
  BufferFiller(const TrainConfig& cfg, TrainModels& models, const Precision& precision, torch::Device device,
               data::ExpertLoader* loader, std::string random_prompt, at::Generator filler_gen,
               at::Generator random_data_gen);

  // `batches` batches of buffer_batch_size trajectories each, in order (one refill).
  std::vector<TrajectoryBatch> produce(int64_t batches);
  // An expert batch for objectives without policy samples: fresh data, uniform timesteps, prompt
  // dropout and VAE sampling from `gen` (the learner's stream, as before the split).
  BufferSample expert_batch(int64_t n, at::Generator& gen);

  FillerState state() const;
  void set_state(const FillerState& s);

  // Synchronise the device after each batch so the sampling time is exact (benchmarks).
  void set_profile(bool on) { profile_ = on; }
  // Seconds spent reading expert data and sampling trajectories (thread-safe).
  double data_seconds() const;
  double sampling_seconds() const;

 private:
  data::ExpertLoader::Batch next_expert(int64_t n);
  std::vector<std::string> drop_prompts(const std::vector<std::string>& prompts, at::Generator& gen) const;
  TrajectoryBatch produce_one();

  const TrainConfig& cfg_;
  TrainModels& models_;
  Precision precision_;
  torch::Device device_;
  data::ExpertLoader* loader_;
  std::string random_prompt_;
  at::Generator gen_, random_data_gen_;
  mutable std::mutex time_mutex_;
  double data_s_ = 0, sampling_s_ = 0;
  bool profile_ = false;
};

// Runs refills of a BufferFiller on one background thread, one at a time, with `threads` intra-op
// threads.
class FillerThread {
 public:
  FillerThread(BufferFiller& filler, int threads);
  ~FillerThread();  // waits for a refill in flight
  FillerThread(const FillerThread&) = delete;
  FillerThread& operator=(const FillerThread&) = delete;

  // Starts the refill of micro-step `for_step` (`batches` batches); nothing may be in flight.
  void start(int64_t for_step, int64_t batches);
  // The micro-step whose refill is in flight or done and not yet taken, if any.
  std::optional<int64_t> pending() const { return pending_step_; }
  // Waits for the pending refill and hands it over (rethrows its error).
  std::vector<TrajectoryBatch> take();
  // Waits until the pending refill is done (it stays pending).
  void wait();
  // The filler's state as if the pending refill had not started (what a save must record).
  FillerState state_before_pending() const;
  // Seconds take() spent waiting.
  double wait_seconds() const { return wait_s_; }
  int threads() const { return threads_; }

 private:
  void loop();
  BufferFiller& filler_;
  int threads_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool stop_ = false;
  std::optional<int64_t> pending_step_;
  FillerState before_;
  std::future<std::vector<TrajectoryBatch>> result_;
  double wait_s_ = 0;
};

}  // namespace dro::train
