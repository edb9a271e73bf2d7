#include "dro/train/buffer_filler.h"

#include <chrono>
#include <optional>

#include "dro/core/clock.h"
#include "dro/core/compat.h"
#include "dro/core/rng.h"
#include "dro/pipeline/denoise.h"
#include "dro/sched/timesteps.h"
#include "dro/train/train_config.h"

namespace dro::train {
BufferFiller::BufferFiller(const TrainConfig& cfg, TrainModels& models, const Precision& precision,
                           torch::Device device, data::ExpertLoader* loader, std::string random_prompt,
                           at::Generator filler_gen, at::Generator random_data_gen)
    : cfg_(cfg),
      models_(models),
      precision_(precision),
      device_(device),
      loader_(loader),
      random_prompt_(std::move(random_prompt)),
      gen_(std::move(filler_gen)),
      random_data_gen_(std::move(random_data_gen)) {}

data::ExpertLoader::Batch BufferFiller::next_expert(int64_t n) {
  const auto t0 = Clock::now();
  data::ExpertLoader::Batch b;
  if (loader_) {
    b = loader_->next(n);
  } else {
    const auto r = static_cast<float>(cfg_.resolution);
    b.prompts.assign(n, random_prompt_);
    b.images = torch::rand({n, 3, cfg_.resolution, cfg_.resolution}, random_data_gen_) * 2 - 1;
    b.add_time_ids = torch::tensor({r, r, 0.f, 0.f, r, r}).repeat({n, 1});
  }
  std::lock_guard<std::mutex> lock(time_mutex_);
  data_s_ += seconds_since(t0);
  return b;
}

// Replaces each prompt by "" with probability random_drop_prompt_probability (one draw each).
std::vector<std::string> BufferFiller::drop_prompts(const std::vector<std::string>& prompts,
                                                    at::Generator& gen) const {
  std::vector<std::string> out;
  for (const auto& p : prompts) {
    const bool drop = at::rand({1}, gen).item<double>() < cfg_.random_drop_prompt_probability;
    out.push_back(drop ? std::string() : p);
  }
  return out;
}

std::vector<TrajectoryBatch> BufferFiller::produce(int64_t batches) {
  std::vector<TrajectoryBatch> out;
  for (int64_t i = 0; i < batches; ++i) out.push_back(produce_one());
  return out;
}

TrajectoryBatch BufferFiller::produce_one() {
  auto batch = next_expert(cfg_.buffer_batch_size);
  const auto t0 = Clock::now();
  const int64_t B = cfg_.buffer_batch_size;
  auto& prompts = *models_.prompts;
  // Prompt dropout: the same (possibly empty) caption conditions sampling and learning.
  const auto captions = drop_prompts(batch.prompts, gen_);
  // Inference mode (no autograd bookkeeping at all) for the sampling; what is kept is copied out
  // of it below, because the stored tensors later feed autograd as inputs.
  std::optional<c10::InferenceMode> inference(std::in_place);
  auto emb = prompts.encode(captions);
  const auto latent = torch::TensorOptions().device(device_).dtype(precision_.buffer);
  torch::Tensor x0;  // [B, C, h, w]
  if (models_.vae) {
    auto images = batch.images.to(device_, precision_.frozen);
    x0 = models_.vae->scale_latents(models_.vae->encode(images).sample(gen_)).to(precision_.buffer);
  } else {  // a pixel-space model: latents are the images in [-1, 1]
    x0 = batch.images.to(latent);
  }
  auto xT = randn({B, models_.latent_channels, models_.latent_size, models_.latent_size}, gen_, latent);
  sched::SchedulerOptions so;
  so.official_sigma_sharing = cfg_.buffer_official_sigmas;
  auto scheduler = sched::make_scheduler(cfg_.buffer_scheduler, models_.scheduler_config, so);
  if (cfg_.buffer_perturb_timesteps) {
    scheduler->set_timesteps(sched::perturbed_timesteps(cfg_.buffer_num_inference_steps,
                                                        models_.noise.num_train_timesteps(), B, &gen_));
  } else {
    scheduler->set_timesteps(cfg_.buffer_num_inference_steps);
  }
  pipeline::Conditioning cond;
  torch::Tensor time_ids;
  if (prompts.sdxl()) {
    const float r = static_cast<float>(cfg_.resolution);
    time_ids = torch::tensor({r, r, 0.f, 0.f, r, r}).repeat({B, 1}).to(device_, precision_.frozen);
  }
  if (cfg_.buffer_guidance_scale > 1.0) {
    auto neg = prompts.force_zeros_for_empty_prompt() ? prompts.zeros(B)
                                                      : prompts.encode(std::vector<std::string>(B, ""));
    cond.embeds = torch::cat({neg.embeds, emb.embeds});
    if (emb.pooled.defined()) cond.text_embeds = torch::cat({neg.pooled, emb.pooled});
    if (time_ids.defined()) cond.time_ids = torch::cat({time_ids, time_ids});
  } else {
    cond.embeds = emb.embeds;
    cond.text_embeds = emb.pooled;
    cond.time_ids = time_ids;
  }
  std::vector<torch::Tensor> ts, xts, epss;
  pipeline::DenoiseOptions d;
  d.guidance_scale = cfg_.buffer_guidance_scale;
  d.generator = &gen_;
  d.hook = [&](int64_t, const torch::Tensor& t, const torch::Tensor& x, const torch::Tensor& e) {
    ts.push_back(t.to(torch::kCPU, torch::kLong));
    xts.push_back(x.to(precision_.buffer, /*non_blocking=*/false, /*copy=*/true));
    epss.push_back(e.to(precision_.buffer, /*non_blocking=*/false, /*copy=*/true));  // stacked below
  };
  {
    // The policy's forwards under the learner's autocast (a thread-local setting).
    compat::AutocastGuard ac(device_, precision_.autocast, compat::AutocastOn::kCudaAndCpu);
    nn::LoraScope lora(models_.policy_slot());  // this thread's adapters: the policy's
    pipeline::denoise(models_.policy(), *scheduler, xT * scheduler->init_noise_sigma(), cond, d);
  }
  inference.reset();  // functional ops on inference tensors give ordinary ones from here on
  torch::NoGradGuard no_grad;
  TrajectoryBatch tb;
  tb.c = emb.embeds.clone();
  tb.x0 = x0.clone();
  tb.t = torch::stack(ts, 1);      // [B, T]
  tb.xt = torch::stack(xts, 1);    // [B, T, C, h, w]
  tb.eps = torch::stack(epss, 1);  // [B, T, C, h, w]
  if (prompts.sdxl()) {
    tb.c_pooled = emb.pooled.clone();
    tb.add_time_ids = batch.add_time_ids.to(device_, precision_.buffer);
  }
  if (profile_ && device_.is_cuda()) compat::synchronize(device_);  // the time is the work's, not its launch
  std::lock_guard<std::mutex> lock(time_mutex_);
  sampling_s_ += seconds_since(t0);
  return tb;
}

BufferSample BufferFiller::expert_batch(int64_t n, at::Generator& gen) {
  auto batch = next_expert(n);
  const auto captions = drop_prompts(batch.prompts, gen);  // one draw per example: a pair shares it
  torch::NoGradGuard no_grad;
  BufferSample s;
  auto emb = models_.prompts->encode(captions);
  s.c = emb.embeds.to(precision_.buffer);
  if (emb.pooled.defined()) s.c_pooled = emb.pooled.to(precision_.buffer);
  auto latents = [&](const torch::Tensor& images) {
    if (!models_.vae) return images.to(device_, precision_.buffer);  // a pixel-space model
    auto x = images.to(device_, precision_.frozen);
    return models_.vae->scale_latents(models_.vae->encode(x).sample(gen)).to(precision_.buffer);
  };
  s.x0 = latents(batch.images);
  if (batch.rejected.defined()) s.x0_rejected = latents(batch.rejected);
  s.t = torch::randint(0, models_.noise.num_train_timesteps(), {n}, gen, torch::kLong).to(device_);
  if (models_.prompts->sdxl()) s.add_time_ids = batch.add_time_ids.to(device_, precision_.buffer);
  if (batch.labels.defined()) s.labels = batch.labels.to(device_);
  return s;
}

FillerState BufferFiller::state() const {
  FillerState s;
  s.filler_rng = generator_state(gen_);
  s.random_data_rng = generator_state(random_data_gen_);
  if (loader_) {
    s.epoch = loader_->epoch();
    s.position = loader_->position();
  }
  return s;
}

void BufferFiller::set_state(const FillerState& s) {
  if (s.filler_rng.defined()) set_generator_state(gen_, s.filler_rng.clone());
  if (s.random_data_rng.defined()) set_generator_state(random_data_gen_, s.random_data_rng.clone());
  if (loader_) loader_->seek(s.epoch, s.position);
}

double BufferFiller::data_seconds() const {
  std::lock_guard<std::mutex> lock(time_mutex_);
  return data_s_;
}

double BufferFiller::sampling_seconds() const {
  std::lock_guard<std::mutex> lock(time_mutex_);
  return sampling_s_;
}

// ---- FillerThread ------------------------------------------------------------------------------

FillerThread::FillerThread(BufferFiller& filler, int threads) : filler_(filler), threads_(threads) {
  thread_ = std::thread([this] { loop(); });
}

FillerThread::~FillerThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();  // finishes a job in flight first
}

void FillerThread::loop() {
  // Parallel reductions split their work by the thread count, so it is part of what the results
  // depend on: the same with and without overlap.
  if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || job_; });
      if (!job_) return;  // stopping with nothing queued
      job = std::move(job_);
      job_ = nullptr;
    }
    job();
  }
}

void FillerThread::start(int64_t for_step, int64_t batches) {
  if (pending_step_) throw std::logic_error("FillerThread::start: a refill is already pending");
  before_ = filler_.state();
  auto task = std::make_shared<std::packaged_task<std::vector<TrajectoryBatch>()>>(
      [this, batches] { return filler_.produce(batches); });
  result_ = task->get_future();
  pending_step_ = for_step;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = [task] { (*task)(); };
  }
  cv_.notify_all();
}

std::vector<TrajectoryBatch> FillerThread::take() {
  const auto t0 = Clock::now();
  pending_step_.reset();
  auto out = result_.get();
  wait_s_ += seconds_since(t0);
  return out;
}

void FillerThread::wait() {
  if (pending_step_) result_.wait();
}

FillerState FillerThread::state_before_pending() const {
  return pending_step_ ? before_ : filler_.state();
}

}  // namespace dro::train
