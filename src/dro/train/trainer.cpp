#include "dro/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include "dro/core/clock.h"
#include "dro/core/compat.h"
#include "dro/core/device.h"
#include "dro/core/error.h"
#include "dro/core/progress.h"
#include "dro/core/rng.h"
#include "dro/data/expert_dataset.h"
#include "dro/data/preference_data.h"
#include "dro/dist/process_group.h"
#include "dro/train/buffer_filler.h"
#include "dro/train/metrics.h"
#include "dro/train/precision.h"
#include "dro/train/replay_buffer.h"
#include "dro/train/train_models.h"
#include "dro/train/train_state.h"

namespace dro::train {
namespace fs = std::filesystem;

namespace {

std::shared_ptr<dist::Group> join_group(const TrainConfig& cfg, torch::Device& device) {
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
  return dist::init_process_group(env, go);
}

}  // namespace

struct Trainer::Impl {
  TrainConfig cfg;
  TrainerOptions opts;
  std::shared_ptr<dist::Group> group;
  int rank = 0, world = 1;
  bool main = true;  // rank 0: writes files, shows progress
  torch::Device device = torch::kCPU;
  Precision precision;
  bool online = true;  // the objective learns from policy samples (a buffer, a filler, a reference)

  TrainModels models;
  std::optional<data::ExpertDataset> dataset;
  std::unique_ptr<data::ExpertLoader> loader;
  std::unique_ptr<ReplayBuffer> buffer;
  std::unique_ptr<BufferFiller> filler;
  std::unique_ptr<Learner> learner;
  std::unique_ptr<Metrics> metrics;
  // The filler's own thread (objectives with policy samples): every refill runs there, sampled
  // ahead of the learner with --buffer-overlap, on demand without. Last: stopped (and its refill
  // finished) first.
  std::unique_ptr<FillerThread> ahead;
  int threads_before = 0;  // the caller's intra-op thread count, restored at the end
  int openblas_before = -1;

  int64_t step = 0;  // micro-steps done
  PhaseTimes times;  // the learner thread's phases

  Impl(TrainConfig c, TrainerOptions o) : cfg(std::move(c)), opts(std::move(o)) {
    cfg.validate();
    // One spelling of the targets in the run's config, so a resume compares like with like.
    if (cfg.lora()) cfg.lora_targets = models::canonical_lora_targets(cfg.lora_targets);
    device = resolve_device(cfg.device);
    group = opts.group ? opts.group : join_group(cfg, device);
    rank = group->rank();
    world = group->size();
    main = group->is_main();
    if (!main) cfg.quiet = true;
    precision = Precision::resolve(cfg, device);
    cfg.mixed_precision = precision.mode == "bf16" ? "bf16" : "no";
    if (cfg.allow_tf32) compat::allow_tf32(true);

    // Rank 0 draws exactly as a single process; the other ranks get streams of their own.
    auto stream = [&](const std::string& name) {
      return make_generator(rank == 0 ? derive_seed(cfg.seed, name) : derive_seed(cfg.seed, name + "/rank", rank));
    };
    const auto objective = make_objective(cfg);
    online = objective->needs_policy_samples();
    models = TrainModels::load(cfg, precision, device, objective->needs_reference(), online);
    learner = std::make_unique<Learner>(cfg, models, precision, device, *group, stream("learner"));
    learner->set_profile(opts.profile);
    // Identical starting weights on every rank, whatever each one read from disk.
    group->broadcast(learner->params());
    if (!models.policy_shared()) learner->refresh_policy();  // the separate policy from the broadcast
    if (!opts.random_data) {
      dataset = open_dataset(main);
      data::TransformOptions t{cfg.resolution, cfg.random_flip, cfg.random_crop};
      // Every rank shuffles each epoch identically and takes its own slice (no overlap).
      loader = std::make_unique<data::ExpertLoader>(&*dataset, t, derive_seed(cfg.seed, "data"),
                                                    cfg.dataloader_num_workers, rank, world, cfg.desirable_ratio);
    }
    buffer = std::make_unique<ReplayBuffer>(cfg.buffer_size, cfg.buffer_cpu ? torch::Device(torch::kCPU) : device,
                                            precision.buffer);
    filler = std::make_unique<BufferFiller>(cfg, models, precision, device, loader.get(), opts.random_prompt,
                                            stream("filler"), stream("random-data"));
    filler->set_profile(opts.profile);
    if (online) {
      // The intra-op threads asked for (OMP_NUM_THREADS, --threads) are shared by the two
      // compute threads, the learner ceil(n/2), the filler floor(n/2), at least one each, with and
      // without overlap, so both orders compute with the same counts (bitwise equal results) and
      // n = cores does not oversubscribe the machine.
      threads_before = at::get_num_threads();
      const int learner_threads = std::max(1, (threads_before + 1) / 2);
      const int filler_threads = std::max(1, threads_before / 2);
      at::set_num_threads(learner_threads);
      // OpenBLAS's pool serves one caller at a time: with two compute threads it would make them
      // wait for each other, so each GEMM runs on its caller's thread.
      openblas_before = compat::set_openblas_threads(1);
      ahead = std::make_unique<FillerThread>(*filler, filler_threads);
    }
  }

