#include "dro/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>

#include "dro/core/compat.h"
#include "dro/core/device.h"
#include "dro/core/error.h"
#include "dro/core/progress.h"
#include "dro/core/rng.h"
#include "dro/data/expert_dataset.h"
#include "dro/dist/process_group.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/models/autoencoder_kl.h"
#include "dro/models/unet.h"
#include "dro/pipeline/denoise.h"
#include "dro/pipeline/prompt_encoder.h"
#include "dro/sched/noise_schedule.h"
#include "dro/sched/scheduler.h"
#include "dro/sched/timesteps.h"
#include "dro/train/ema.h"
#include "dro/train/lr_schedule.h"
#include "dro/train/objective.h"
#include "dro/train/optimizer_state.h"
#include "dro/train/replay_buffer.h"
#include "dro/train/tensorboard.h"

namespace dro::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}


// Loss statistics accumulated over one optimisation step.
struct StepStats {
  std::map<std::string, double> sums;
  int64_t n = 0;
  void add(const ObjectiveOutput& o, double loss) {
    sums["loss"] += loss;
    for (const auto& [k, v] : o.stats) sums[k] += v.mean().item<double>();
    ++n;
  }
  void clear() {
    sums.clear();
    n = 0;
  }
};

}  // namespace

struct Trainer::Impl {
  TrainConfig cfg;
  TrainerOptions opts;
  std::shared_ptr<dist::Group> group;
  int rank = 0, world = 1;
  bool main = true;  // rank 0: writes files, shows progress
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;  // weights and activations of the frozen models
  bool autocast_bf16 = false;

  io::ModelFolder folder;
  std::optional<pipeline::PromptEncoder> prompts;
  models::AutoencoderKL vae{nullptr};
  models::UNet2DConditionModel unet{nullptr}, unet_ref{nullptr}, unet_policy{nullptr};
  bool policy_shared = false;  // the policy equals the trained weights at every sampling
  sched::SchedulerConfig sched_config;
  sched::NoiseSchedule noise;
  std::unique_ptr<Objective> objective;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::vector<torch::Tensor> params;
  std::vector<std::string> param_names;
  std::unique_ptr<Ema> ema;
  LrSchedule lr;
  std::unique_ptr<ReplayBuffer> buffer;

  std::optional<data::ExpertDataset> dataset;
  std::unique_ptr<data::ExpertLoader> loader;
  at::Generator filler_gen, learner_gen, random_data_gen;

  int64_t step = 0;      // micro-steps done
  int64_t opt_step = 0;  // optimisation steps done
  int64_t latent_channels = 4, latent_size = 64;
  StepStats stats;
  PhaseTimes times;
  double last_grad_norm = 0;
  double last_step_loss = 0;  // mean loss of the last optimisation step (progress display)
  std::unique_ptr<TensorBoardWriter> tb;
  std::unique_ptr<std::ofstream> jsonl;

  void sync() {
    if (opts.profile && device.is_cuda()) compat::synchronize(device);
  }

