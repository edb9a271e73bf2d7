// The generation side of `dro serve`, without HTTP: the loaded models, the checks a request passes
// before it is queued, one worker thread running the queued jobs one at a time, and the images it
// made, held in memory under random ids (never under a name a request chose).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dro/core/error.h"
#include "dro/models/lora_file.h"
#include "dro/io/json.h"

namespace dro::serve {

struct ModelSpec {
  std::string name;
  std::filesystem::path model;  // diffusers folder
  std::filesystem::path unet;   // optional UNet replacing the model's
  std::vector<models::LoraSpec> loras;  // LoRA files merged into that UNet, in order
};

struct Limits {
  size_t max_prompt_bytes = 500;
  int64_t max_steps = 100;
  double max_guidance = 30;
  int64_t max_images_per_model = 8;
  int64_t max_images = 16;        // per request, all models together
  size_t max_queue = 8;           // jobs waiting or running
  double max_job_seconds = 120;   // estimated from the time of one step, measured at load
  size_t max_cached_images = 4096;
};

struct GenerateRequest {
  std::string prompt, negative_prompt;
  uint64_t seed = 0;
  int64_t steps = 20;
  double guidance = 3.0;
  std::string sampler = "ddim";  // ddpm | ddim | dpmsolver++ | euler
  std::vector<std::string> models;  // empty: every model
  int64_t images_per_model = 1;
  bool shuffle = false;  // mix the models' images in a random order (collect mode)
};

struct ImageInfo {
  std::string id, model, prompt;
  uint64_t seed = 0;
  io::OrderedJson settings;
};

struct JobStatus {
  std::string id, state;  // queued | running | done | failed
  int64_t steps_done = 0, steps_total = 0, queue_position = 0;
  double seconds = 0;
  std::string error;
  std::vector<ImageInfo> images;  // when done, in display order
};

class Engine {
 public:
  // Loads every model (console progress on stderr) and times one denoising step of each.
  // IoError / UsageError naming the model when one does not load.
  Engine(const std::vector<ModelSpec>& models, const std::string& device, const Limits& limits);
  ~Engine();

  // {"models": [{"name", "model", "unet", "size", "sdxl", "seconds_per_step"}], "samplers", "limits"}.
  io::OrderedJson describe() const;
  std::vector<std::string> model_names() const;
  const Limits& limits() const { return limits_; }

  // UsageError saying what is wrong (a field, a range, an unknown model, a job estimated too long).
  void validate(GenerateRequest& r) const;
  // Validates and queues; returns the job id. UsageError as validate(); QueueFull when
  // max_queue jobs are waiting or running.
  std::string submit(GenerateRequest r);
  std::optional<JobStatus> status(const std::string& job) const;
  // Blocks until the job is done or failed.
  JobStatus wait(const std::string& job);

  // The PNG of an image made here, or nullopt (unknown or evicted).
  std::optional<std::string> png(const std::string& id) const;
  std::optional<ImageInfo> info(const std::string& id) const;

  // The estimated seconds of a request on the worker (steps x images x the measured step time).
  double estimate_seconds(const GenerateRequest& r) const;

 private:
  struct Loaded;
  struct Job;
  void run();
  void run_job(Job& job);

  Limits limits_;
  std::vector<std::unique_ptr<Loaded>> models_;
  mutable std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::string> queue_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::deque<std::string> finished_;  // oldest first, trimmed
  std::map<std::string, std::pair<ImageInfo, std::string>> images_;
  std::deque<std::string> image_order_;
  bool stop_ = false;
  std::thread worker_;
};

class QueueFull : public Error {
 public:
  using Error::Error;
};

}  // namespace dro::serve