  // The expert folder (dro, sft), the pairs (dpo) or the labelled images (kto).
  data::ExpertDataset open_dataset(bool report) const {
    const auto& path = cfg.train_dataset;
    if (cfg.objective == "dpo") {
      const auto pairs = data::read_pairs(path);
      if (report && pairs.ties_dropped)
        std::cerr << "[data] " << path << ": dropped " << pairs.ties_dropped << " tied pair(s) (label_0 0.5)\n";
      return data::ExpertDataset::from_pairs(pairs, path, cfg.skip_bad_images, report);
    }
    if (cfg.objective == "kto") {
      const auto labels = data::read_labels(path);
      if (report && labels.dropped)
        std::cerr << "[data] " << path << ": dropped " << labels.dropped
                  << " row(s) labelled neither exclusive_win nor exclusive_lose\n";
      auto d = data::ExpertDataset::from_labels(labels, path, cfg.skip_bad_images, report);
      const int64_t desirable = d.desirable();
      if (report)
        std::cerr << "[data] " << path << ": " << desirable << " desirable and " << d.size() - desirable
                  << " undesirable image(s)\n";
      return d;
    }
    return data::ExpertDataset::scan(path, cfg.skip_bad_images, report);
  }

  ~Impl() {
    ahead.reset();
    if (threads_before > 0) at::set_num_threads(threads_before);
    if (openblas_before > 0) compat::set_openblas_threads(openblas_before);
  }

  // The policy changes after micro-step r (an optimiser step when the policy is the trained
  // weights, else a copy into the separate policy).
  bool refreshes_after(int64_t r) const {
    return !models.policy_shared() ? r % cfg.buffer_update_steps == 0 : r % cfg.gradient_accumulation_steps == 0;
  }

  // Starts the first refill after micro-step `s` on the filler thread when the policy it will use
  // is already final: no refresh after any micro-step from `first` until the refill is due.
  void start_next_refill(int64_t s, int64_t first) {
    if (!ahead || !cfg.buffer_overlap || ahead->pending()) return;
    const int64_t due = (s / cfg.buffer_sample_steps + 1) * cfg.buffer_sample_steps;
    if (due > cfg.num_steps || buffer->size() == 0) return;
    for (int64_t r = first; r < due; ++r)
      if (refreshes_after(r)) return;
    ahead->start(due, cfg.buffer_batch_accumulation);
  }