  Impl(TrainConfig c, TrainerOptions o) : cfg(std::move(c)), opts(o) {
    cfg.validate();
    device = resolve_device(cfg.device);
    group = opts.group;
    if (!group) {
      const auto env = dist::Env::from_environment();
      if (env.distributed() && device.is_cuda() && !device.has_index()) {  // one process per GPU
        const auto gpus = static_cast<int>(torch::cuda::device_count());
        if (env.local_rank >= gpus)
          throw UsageError(cat("[train] LOCAL_RANK ", env.local_rank, " needs GPU ", env.local_rank, " but ", gpus,
                               " CUDA device(s) are visible: start at most one process per GPU (--nproc ", gpus,
                               "), or name one device for all, e.g. --device cuda:0 --dist-backend gloo"));
        device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
      }
      dist::GroupOptions go;
      go.backend = cfg.dist_backend;
      go.timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.dist_timeout * 1000));
      go.device = device;
      group = dist::init_process_group(env, go);
    }
    rank = group->rank();
    world = group->size();
    main = group->is_main();
    if (!main) cfg.quiet = true;
    std::string mp = cfg.mixed_precision == "auto" ? (device.is_cuda() ? "bf16" : "no") : cfg.mixed_precision;
    if (mp == "fp16")
      throw UsageError("[train] --mixed-precision fp16 is not supported; use bf16 (CUDA) or no");
    if (mp == "bf16" && !device.is_cuda() && !cfg.pure_bf16)
      throw UsageError("[train] --mixed-precision bf16 autocast needs CUDA; on CPU use no, or "
                       "--pure-bf16 for the official bf16-everywhere behaviour");
    cfg.mixed_precision = mp;
    if (cfg.pure_bf16) dtype = torch::kBFloat16;
    autocast_bf16 = mp == "bf16" && !cfg.pure_bf16;
    if (cfg.allow_tf32) compat::allow_tf32(true);

    // Rank 0 draws exactly as a single process; the other ranks get streams of their own.
    auto stream = [&](const std::string& name) {
      return make_generator(rank == 0 ? derive_seed(cfg.seed, name) : derive_seed(cfg.seed, name + "/rank", rank));
    };
    filler_gen = stream("filler");
    learner_gen = stream("learner");
    random_data_gen = stream("random-data");

    objective = make_objective(cfg.objective, cfg.margin);
    load_models();
    // Identical starting weights on every rank, whatever each one read from disk.
    group->broadcast(params);
    if (unet_policy) group->broadcast(unet_policy->parameters(true));
    load_data();
    buffer = std::make_unique<ReplayBuffer>(cfg.buffer_size, cfg.buffer_cpu ? torch::Device(torch::kCPU) : device,
                                            dtype);
    double base_lr = cfg.learning_rate;
    if (cfg.scale_lr) base_lr *= cfg.gradient_accumulation_steps * cfg.batch_size * world;
    lr.name = cfg.lr_scheduler;
    lr.base_lr = base_lr;
    lr.warmup_steps = cfg.lr_warmup_steps / cfg.gradient_accumulation_steps;
    lr.total_steps = cfg.optimisation_steps();
    lr.validate();
    optimizer = std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(base_lr)
                    .betas({cfg.adam_beta1, cfg.adam_beta2})
                    .weight_decay(cfg.adam_weight_decay)
                    .eps(cfg.adam_epsilon));
    if (cfg.use_ema)
      ema = std::make_unique<Ema>(params, cfg.ema_decay, cfg.offload_ema ? torch::Device(torch::kCPU) : device);
  }

  void load_models() {
    folder = io::ModelFolder::open(cfg.pretrained_model_name_or_path);
    nn::LoadOptions lo;
    lo.device = device;
    lo.dtype = dtype;
    prompts = pipeline::PromptEncoder::load(folder, lo, cfg.variant);
    if (folder.has("vae")) {
      vae = models::load_vae(folder.component("vae").dir, lo, cfg.variant);
      vae->eval();
    }  // else a pixel-space model: latents are the images in [-1, 1]
    const fs::path unet_dir = cfg.unet.empty() ? folder.component("unet").dir : fs::path(cfg.unet);
    const std::string unet_variant = cfg.unet.empty() ? cfg.variant : "";
    const bool online = objective->needs_policy_samples();
    if (online) {
      unet_ref = models::load_unet(unet_dir, lo, unet_variant);
      unet_ref->eval();
      for (auto& p : unet_ref->parameters()) p.set_requires_grad(false);
    }
    unet = models::load_unet(unet_dir, lo, unet_variant);
    unet->train();
    unet->set_gradient_checkpointing(cfg.gradient_checkpointing);
    // With buffer_update_steps dividing gradient_accumulation_steps the policy is refreshed right
    // after every optimiser step, so it always equals the trained weights: sample with those
    // (no third copy in memory, identical results).
    policy_shared = !online || cfg.gradient_accumulation_steps % cfg.buffer_update_steps == 0;
    if (!policy_shared) {
      unet_policy = models::load_unet(unet_dir, lo, unet_variant);
      unet_policy->eval();
      for (auto& p : unet_policy->parameters()) p.set_requires_grad(false);
    }
    for (const auto& p : unet->named_parameters(true)) {
      params.push_back(p.value());
      param_names.push_back(p.key());
    }
    sched_config = sched::SchedulerConfig::load(folder.component("scheduler").dir);
    // The DRO targets are noise predictions (the stored eps_pred and the expert noise).
    if (sched_config.prediction_type != "epsilon")
      throw UsageError(cat("[train] ", cfg.pretrained_model_name_or_path, "/scheduler: prediction_type '",
                           sched_config.prediction_type, "' is not supported for training (only 'epsilon' models, ",
                           "e.g. SD1.5 and SDXL base)"));
    noise = sched::NoiseSchedule::from_config(sched_config);
    latent_channels = unet->config().in_channels;
    const int64_t f = vae ? vae->config().scale_factor() : 1;
    if (cfg.resolution % f != 0)
      throw UsageError(cat("[train] --resolution ", cfg.resolution, " must be a multiple of the VAE scale ", f));
    latent_size = cfg.resolution / f;
    if (prompts->sdxl() != unet->needs_added_conditions())
      throw IoError(cat("[train] ", folder.root.string(), ": UNet and text encoders disagree on SDXL"));
  }

  void load_data() {
    if (opts.random_data) return;
    dataset = data::ExpertDataset::scan(cfg.train_dataset, cfg.skip_bad_images);
    data::TransformOptions t{cfg.resolution, cfg.random_flip, cfg.random_crop};
    // Every rank shuffles each epoch identically and takes its own slice (no overlap).
    loader = std::make_unique<data::ExpertLoader>(&*dataset, t, derive_seed(cfg.seed, "data"),
                                                  cfg.dataloader_num_workers, rank, world);
  }

  data::ExpertLoader::Batch next_expert(int64_t n) {
    if (!opts.random_data) return loader->next(n);
    data::ExpertLoader::Batch b;
    b.prompts.assign(n, opts.random_prompt);
    b.images = torch::rand({n, 3, cfg.resolution, cfg.resolution}, random_data_gen) * 2 - 1;
    b.add_time_ids = torch::tensor({float(cfg.resolution), float(cfg.resolution), 0.f, 0.f,
                                    float(cfg.resolution), float(cfg.resolution)})
                         .repeat({n, 1});
    return b;
  }

  // Replaces each prompt by "" with probability random_drop_prompt_probability (one draw each).
  std::vector<std::string> drop_prompts(const std::vector<std::string>& prompts, at::Generator& gen) const {
    std::vector<std::string> out;
    for (const auto& p : prompts) {
      const bool drop = at::rand({1}, gen).item<double>() < cfg.random_drop_prompt_probability;
      out.push_back(drop ? std::string() : p);
    }
    return out;
  }

  models::UNet2DConditionModel& policy() { return policy_shared ? unet : unet_policy; }

  // One batch of policy trajectories for buffer_batch_size expert examples.
  void fill_buffer_once() {
    auto t0 = Clock::now();
    auto batch = next_expert(cfg.buffer_batch_size);
    times.data += seconds_since(t0);
    t0 = Clock::now();
    const int64_t B = cfg.buffer_batch_size;
    // Prompt dropout: the same (possibly empty) caption conditions sampling and learning.
    const auto captions = drop_prompts(batch.prompts, filler_gen);
    // No-grad rather than inference mode: the stored tensors later feed autograd as inputs.
    torch::NoGradGuard no_grad;
    auto emb = prompts->encode(captions);
    auto images = batch.images.to(device, dtype);
    auto x0 = vae ? vae->scale_latents(vae->encode(images).sample(filler_gen)) : images;  // [B, C, h, w]
    auto xT = randn({B, latent_channels, latent_size, latent_size}, filler_gen,
                    torch::TensorOptions().device(device).dtype(dtype));
    sched::SchedulerOptions so;
    so.official_sigma_sharing = cfg.buffer_official_sigmas;
    auto scheduler = sched::make_scheduler(cfg.buffer_scheduler, sched_config, so);
    if (cfg.buffer_perturb_timesteps) {
      scheduler->set_timesteps(sched::perturbed_timesteps(cfg.buffer_num_inference_steps,
                                                          noise.num_train_timesteps(), B, &filler_gen));
    } else {
      scheduler->set_timesteps(cfg.buffer_num_inference_steps);
    }
    pipeline::Conditioning cond;
    torch::Tensor time_ids;
    if (prompts->sdxl()) {
      const float r = static_cast<float>(cfg.resolution);
      time_ids = torch::tensor({r, r, 0.f, 0.f, r, r}).repeat({B, 1}).to(device, dtype);
    }
    const bool cfg_guidance = cfg.buffer_guidance_scale > 1.0;
    if (cfg_guidance) {
      auto neg = prompts->force_zeros_for_empty_prompt() ? prompts->zeros(B)
                                                         : prompts->encode(std::vector<std::string>(B, ""));
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
    d.guidance_scale = cfg.buffer_guidance_scale;
    d.generator = &filler_gen;
    d.hook = [&](int64_t, const torch::Tensor& t, const torch::Tensor& x, const torch::Tensor& e) {
      ts.push_back(t.to(torch::kCPU, torch::kLong));
      xts.push_back(x.clone());
      epss.push_back(e.clone());
    };
    pipeline::denoise(policy(), *scheduler, xT * scheduler->init_noise_sigma(), cond, d);
    TrajectoryBatch tb;
    tb.c = emb.embeds;
    tb.x0 = x0;
    tb.t = torch::stack(ts, 1);      // [B, T]
    tb.xt = torch::stack(xts, 1);    // [B, T, C, h, w]
    tb.eps = torch::stack(epss, 1);  // [B, T, C, h, w]
    if (prompts->sdxl()) {
      tb.c_pooled = emb.pooled;
      tb.add_time_ids = batch.add_time_ids.to(device, dtype);
    }
    buffer->commit(tb);
    sync();
    times.buffer += seconds_since(t0);
  }

  Denoiser denoiser(models::UNet2DConditionModel& m, double* timer) {
    return [this, &m, timer](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c,
                             const torch::Tensor& te, const torch::Tensor& ids) {
      auto t0 = Clock::now();
      compat::AutocastGuard ac(device, autocast_bf16);
      auto out = m->forward(x, t, c, te, ids);
      sync();
      *timer += seconds_since(t0);
      return out;
    };
  }

  // The expert batch of objectives without policy samples: fresh data, uniform timesteps.
  BufferSample expert_only_batch() {
    auto t0 = Clock::now();
    auto batch = next_expert(cfg.batch_size);
    times.data += seconds_since(t0);
    const auto captions = drop_prompts(batch.prompts, learner_gen);
    torch::NoGradGuard no_grad;
    BufferSample s;
    auto emb = prompts->encode(captions);
    s.c = emb.embeds;
    s.c_pooled = emb.pooled;
    auto images = batch.images.to(device, dtype);
    s.x0 = vae ? vae->scale_latents(vae->encode(images).sample(learner_gen)) : images;
    s.t = torch::randint(0, noise.num_train_timesteps(), {cfg.batch_size}, learner_gen, torch::kLong).to(device);
    if (prompts->sdxl()) s.add_time_ids = batch.add_time_ids.to(device, dtype);
    return s;
  }

  int64_t micro_step() {
    const int64_t s = step + 1;
    const bool online = objective->needs_policy_samples();
    if (online && (buffer->size() == 0 || s % cfg.buffer_sample_steps == 0)) {
      int64_t accumulation = cfg.buffer_batch_accumulation;
      if (buffer->size() == 0)  // first fill: at least one learning batch
        accumulation = std::max(accumulation, (cfg.batch_size + cfg.buffer_batch_size - 1) / cfg.buffer_batch_size);
      for (int64_t i = 0; i < accumulation; ++i) fill_buffer_once();
    }
    auto sample = online ? buffer->sample(cfg.batch_size, learner_gen, device) : expert_only_batch();
    ObjectiveBatch ob;
    ob.t = sample.t;
    ob.c = sample.c;
    ob.eps_expert = randn(sample.x0.sizes(), learner_gen, sample.x0.options());
    ob.xt_expert = noise.add_noise(sample.x0, ob.eps_expert, sample.t);
    ob.xt_policy = sample.xt;
    ob.eps_policy = sample.eps;
    ob.text_embeds = sample.c_pooled;
    ob.time_ids = sample.add_time_ids;
    auto out = objective->compute(denoiser(unet, &times.trained_forward), denoiser(unet_ref, &times.reference), ob);
    const double loss_value = out.loss.item<double>();
    if (!std::isfinite(loss_value))
      throw Error(cat("[train] the loss became ", loss_value, " at micro-step ", s,
                      "; stopping without writing state (the last saved state in ", cfg.logdir,
                      "/state is intact). Lower --learning-rate or check the data."));
    auto t0 = Clock::now();
    (out.loss / static_cast<double>(cfg.gradient_accumulation_steps)).backward();
    sync();
    times.backward += seconds_since(t0);
    stats.add(out, loss_value);
    step = s;
    ++times.micro_steps;
    if (s % cfg.gradient_accumulation_steps == 0) optimise();
    if (!policy_shared && s % cfg.buffer_update_steps == 0) refresh_policy();
    return s;
  }

  void refresh_policy() {
    torch::NoGradGuard no_grad;
    auto dst = unet_policy->parameters(true);
    for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(params[i]);
  }

  void average_gradients() {
    if (world == 1) return;
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads;
    for (auto& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // every rank sends the same set
      grads.push_back(p.grad());
    }
    group->all_reduce_mean(grads);
  }

  void optimise() {
    auto t0 = Clock::now();
    torch::NoGradGuard no_grad;
    average_gradients();
    if (cfg.max_grad_norm > 0) {
      last_grad_norm = torch::nn::utils::clip_grad_norm_(params, cfg.max_grad_norm);
    } else {
      double sq = 0;
      for (const auto& p : params)
        if (p.grad().defined()) sq += p.grad().to(torch::kFloat64).square().sum().item<double>();
      last_grad_norm = std::sqrt(sq);
    }
    if (!std::isfinite(last_grad_norm))
      throw Error(cat("[train] the gradient norm became ", last_grad_norm, " at optimisation step ",
                      opt_step + 1, " (micro-step ", step, "); stopping without writing state (the last "
                      "saved state in ", cfg.logdir, "/state is intact). Lower --learning-rate or check the data."));
    const double rate = lr.lr(opt_step);
    for (auto& g : optimizer->param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(rate);
    optimizer->step();
    optimizer->zero_grad();
    if (ema) ema->update(params);
    ++opt_step;
    sync();
    times.optimizer += seconds_since(t0);
    if (opt_step % cfg.log_every == 0 || opt_step == cfg.optimisation_steps()) log_step(rate);
    last_step_loss = stats.n ? stats.sums["loss"] / stats.n : 0.0;
    stats.clear();
  }

  // Records the step's metrics (means over every rank's micro-steps); rank 0 writes them.
  void log_step(double rate) {
    if (world > 1) {  // a collective: every rank takes part, in the same key order
      std::vector<double> v{static_cast<double>(stats.n)};
      for (const auto& [k, s] : stats.sums) v.push_back(s);
      v = group->all_reduce_sum(v);
      stats.n = static_cast<int64_t>(v[0]);
      size_t i = 1;
      for (auto& [k, s] : stats.sums) s = v[i++];
    }
    if (!opts.write_outputs || !main) return;
    io::OrderedJson j;
    j["step"] = step;
    j["opt_step"] = opt_step;
    for (const auto& [k, v] : stats.sums) {
      const double m = v / std::max<int64_t>(1, stats.n);
      j["loss/" + k] = m;
      tb->add_scalar("loss/" + k, m, step);
    }
    j["lr"] = rate;
    j["grad_norm"] = last_grad_norm;
    j["buffer_size"] = buffer->size();
    tb->add_scalar("params/lr", rate, step);
    tb->add_scalar("params/grad_norm", last_grad_norm, step);
    tb->add_scalar("params/buffer_size", static_cast<double>(buffer->size()), step);
    tb->flush();
    *jsonl << j.dump() << "\n";
    jsonl->flush();
  }

  // ---- checkpoints and state -------------------------------------------------------------------

  io::NamedTensors unet_tensors(bool use_ema) {
    io::NamedTensors t;
    for (size_t i = 0; i < params.size(); ++i)
      t.emplace_back(param_names[i], use_ema && ema ? ema->shadow()[i] : params[i]);
    for (const auto& b : unet->named_buffers(true)) t.emplace_back(b.key(), b.value());
    return t;
  }

  void write_unet_folder(const fs::path& dir, bool use_ema) {
    const fs::path tmp = dir.string() + ".tmp." + std::to_string(::getpid());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    auto tensors = unet_tensors(use_ema);
    const torch::Dtype save = cfg.save_dtype == "bf16"   ? torch::kBFloat16
                              : cfg.save_dtype == "fp16" ? torch::kFloat16
                                                         : torch::kFloat32;
    for (auto& [n, v] : tensors) v = v.to(torch::kCPU, torch::isFloatingType(v.scalar_type()) ? save : v.scalar_type());
    io::save_safetensors(tmp / "diffusion_pytorch_model.safetensors", tensors, {{"format", "pt"}});
    io::write_json(tmp / "config.json", unet->config().raw);
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir.parent_path());
    fs::rename(tmp, dir);
  }

  // This rank's own part of the state: replay buffer, random streams, data position.
  io::NamedTensors rank_state() const {
    io::NamedTensors t;
    for (auto& [k, v] : buffer->to_tensors()) t.emplace_back("buffer/" + k, v);
    t.emplace_back("rng/filler", generator_state(filler_gen));
    t.emplace_back("rng/learner", generator_state(learner_gen));
    t.emplace_back("rng/random_data", generator_state(random_data_gen));
    t.emplace_back("data/epoch_position", torch::tensor({loader ? loader->epoch() : int64_t(0),
                                                         loader ? loader->position() : int64_t(0)}));
    return t;
  }

  // (sum, sum of |w|) of the trained weights in float64: equal on every rank unless they diverged.
  std::vector<double> weight_fingerprint() const {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> sums, abs_sums;
    for (const auto& p : params) {
      auto d = p.detach().to(torch::kFloat64);
      sums.push_back(d.sum());
      abs_sums.push_back(d.abs().sum());
    }
    auto both = torch::stack({torch::stack(sums).sum(), torch::stack(abs_sums).sum()}).to(torch::kCPU);
    return {both[0].item<double>(), both[1].item<double>()};
  }

  // Every rank calls this. Rank 0 writes LOGDIR/state (a temporary folder swapped in whole), with
  // each rank's part received over the group, then the checkpoint; the others only send.
  void save(bool checkpoint) {
    const auto prints = group->all_gather(weight_fingerprint());
    for (int r = 0; r < world; ++r)
      if (!std::isfinite(prints[r][0]) || !std::isfinite(prints[r][1]))
        throw Error(cat("[train] rank ", r, "'s weights are not finite at micro-step ", step,
                        "; not saving (the last saved state in ", cfg.logdir, "/state is intact)"));
    for (int r = 1; r < world; ++r)
      if (prints[r] != prints[0])
        throw Error(cat("[train] rank ", r, "'s weights differ from rank 0's at micro-step ", step,
                        " (the ranks diverged; not saving)"));
    if (!main) {
      group->send(rank_state(), 0);
      group->barrier();  // rank 0 has written everything
      return;
    }
    const fs::path logdir = cfg.logdir;
    fs::create_directories(logdir);
    const fs::path final_dir = logdir / "state";
    const fs::path tmp = logdir / ("state.tmp." + std::to_string(::getpid()));
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    io::save_safetensors(tmp / "unet.safetensors", unet_tensors(false));
    if (!policy_shared) {
      io::NamedTensors pol;
      for (const auto& p : unet_policy->named_parameters(true)) pol.emplace_back(p.key(), p.value());
      io::save_safetensors(tmp / "policy.safetensors", pol);
    }
    io::save_safetensors(tmp / "optimizer.safetensors", adamw_state(*optimizer, params));
    if (ema) {
      io::NamedTensors e;
      for (size_t i = 0; i < params.size(); ++i) e.emplace_back(param_names[i], ema->shadow()[i]);
      io::save_safetensors(tmp / "ema.safetensors", e);
    }
    for (int r = 0; r < world; ++r) {
      io::NamedTensors part;
      if (r == 0) {
        part = rank_state();
      } else {
        for (auto& [k, v] : group->recv(r)) part.emplace_back(k, v);
      }
      io::save_safetensors(tmp / cat("rank-", r, ".safetensors"), part);
    }
    io::OrderedJson st;
    st["format"] = "dro-train-state-2";
    st["step"] = step;
    st["opt_step"] = opt_step;
    st["ema_updates"] = ema ? ema->updates() : 0;
    st["world_size"] = world;
    st["weight_fingerprint"] = prints[0];
    st["rank0_epoch_position"] = {loader ? loader->epoch() : int64_t(0), loader ? loader->position() : int64_t(0)};
    st["config"] = cfg.to_json();
    st["dataset_size"] = dataset ? dataset->size() : int64_t(0);
    io::write_json(tmp / "training_state.json", st);
    // Swap in the new state: a crash leaves either the old or the new folder complete.
    // When only state.old exists (a crash between the two renames), it is the last good state
    // and stays until the new one is in place.
    const fs::path old = logdir / "state.old";
    std::error_code ec;
    if (fs::exists(final_dir)) {
      fs::remove_all(old, ec);
      fs::rename(final_dir, old);
    }
    fs::rename(tmp, final_dir);
    fs::remove_all(old, ec);
    if (checkpoint) write_unet_folder(logdir / cat("ckpt-", step) / "unet", /*use_ema=*/true);
    group->barrier();
  }

  // The options the state was saved with against this run's: differences are reported; those that
  // change the shape of what is restored (the replay buffer's trajectories) are refused.
  void check_saved_config(const io::OrderedJson& st, const std::string& where) const {
    if (!st.contains("config") || !st["config"].is_object()) return;
    const io::OrderedJson& saved = st["config"];
    const io::OrderedJson now = cfg.to_json();
    static const std::set<std::string> ignored = {"resume", "quiet"};
    static const std::set<std::string> incompatible = {"resolution", "buffer_size", "buffer_batch_size",
                                                       "buffer_num_inference_steps"};
    std::vector<std::string> changed, refused;
    for (auto it = now.begin(); it != now.end(); ++it) {
      if (ignored.count(it.key()) || !saved.contains(it.key()) || saved[it.key()] == it.value()) continue;
      const std::string line = cat(it.key(), ": ", saved[it.key()].dump(), " -> ", it.value().dump());
      (incompatible.count(it.key()) ? refused : changed).push_back(line);
    }
    if (!refused.empty()) {
      std::string list;
      for (const auto& r : refused) list += "\n  " + r;
      throw UsageError(cat("[train] --resume: ", where, " was saved with other options that change the shape of "
                           "the saved replay buffer:", list, "\n  (resume with the saved values, or start a new --logdir)"));
    }
    if (main && !changed.empty()) {
      std::cerr << "[train] resuming with options that differ from the saved run's:";
      for (const auto& l : changed) std::cerr << "\n  " << l;
      std::cerr << "\n";
    }
  }

  // A save that crashed leaves `state.tmp.<pid>` or `ckpt-N/unet.tmp.<pid>` behind (GBs each for
  // SD); only rank 0 writes them, and it is not saving now, so they are garbage.
  void remove_stale_temporaries() const {
    const fs::path logdir = cfg.logdir;
    std::vector<fs::path> stale;
    auto is_tmp = [](const fs::path& p, const std::string& stem) {
      return p.filename().string().rfind(stem + ".tmp.", 0) == 0;
    };
    for (const auto& e : fs::directory_iterator(logdir)) {
      if (is_tmp(e.path(), "state")) stale.push_back(e.path());
      if (e.is_directory() && e.path().filename().string().rfind("ckpt-", 0) == 0)
        for (const auto& f : fs::directory_iterator(e.path()))
          if (is_tmp(f.path(), "unet")) stale.push_back(f.path());
    }
    for (const auto& p : stale) {
      std::error_code ec;
      fs::remove_all(p, ec);
      std::cerr << "[train] removed " << p.string() << " left by an interrupted save"
                << (ec ? cat(" (failed: ", ec.message(), ")") : std::string()) << "\n";
    }
  }

  // Tensors of `all` under "prefix/", without the prefix.
  static std::map<std::string, torch::Tensor> under(const std::map<std::string, torch::Tensor>& all,
                                                    const std::string& prefix) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [k, v] : all)
      if (k.rfind(prefix + "/", 0) == 0) out[k.substr(prefix.size() + 1)] = v;
    return out;
  }

  // Rank 0 reads LOGDIR/state and hands every rank the shared part and its own part, so all ranks
  // restore from the same bytes (no shared file system needed).
  void load_state() {
    std::map<std::string, torch::Tensor> all;  // "shared/<file>/<name>", "rank/<name>", "json"
    int saved_world = 1;
    std::string where;
    if (main) {
      fs::path dir = fs::path(cfg.logdir) / "state";
      if (!fs::exists(dir) && fs::exists(fs::path(cfg.logdir) / "state.old")) dir = fs::path(cfg.logdir) / "state.old";
      where = dir.string();
      if (!fs::exists(dir / "training_state.json"))
        throw IoError(cat("[train] --resume: no state in ", dir.string()));
      const auto st = io::read_json(dir / "training_state.json");
      const std::string format = st.value("format", std::string());
      if (format != "dro-train-state-2")
        throw IoError(cat("[train] ", (dir / "training_state.json").string(), ": state format '", format,
                          "', expected dro-train-state-2 (written by another version)"));
      saved_world = static_cast<int>(io::get_required<int64_t>(st, "world_size", where));
      for (const char* f : {"unet", "policy", "optimizer", "ema"}) {
        const fs::path file = dir / (std::string(f) + ".safetensors");
        if (!fs::exists(file)) continue;
        for (auto& [k, v] : io::load_safetensors(file)) all[cat("shared/", f, "/", k)] = v;
      }
      const std::string text = st.dump();
      auto bytes = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
      std::memcpy(bytes.data_ptr(), text.data(), text.size());
      all["json"] = bytes;
      if (saved_world != world)
        std::cerr << "[train] warning: the state in " << dir.string() << " was saved by " << saved_world
                  << " rank(s), this run has " << world << ". Weights, optimiser, EMA and step are restored; "
                  << "ranks below " << std::min(saved_world, world) << " keep their replay buffers and "
                  << "random streams, the others start them afresh from --seed; every rank's data stream "
                  << "restarts at the same fraction of the saved epoch under the new sharding.\n";
      std::map<std::string, torch::Tensor> own;
      for (int r = 0; r < world; ++r) {
        std::map<std::string, torch::Tensor> part = all;
        const fs::path file = dir / cat("rank-", r, ".safetensors");
        if (r < saved_world) {
          if (!fs::exists(file)) throw IoError(cat("[train] --resume: ", file.string(), " is missing"));
          for (auto& [k, v] : io::load_safetensors(file)) part["rank/" + k] = v;
        }
        if (r == 0) {
          own = std::move(part);
        } else {
          io::NamedTensors list(part.begin(), part.end());
          group->send(list, r);
        }
      }
      all = std::move(own);
    } else {
      all = group->recv(0);
      where = "state received from rank 0";
    }
    const auto& bytes = all.at("json");
    const auto st = nlohmann::ordered_json::parse(
        std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())));
    // Every entry is looked up by name, so a damaged or foreign state says what it lacks.
    auto entry = [&](const std::map<std::string, torch::Tensor>& m, const std::string& key,
                     const std::string& file, const torch::Tensor& like = {}) -> const torch::Tensor& {
      auto it = m.find(key);
      if (it == m.end())
        throw IoError(cat("[train] --resume: ", where, "/", file, " has no entry '", key,
                          "' (damaged, or written by another version?)"));
      if (like.defined() && it->second.sizes() != like.sizes())
        throw IoError(cat("[train] --resume: ", where, "/", file, ": '", key, "' has shape ",
                          it->second.sizes(), ", the model's is ", like.sizes(), " (state from another model?)"));
      return it->second;
    };
    auto number = [&](const char* key) {
      return io::get_required<int64_t>(st, key, where + "/training_state.json");
    };
    saved_world = static_cast<int>(number("world_size"));
    check_saved_config(st, where);
    torch::NoGradGuard no_grad;
    const auto weights = under(all, "shared/unet");
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = weights.find(param_names[i]);
      if (it == weights.end() || it->second.sizes() != params[i].sizes())
        throw IoError(cat("[train] ", where, "/unet.safetensors: parameter '", param_names[i],
                          "' missing or of another shape (state from another model?)"));
      params[i].copy_(it->second);
    }
    if (!policy_shared) {
      const auto pol = under(all, "shared/policy");
      for (const auto& p : unet_policy->named_parameters(true)) {
        if (!pol.count(p.key())) throw IoError(cat("[train] ", where, ": no policy weight '", p.key(), "'"));
        p.value().copy_(entry(pol, p.key(), "policy.safetensors", p.value()));
      }
    }
    set_adamw_state(*optimizer, params, under(all, "shared/optimizer"), where + "/optimizer.safetensors");
    if (ema) {
      const auto e = under(all, "shared/ema");
      if (e.empty()) throw IoError(cat("[train] ", where, ": no ema.safetensors but --use-ema is on"));
      for (size_t i = 0; i < params.size(); ++i)
        ema->shadow()[i].copy_(entry(e, param_names[i], "ema.safetensors", ema->shadow()[i]));
      ema->set_updates(st.value("ema_updates", int64_t(0)));
    }
    step = number("step");
    opt_step = number("opt_step");
    const auto own = under(all, "rank");
    if (!own.empty()) {  // this rank existed in the saved run
      buffer->from_tensors(under(own, "buffer"), where + cat("/rank-", rank, ".safetensors"));
      const std::string file = cat("rank-", rank, ".safetensors");
      set_generator_state(filler_gen, entry(own, "rng/filler", file).clone());
      set_generator_state(learner_gen, entry(own, "rng/learner", file).clone());
      set_generator_state(random_data_gen, entry(own, "rng/random_data", file).clone());
    }
    if (loader) {
      // Rank 0's position stands for the run's: under another sharding, the same fraction of the epoch.
      const auto pos = all.count("rank/data/epoch_position") && saved_world == world
                           ? all.at("rank/data/epoch_position")
                           : torch::Tensor();
      int64_t epoch = 0, position = 0;
      if (pos.defined()) {
        epoch = pos[0].item<int64_t>();
        position = pos[1].item<int64_t>();
      } else {
        const auto p0 = io::get_required<std::vector<int64_t>>(st, "rank0_epoch_position",
                                                               where + "/training_state.json");
        if (p0.size() != 2)
          throw IoError(cat("[train] --resume: ", where, "/training_state.json: rank0_epoch_position must be [epoch, position]"));
        epoch = p0[0];
        position = p0[1] * saved_world / world;
      }
      // A dataset that changed size since the save (files added, removed or now skipped) keeps the
      // same fraction of the epoch; the position never runs past the end of the new order.
      const int64_t saved_size = st.value("dataset_size", int64_t(-1));
      if (saved_size > 0 && dataset && saved_size != dataset->size()) {
        if (main)
          std::cerr << "[train] warning: the dataset had " << saved_size << " examples at the save and has "
                    << dataset->size() << " now; the data stream continues at the same fraction of epoch "
                    << epoch << " of the new order\n";
        position = position * dataset->size() / saved_size;
      }
      position = std::clamp<int64_t>(position, 0, std::max<int64_t>(0, loader->epoch_length() - 1));
      loader->seek(epoch, position);
    }
    if (main) std::cerr << "[train] resumed from " << where << " at micro-step " << step << "\n";
  }

  void open_outputs() {
    fs::create_directories(cfg.logdir);
    remove_stale_temporaries();
    tb = std::make_unique<TensorBoardWriter>(cfg.logdir);
    const fs::path metrics = fs::path(cfg.logdir) / "metrics.jsonl";
    if (cfg.resume) {
      // The interrupted run may have logged past the state it left; those steps are logged again.
      tb->add_session_start(step + 1);
      drop_metrics_after(metrics, step);
    }
    jsonl = std::make_unique<std::ofstream>(metrics, std::ios::app);
    io::write_json(fs::path(cfg.logdir) / "training_config.json", cfg.to_json());
    if (step == 0) tb->add_text("training_config.json", cfg.to_json().dump(2), 0);
  }

  // Rewrites metrics.jsonl (atomically) without the rows of micro-steps after `last`.
  static void drop_metrics_after(const fs::path& file, int64_t last) {
    if (!fs::exists(file)) return;
    std::ifstream in(file);
    std::string line, kept;
    int64_t dropped = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      int64_t s = -1;
      try {
        const auto j = io::OrderedJson::parse(line);
        s = j.value("step", int64_t(-1));
      } catch (const std::exception&) {
        ++dropped;  // a line torn by the crash
        continue;
      }
      if (s > last) {
        ++dropped;
        continue;
      }
      kept += line + "\n";
    }
    if (dropped) io::write_file_atomically(file, kept);
  }

  void print_header() {
    std::cerr << "Training configuration\n"
              << "- Model                   : " << cfg.pretrained_model_name_or_path
              << (prompts->sdxl() ? " (SDXL)" : " (SD1.5 layout)") << "\n"
              << "- Device / precision      : " << device << " / "
              << (cfg.pure_bf16 ? "pure bf16" : cfg.mixed_precision) << "\n"
              << "- Batch size per device   : " << cfg.batch_size << "\n"
              << "- Gradient accumulation   : " << cfg.gradient_accumulation_steps << "\n"
              << "- Processes               : " << world
              << (world > 1 ? cat(" (", group->backend(), ", timeout ", cfg.dist_timeout, " s)") : std::string()) << "\n"
              << "- Effective batch size    : " << cfg.batch_size * cfg.gradient_accumulation_steps * world
              << " (" << cfg.batch_size << " x " << cfg.gradient_accumulation_steps << " accumulation x " << world
              << " processes)\n"
              << "- Dataset size            : " << (dataset ? dataset->size() : 0)
              << (dataset && dataset->skipped() ? cat(" (", dataset->skipped(), " skipped)") : "") << "\n"
              << "- Micro-steps             : " << cfg.num_steps << "\n"
              << "- Optimisation steps      : " << cfg.optimisation_steps() << "\n"
              << "- Learning rate           : " << lr.base_lr << " (" << cfg.lr_scheduler << ")\n"
              << "- Buffer                  : " << cfg.buffer_size << " trajectories of "
              << cfg.buffer_num_inference_steps << " " << cfg.buffer_scheduler << " steps, guidance "
              << cfg.buffer_guidance_scale << (policy_shared ? ", policy = trained weights" : "") << "\n"
              << "- Resuming                : " << (cfg.resume ? "yes" : "no") << "\n"
              << "- Run folder              : " << cfg.logdir << "\n"
              << "Resolved config:\n" << cfg.to_json().dump(2) << "\n";
  }

  void run() {
    if (cfg.resume) load_state();
    if (opts.write_outputs && main) open_outputs();
    if (main) print_header();
    Progress progress("train", cfg.num_steps, cfg.quiet, step);
    auto t0 = Clock::now();
    const int64_t start = step;
    while (step < cfg.num_steps) {
      micro_step();
      const double rate = (step - start) / std::max(1e-9, seconds_since(t0));
      char extra[160];
      std::snprintf(extra, sizeof(extra), "loss %.3e lr %.2e %.2f it/s", stats.n ? stats.sums["loss"] / stats.n : last_step_loss,
                    lr.lr(opt_step), rate);
      progress.tick(1, extra);
      if (opts.write_outputs && step % cfg.checkpointing_steps == 0) save(true);
    }
    progress.finish();
    if (opts.write_outputs && step % cfg.checkpointing_steps != 0) save(true);
  }
};

Trainer::Trainer(TrainConfig config, TrainerOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), options)) {}
Trainer::~Trainer() = default;
void Trainer::run() { impl_->run(); }
int64_t Trainer::micro_step() { return impl_->micro_step(); }
int64_t Trainer::step() const { return impl_->step; }
const PhaseTimes& Trainer::times() const { return impl_->times; }
const TrainConfig& Trainer::config() const { return impl_->cfg; }
models::UNet2DConditionModelImpl& Trainer::unet() { return *impl_->unet; }
void Trainer::save(bool checkpoint) { impl_->save(checkpoint); }
void Trainer::average_gradients() { impl_->average_gradients(); }
dist::Group& Trainer::group() { return *impl_->group; }

}  // namespace dro::train
