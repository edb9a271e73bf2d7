#include "dro/serve/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <set>

#include "dro/core/device.h"
#include "dro/io/image.h"
#include "dro/models/unet.h"
#include "dro/pipeline/stable_diffusion.h"
#include "dro/serve/feedback_log.h"

namespace dro::serve {
namespace fs = std::filesystem;

namespace {
const std::vector<std::string> kSamplers = {"ddim", "dpmsolver++", "euler", "ddpm"};
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

struct Engine::Loaded {
  ModelSpec spec;
  pipeline::StableDiffusion sd;
  double seconds_per_step = 0;  // one image, with guidance
};

struct Engine::Job {
  std::string id;
  GenerateRequest request;
  JobStatus status;
  Clock::time_point queued = Clock::now(), started;
};

Engine::Engine(const std::vector<ModelSpec>& models, const std::string& device, const Limits& limits)
    : limits_(limits) {
  if (models.empty()) throw UsageError("[serve] no model to serve");
  std::set<std::string> names;
  for (const auto& m : models)
    if (!names.insert(m.name).second) throw UsageError(cat("[serve] two models are named '", m.name, "'"));
  const torch::Device dev = resolve_device(device);
  for (const auto& m : models) {
    const auto t0 = Clock::now();
    std::cerr << "[serve] loading " << m.name << ": " << m.model.string()
              << (m.unet.empty() ? "" : " with UNet " + m.unet.string())
              << (m.loras.empty() ? "" : cat(" and ", m.loras.size(), " LoRA file(s)")) << " onto " << dev << " ..." << std::endl;
    auto l = std::make_unique<Loaded>();
    l->spec = m;
    // Models of the same folder share its text encoder and VAE; only the UNet is loaded again.
    const Loaded* same = nullptr;
    for (const auto& o : models_)
      if (fs::equivalent(o->spec.model, m.model)) same = o.get();
    if (same) {
      l->sd = same->sd;
      nn::LoadOptions opts;
      opts.device = dev;
      l->sd.unet = models::load_unet(m.unet.empty() ? l->sd.folder.component("unet").dir : m.unet, opts);
      l->sd.unet->eval();
      models::merge_lora_files(*l->sd.unet, m.loras);
      if (l->sd.unet->config().cross_attention_dim[0] != l->sd.prompts.embed_dim() ||
          l->sd.unet->config().in_channels != same->sd.unet->config().in_channels)
        throw IoError(cat("[serve] ", m.unet.string(), ": this UNet does not fit the model ", m.model.string()));
    } else {
      pipeline::LoadSpec spec;
      spec.model = m.model;
      spec.unet = m.unet;
      spec.loras = m.loras;
      spec.device = dev;
      l->sd = pipeline::StableDiffusion::load(spec);
    }
    // One warm-up call, then the time of a few steps sets the estimate jobs are checked against.
    pipeline::GenerateOptions g;
    g.scheduler = "ddim";
    g.guidance_scale = 3.0;
    g.steps = 1;
    pipeline::generate(l->sd, {{"warm up", "", 0, {}}}, g);
    g.steps = 3;
    for (int run = 0; run < 2; ++run) {  // the faster of two: a busy moment should not set the limit
      const auto t1 = Clock::now();
      pipeline::generate(l->sd, {{"warm up", "", 0, {}}}, g);
      const double s = since(t1) / 3;
      l->seconds_per_step = run == 0 ? s : std::min(l->seconds_per_step, s);
    }
    std::cerr << "[serve] " << m.name << " ready in " << since(t0) << " s (" << l->sd.default_size() << " px, "
              << l->seconds_per_step << " s per step per image)" << std::endl;
    models_.push_back(std::move(l));
  }
  worker_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::vector<std::string> Engine::model_names() const {
  std::vector<std::string> n;
  for (const auto& m : models_) n.push_back(m->spec.name);
  return n;
}

io::OrderedJson Engine::describe() const {
  std::lock_guard<std::mutex> lock(mutex_);
  io::OrderedJson j;
  j["models"] = io::OrderedJson::array();
  for (const auto& m : models_)
    j["models"].push_back({{"name", m->spec.name},
                           {"size", m->sd.default_size()},
                           {"sdxl", m->sd.sdxl()},
                           {"seconds_per_step", m->seconds_per_step}});
  j["samplers"] = kSamplers;
  j["limits"] = {{"max_prompt_bytes", limits_.max_prompt_bytes},
                 {"max_steps", limits_.max_steps},
                 {"max_guidance", limits_.max_guidance},
                 {"max_images_per_model", limits_.max_images_per_model},
                 {"max_images", limits_.max_images},
                 {"max_queue", limits_.max_queue},
                 {"max_job_seconds", limits_.max_job_seconds}};
  return j;
}

double Engine::estimate_seconds(const GenerateRequest& r) const {
  std::lock_guard<std::mutex> lock(mutex_);
  double s = 0;
  for (const auto& name : r.models)
    for (const auto& m : models_)
      if (m->spec.name == name)
        s += m->seconds_per_step * static_cast<double>(r.steps * r.images_per_model) * (r.guidance > 1 ? 1.0 : 0.5);
  return s;
}

void Engine::validate(GenerateRequest& r) const {
  if (r.prompt.find_first_not_of(" \t\r\n") == std::string::npos) throw UsageError("[serve] 'prompt' is empty");
  if (r.prompt.size() > limits_.max_prompt_bytes || r.negative_prompt.size() > limits_.max_prompt_bytes)
    throw UsageError(cat("[serve] the prompt has ", std::max(r.prompt.size(), r.negative_prompt.size()),
                         " bytes; at most ", limits_.max_prompt_bytes, " are accepted"));
  for (char c : r.prompt + r.negative_prompt)
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n')
      throw UsageError("[serve] the prompt holds control characters");
  if (r.steps < 1 || r.steps > limits_.max_steps)
    throw UsageError(cat("[serve] 'steps' must be in 1..", limits_.max_steps, " (found ", r.steps, ")"));
  if (!std::isfinite(r.guidance) || r.guidance < 0 || r.guidance > limits_.max_guidance)
    throw UsageError(cat("[serve] 'guidance' must be in 0..", limits_.max_guidance, " (found ", r.guidance, ")"));
  if (std::find(kSamplers.begin(), kSamplers.end(), r.sampler) == kSamplers.end())
    throw UsageError(cat("[serve] unknown 'sampler' \"", r.sampler, "\" (ddim, dpmsolver++, euler or ddpm)"));
  if (r.images_per_model < 1 || r.images_per_model > limits_.max_images_per_model)
    throw UsageError(cat("[serve] 'images_per_model' must be in 1..", limits_.max_images_per_model, " (found ",
                         r.images_per_model, ")"));
  if (r.models.empty()) r.models = model_names();
  std::set<std::string> seen;
  for (const auto& name : r.models) {
    const auto names = model_names();
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw UsageError(cat("[serve] unknown model \"", name.substr(0, 64), "\" (GET /api/models lists them)"));
    if (!seen.insert(name).second) throw UsageError(cat("[serve] model \"", name, "\" is listed twice"));
  }
  const int64_t total = r.images_per_model * static_cast<int64_t>(r.models.size());
  if (total > limits_.max_images)
    throw UsageError(cat("[serve] ", total, " images asked for; at most ", limits_.max_images, " per request"));
  const double est = estimate_seconds(r);
  if (est > limits_.max_job_seconds)
    throw UsageError(cat("[serve] this request would take about ", static_cast<int64_t>(std::ceil(est)),
                         " s here (limit ", limits_.max_job_seconds, " s): ask for fewer steps or images"));
}

std::string Engine::submit(GenerateRequest r) {
  validate(r);
  auto job = std::make_shared<Job>();
  job->id = new_id();
  job->request = std::move(r);
  job->status.id = job->id;
  job->status.state = "queued";
  job->status.steps_total = job->request.steps * static_cast<int64_t>(job->request.models.size());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t active = queue_.size();
    for (const auto& [id, j] : jobs_)
      if (j->status.state == "running") ++active;
    if (active >= limits_.max_queue)
      throw QueueFull(cat("[serve] ", active, " jobs are queued or running (limit ", limits_.max_queue,
                          "); try again shortly"));
    jobs_[job->id] = job;
    queue_.push_back(job->id);
  }
  cv_.notify_all();
  return job->id;
}

std::optional<JobStatus> Engine::status(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  JobStatus s = it->second->status;
  if (s.state == "queued") {
    s.queue_position = std::find(queue_.begin(), queue_.end(), id) - queue_.begin();
    s.seconds = since(it->second->queued);
  } else if (s.state == "running") {
    s.seconds = since(it->second->started);
  }
  return s;
}

JobStatus Engine::wait(const std::string& id) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) throw UsageError("[serve] unknown job");
  auto job = it->second;
  done_cv_.wait(lock, [&] { return job->status.state == "done" || job->status.state == "failed"; });
  return job->status;
}