  void refill(int64_t s) {
    const auto t0 = Clock::now();
    std::vector<TrajectoryBatch> batches;
    if (ahead && ahead->pending()) {
      if (*ahead->pending() != s)
        throw std::logic_error(cat("refill of micro-step ", *ahead->pending(), " pending at micro-step ", s));
      batches = ahead->take();
      ++times.refills_ahead;
    } else {
      int64_t n = cfg.buffer_batch_accumulation;
      if (buffer->size() == 0)  // first fill: at least one learning batch
        n = std::max(n, (cfg.batch_size + cfg.buffer_batch_size - 1) / cfg.buffer_batch_size);
      ahead->start(s, n);  // on the filler's thread too, and waited for at once
      batches = ahead->take();
    }
    for (const auto& b : batches) buffer->commit(b);
    ++times.refills;
    times.buffer_wait += seconds_since(t0);
  }

  int64_t micro_step() {
    const int64_t s = step + 1;
    BufferSample sample;
    if (online) {
      if (buffer->size() == 0 || s % cfg.buffer_sample_steps == 0) refill(s);
      sample = buffer->sample(cfg.batch_size, learner->generator(), device);
      start_next_refill(s, s);  // overlaps this micro-step's learning
    } else {
      sample = filler->expert_batch(cfg.batch_size, learner->generator());
    }
    learner->accumulate(sample, s, times);
    step = s;
    ++times.micro_steps;
    if (s % cfg.gradient_accumulation_steps == 0) {
      const int64_t next = learner->opt_step() + 1;
      const bool log = next % cfg.log_every == 0 || next == cfg.optimisation_steps();
      const auto record = learner->optimise(s, log, times);
      if (log && metrics) metrics->log(s, record, buffer->size());
    }
    if (!models.policy_shared() && s % cfg.buffer_update_steps == 0) learner->refresh_policy();
    if (online) start_next_refill(s, s + 1);  // after this micro-step's refresh, if any
    return s;
  }

  // The filler's state as of micro-step `step` (a refill running ahead has not happened yet).
  FillerState filler_state() const { return ahead ? ahead->state_before_pending() : filler->state(); }

  StateParts parts() {
    return StateParts{cfg, *group, models, *learner, *buffer, dataset ? &*dataset : nullptr, loader.get()};
  }

  void save(bool checkpoint) {
    auto p = parts();
    save_state(p, step, filler_state(), checkpoint);
  }

  void resume() {
    if (ahead && ahead->pending()) throw std::logic_error("resume with a refill in flight");
    auto p = parts();
    const auto restored = load_state(p);
    step = restored.step;
    filler->set_state(restored.filler);
  }

  void print_header() {
    ModelSizes sizes = models.sizes();
    sizes.ema = cfg.use_ema;
    sizes.ema_on_cpu = cfg.offload_ema && !device.is_cpu();
    const auto memory = estimate_memory(precision, sizes);
    std::cerr << "Training configuration\n"
              << "- Model                   : " << cfg.pretrained_model_name_or_path
              << (models.sdxl() ? " (SDXL)" : " (SD1.5 layout)") << ", UNet " << sizes.unet / 1e6 << " M, VAE "
              << sizes.vae / 1e6 << " M, text encoders " << sizes.text_encoders / 1e6 << " M parameters\n"
              << "- Device / precision      : " << device << " / " << precision.describe() << "\n"
              << "- Weights and optimiser   : " << describe_memory(memory) << "\n"
              << "- Batch size per device   : " << cfg.batch_size << "\n"
              << "- Gradient accumulation   : " << cfg.gradient_accumulation_steps << "\n"
              << "- Processes               : " << world
              << (world > 1 ? cat(" (", group->backend(), ", timeout ", cfg.dist_timeout, " s)") : std::string()) << "\n"
              << "- Effective batch size    : " << cfg.batch_size * cfg.gradient_accumulation_steps * world << " ("
              << cfg.batch_size << " x " << cfg.gradient_accumulation_steps << " accumulation x " << world
              << " processes)\n"
              << "- Objective               : " << cfg.objective << "\n"
              << (models.lora ? cat("- LoRA                    : rank ", cfg.lora_rank, ", alpha ",
                                    models.lora->options().rank * models.lora->options().scale(), ", ",
                                    models.lora->layer_count(), " layers (", cfg.lora_targets,
                                    "), ", models.lora->parameter_count() / 1e6, " M trained parameters on the frozen UNet\n")
                              : std::string())
              << "- Dataset size            : " << (dataset ? dataset->size() : 0)
              << (dataset && dataset->paired() ? " pairs" : "")
              << (dataset && dataset->skipped() ? cat(" (", dataset->skipped(), " skipped)") : "") << "\n"
              << "- Micro-steps             : " << cfg.num_steps << "\n"
              << "- Optimisation steps      : " << cfg.optimisation_steps() << "\n"
              << "- Learning rate           : " << learner->lr().base_lr << " (" << cfg.lr_scheduler << ")\n";
    if (online)
      std::cerr << "- Buffer                  : " << cfg.buffer_size << " trajectories of "
                << cfg.buffer_num_inference_steps << " " << cfg.buffer_scheduler << " steps, guidance "
                << cfg.buffer_guidance_scale << (models.policy_shared() ? ", policy = trained weights" : "")
                << (cfg.buffer_overlap ? ", sampled ahead on a second thread" : ", sampled in turn") << "\n"
                << "- CPU threads             : learner " << at::get_num_threads() << ", buffer filler "
                << ahead->threads() << "\n";
    std::cerr << "- Resuming                : " << (cfg.resume ? "yes" : "no") << "\n"
              << "- Run folder              : " << cfg.logdir << "\n"
              << "Resolved config:\n"
              << cfg.to_json().dump(2) << "\n";
  }

