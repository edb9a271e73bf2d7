#include <fstream>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "dro/core/compat.h"
#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/model_folder.h"
#include "dro/models/unet.h"
#include "dro/train/trainer.h"
#include "train_options.h"

namespace dro::app {
namespace {

// Peak resident memory of this process in MiB (Linux VmHWM).
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      double kb = 0;
      ss >> kb;
      return kb / 1024.0;
    }
  return -1;
}

}  // namespace

// `dro bench model`: a model folder like DIR but with a UNet of other widths and random weights.
void register_bench_model(CLI::App* bench) {
  auto* cmd = bench->add_subcommand(
      "model", "Write a benchmark model: a copy of --like's components with a UNet of the given block "
               "widths (same block types; randomly initialised, seeded) for timing mid-size configurations");
  struct Opts {
    std::string like, out;
    std::vector<int64_t> channels;
    int64_t heads = 0, layers = 0, seed = 0, sample_size = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--like", o->like, "model folder to copy")->required();
  cmd->add_option("--out", o->out, "output model folder")->required();
  cmd->add_option("--block-out-channels", o->channels, "UNet widths, e.g. 64,128,256,256")->delimiter(',')->required();
  cmd->add_option("--heads", o->heads, "attention heads per block (default: as --like)");
  cmd->add_option("--layers-per-block", o->layers, "resnets per block (default: as --like)");
  cmd->add_option("--sample-size", o->sample_size, "UNet sample_size (default: as --like)");
  cmd->add_option("--seed", o->seed, "initialisation seed")->capture_default_str();
  cmd->callback([o]() {
    namespace fs = std::filesystem;
    auto m = io::ModelFolder::open(o->like);
    fs::create_directories(o->out);
    for (const auto& c : m.components)
      if (c.name != "unet") fs::copy(c.dir, fs::path(o->out) / c.name, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    fs::copy_file(m.root / "model_index.json", fs::path(o->out) / "model_index.json", fs::copy_options::overwrite_existing);
    auto j = io::read_json(m.component("unet").dir / "config.json");
    if (o->channels.size() != j["down_block_types"].size())
      throw UsageError(cat("[bench] --block-out-channels needs ", j["down_block_types"].size(), " values"));
    j["block_out_channels"] = o->channels;
    if (o->heads) j["attention_head_dim"] = o->heads;
    if (o->layers) j["layers_per_block"] = o->layers;
    if (o->sample_size) j["sample_size"] = o->sample_size;
    int64_t groups = j.value("norm_num_groups", 32);
    for (auto c : o->channels) while (c % groups) groups /= 2;
    j["norm_num_groups"] = groups;
    torch::manual_seed(static_cast<uint64_t>(o->seed));
    models::UNet2DConditionModel unet(models::UNetConfig::from_json(j, "bench model"));
    models::save_unet(fs::path(o->out) / "unet", unet);
    int64_t n = 0;
    for (const auto& p : unet->parameters()) n += p.numel();
    std::cout << "wrote " << o->out << " (UNet " << n << " parameters)\n";
  });
}

Action register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks of the main workloads");
  bench->require_subcommand(1);
  register_bench_model(bench);
  auto* cmd = bench->add_subcommand(
      "train", "Time N Diffusion-DRO micro-steps on random expert images of --resolution and "
               "report per-phase times (buffer sampling, reference forward, trained forward, "
               "backward, optimiser + EMA), micro-steps/s and peak memory. Takes every training flag; "
               "writes nothing.");
  auto flags = std::make_shared<TrainFlags>();
  add_train_flags(cmd, *flags);
  auto steps = std::make_shared<int64_t>(8);
  auto warmup = std::make_shared<int64_t>(1);
  auto json = std::make_shared<bool>(false);
  auto threads = std::make_shared<int64_t>(0);
  cmd->add_option("--steps", *steps, "micro-steps to time")->capture_default_str();
  cmd->add_option("--warmup", *warmup, "untimed micro-steps first")->capture_default_str();
  cmd->add_option("--threads", *threads, "intra-op CPU threads (0: LibTorch's default)");
  cmd->add_flag("--json", *json, "print the result as JSON");
  return [cmd, flags, steps, warmup, json, threads]() {
    if (!cmd->parsed()) return 0;  // `bench model` ran in its callback
    if (*threads > 0) torch::set_num_threads(static_cast<int>(*threads));
    auto cfg = resolve_train_config(cmd, *flags);
    if (cfg.train_dataset.empty()) cfg.train_dataset = "(random)";
    cfg.num_steps = std::max<int64_t>(cfg.num_steps, *steps + *warmup);
    cfg.quiet = true;
    train::TrainerOptions o;
    o.random_data = true;
    o.profile = true;
    o.write_outputs = false;
    train::Trainer trainer(cfg, o);
    for (int64_t i = 0; i < *warmup; ++i) trainer.micro_step();
    const train::PhaseTimes before = trainer.times();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < *steps; ++i) trainer.micro_step();
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto& a = trainer.times();
    const double n = static_cast<double>(*steps);
    io::OrderedJson r;
    r["micro_steps"] = *steps;
    r["seconds_per_micro_step"] = total / n;
    r["micro_steps_per_second"] = n / total;
    r["phases_seconds_per_micro_step"] = {
        {"data", (a.data - before.data) / n},
        {"buffer_sampling", (a.buffer - before.buffer) / n},
        {"reference_forward", (a.reference - before.reference) / n},
        {"trained_forward", (a.trained_forward - before.trained_forward) / n},
        {"backward", (a.backward - before.backward) / n},
        {"optimizer_ema", (a.optimizer - before.optimizer) / n}};
    r["peak_rss_mib"] = peak_rss_mib();
    r["threads"] = torch::get_num_threads();
    r["torch"] = compat::torch_version();
    r["config"] = {{"resolution", cfg.resolution}, {"batch_size", cfg.batch_size},
                   {"gradient_accumulation_steps", cfg.gradient_accumulation_steps},
                   {"buffer_size", cfg.buffer_size}, {"buffer_batch_size", cfg.buffer_batch_size},
                   {"buffer_num_inference_steps", cfg.buffer_num_inference_steps},
                   {"buffer_scheduler", cfg.buffer_scheduler}, {"device", cfg.device},
                   {"objective", cfg.objective}, {"lora_rank", cfg.lora_rank}, {"lora_targets", cfg.lora_targets}};
    r["trained_parameters"] = trainer.trained_parameter_count();
    if (*json) {
      std::cout << r.dump(2) << "\n";
    } else {
      std::cout << "micro-step: " << total / n << " s (" << n / total << " /s), peak RSS "
                << r["peak_rss_mib"].get<double>() << " MiB\n";
      for (auto it = r["phases_seconds_per_micro_step"].begin(); it != r["phases_seconds_per_micro_step"].end(); ++it)
        std::cout << "  " << it.key() << ": " << it.value().get<double>() << " s\n";
    }
    return 0;
  };
}

}  // namespace dro::app