std::optional<std::string> Engine::png(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = images_.find(id);
  if (it == images_.end()) return std::nullopt;
  return it->second.second;
}

std::optional<ImageInfo> Engine::info(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = images_.find(id);
  if (it == images_.end()) return std::nullopt;
  return it->second.first;
}

void Engine::run() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = jobs_.at(queue_.front());
      queue_.pop_front();
      job->status.state = "running";
      job->started = Clock::now();
    }
    try {
      run_job(*job);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      job->status.state = "failed";
      job->status.error = e.what();
      std::cerr << "[serve] job " << job->id.substr(0, 8) << " failed: " << e.what() << std::endl;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job->status.seconds = since(job->started);
      // Finished jobs are kept a while for their status; their images live in the image cache.
      finished_.push_back(job->id);
      while (finished_.size() > 256) {
        jobs_.erase(finished_.front());
        finished_.pop_front();
      }
    }
    done_cv_.notify_all();
  }
}

void Engine::run_job(Job& job) {
  const GenerateRequest& r = job.request;
  pipeline::GenerateOptions g;
  g.scheduler = r.sampler;
  g.steps = r.steps;
  g.guidance_scale = r.guidance;
  const io::OrderedJson settings{{"steps", r.steps}, {"guidance", r.guidance}, {"sampler", r.sampler}};
  std::vector<std::pair<ImageInfo, std::string>> made;
  for (const auto& name : r.models) {
    Loaded* m = nullptr;
    for (auto& l : models_)
      if (l->spec.name == name) m = l.get();
    // Image i of every model uses seed + i: the models are compared on the same noise.
    std::vector<pipeline::ImageRequest> batch;
    for (int64_t i = 0; i < r.images_per_model; ++i)
      batch.push_back({r.prompt, r.negative_prompt, r.seed + static_cast<uint64_t>(i), {}});
    auto hook = [&](int64_t, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++job.status.steps_done;
    };
    const auto t0 = Clock::now();
    auto res = pipeline::generate(m->sd, batch, g, hook);
    {
      // The estimate follows what jobs really take (the machine's load changes).
      const double per = since(t0) / static_cast<double>(r.steps * r.images_per_model) * (r.guidance > 1 ? 1.0 : 2.0);
      std::lock_guard<std::mutex> lock(mutex_);
      m->seconds_per_step = 0.5 * m->seconds_per_step + 0.5 * per;
    }
    for (int64_t i = 0; i < r.images_per_model; ++i) {
      ImageInfo info{new_id(), name, r.prompt, batch[i].seed, settings};
      made.emplace_back(info, io::encode_png(io::from_tensor(res.images[i], io::PixelRange::kZeroOne)));
    }
  }
  if (r.shuffle) {
    static std::mutex m;
    static std::random_device rd;
    std::lock_guard<std::mutex> lock(m);
    std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) | rd());
    std::shuffle(made.begin(), made.end(), rng);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [info, png] : made) {
    job.status.images.push_back(info);
    image_order_.push_back(info.id);
    images_[info.id] = {info, std::move(png)};
  }
  while (image_order_.size() > limits_.max_cached_images) {
    images_.erase(image_order_.front());
    image_order_.pop_front();
  }
  job.status.state = "done";
  std::cerr << "[serve] job " << job.id.substr(0, 8) << ": " << made.size() << " images (" << r.models.size()
            << " models, " << r.steps << " " << r.sampler << " steps) in " << since(job.started) << " s"
            << std::endl;
}

}  // namespace dro::serve