  void run() {
    if (cfg.resume) resume();
    if (opts.write_outputs && main) {
      fs::create_directories(cfg.logdir);
      remove_stale_temporaries(cfg.logdir);
      metrics = std::make_unique<Metrics>(cfg, step);
    }
    // A kill after the state swap and before ckpt-N was written: the state is the checkpoint's.
    if (cfg.resume && opts.write_outputs && step > 0 &&
        (step % cfg.checkpointing_steps == 0 || step == cfg.num_steps)) {
      auto p = parts();
      if (complete_checkpoint(p, step) && main)
        std::cerr << "[train] wrote " << checkpoint_dir(cfg, step).string()
                  << " that an interrupted save left missing\n";
    }
    if (main) print_header();
    Progress progress("train", cfg.num_steps, cfg.quiet, step);
    const auto t0 = Clock::now();
    const int64_t start = step;
    while (step < cfg.num_steps) {
      micro_step();
      const double rate = (step - start) / std::max(1e-9, seconds_since(t0));
      char extra[160];
      std::snprintf(extra, sizeof(extra), "loss %.3e lr %.2e %.2f it/s", learner->running_loss(),
                    learner->lr().lr(learner->opt_step()), rate);
      progress.tick(1, extra);
      if (opts.write_outputs && step % cfg.checkpointing_steps == 0) save(true);
    }
    progress.finish();
    if (opts.write_outputs && step % cfg.checkpointing_steps != 0) save(true);
  }

  PhaseTimes all_times() const {
    PhaseTimes t = times;
    t.data = filler->data_seconds();
    t.buffer = filler->sampling_seconds();
    return t;
  }
};

Trainer::Trainer(TrainConfig config, TrainerOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}
Trainer::~Trainer() = default;
void Trainer::run() { impl_->run(); }
int64_t Trainer::micro_step() { return impl_->micro_step(); }
int64_t Trainer::step() const { return impl_->step; }
PhaseTimes Trainer::times() const { return impl_->all_times(); }
const TrainConfig& Trainer::config() const { return impl_->cfg; }
models::UNet2DConditionModelImpl& Trainer::unet() { return *impl_->models.unet; }
void Trainer::save(bool checkpoint) { impl_->save(checkpoint); }
void Trainer::average_gradients() { impl_->learner->average_gradients(); }
dist::Group& Trainer::group() { return *impl_->group; }
int64_t Trainer::trained_parameter_count() const {
  int64_t n = 0;
  for (const auto& p : impl_->learner->params()) n += p.numel();
  return n;
}

}  // namespace dro::train
