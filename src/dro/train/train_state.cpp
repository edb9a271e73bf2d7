#include "dro/train/train_state.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <set>

#include "dro/core/device.h"
#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/dist/process_group.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/models/lora_file.h"
#include "dro/train/optimizer_state.h"
#include "dro/train/train_config.h"

namespace dro::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "dro-train-state-2";

io::NamedTensors unet_tensors(StateParts& p, bool use_ema) {
  io::NamedTensors t;
  const auto& params = p.learner.params();
  const auto& names = p.learner.param_names();
  Ema* ema = p.learner.ema();
  for (size_t i = 0; i < params.size(); ++i) t.emplace_back(names[i], use_ema && ema ? ema->shadow()[i] : params[i]);
  if (!p.models.lora)
    for (const auto& b : p.models.unet->named_buffers(true)) t.emplace_back(b.key(), b.value());
  return t;
}

torch::Dtype save_dtype(const TrainConfig& cfg) { return dtype_named(cfg.save_dtype, "--save-dtype"); }

// The policy's separate weights (a UNet copy, or LoRA's second adapter set) by name.
io::NamedTensors policy_tensors(StateParts& p) {
  io::NamedTensors pol;
  if (p.models.lora && p.models.lora->has_policy_slot()) {
    const auto& v = p.models.lora->policy_parameters();
    for (size_t i = 0; i < v.size(); ++i) pol.emplace_back(p.models.lora->names()[i], v[i]);
  } else if (p.models.policy_copy) {
    for (const auto& w : p.models.policy_copy->named_parameters(true)) pol.emplace_back(w.key(), w.value());
  }
  return pol;
}

// ckpt-N/pytorch_lora_weights.safetensors (diffusers / peft) and lora_kohya.safetensors (webui),
// from the EMA where kept; each written atomically.
void write_lora_files(StateParts& p, const fs::path& dir) {
  const auto& params = p.learner.params();
  Ema* ema = p.learner.ema();
  const auto layers = p.models.lora->layers(ema ? ema->shadow() : params);
  fs::create_directories(dir);
  models::save_lora_diffusers(dir / kLoraDiffusersFile, layers, save_dtype(p.cfg));
  models::save_lora_kohya(dir / kLoraKohyaFile, layers, p.models.unet->config(), save_dtype(p.cfg));
  io::sync_directory(dir);
}

// A diffusers UNet folder (config.json + weights in --save-dtype), written beside and renamed.
void write_unet_folder(StateParts& p, const fs::path& dir, bool use_ema) {
  const fs::path tmp = dir.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  auto tensors = unet_tensors(p, use_ema);
  const torch::Dtype save = save_dtype(p.cfg);
  for (auto& [n, v] : tensors) v = v.to(torch::kCPU, torch::isFloatingType(v.scalar_type()) ? save : v.scalar_type());
  io::save_safetensors(tmp / "diffusion_pytorch_model.safetensors", tensors, {{"format", "pt"}});
  io::write_json(tmp / "config.json", p.models.unet->config().raw);
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir.parent_path());
  fs::rename(tmp, dir);
  io::sync_directory(dir.parent_path());
}

// This rank's own part of the state: replay buffer, random streams, data position.
io::NamedTensors rank_state(StateParts& p, const FillerState& f) {
  io::NamedTensors t;
  for (auto& [k, v] : p.buffer.to_tensors()) t.emplace_back("buffer/" + k, v);
  t.emplace_back("rng/filler", f.filler_rng);
  t.emplace_back("rng/learner", generator_state(p.learner.generator()));
  t.emplace_back("rng/random_data", f.random_data_rng);
  t.emplace_back("data/epoch_position", torch::tensor({f.epoch, f.position}));
  for (auto& [k, v] : p.learner.accumulation_state()) t.emplace_back("accum/" + k, v);
  return t;
}

// (sum, sum of |w|) of the trained weights in float64: equal on every rank unless they diverged.
std::vector<double> weight_fingerprint(const std::vector<torch::Tensor>& params) {
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

// The options the state was saved with against this run's: differences are reported; those that
// change the shape of what is restored (the replay buffer's trajectories) are refused.
void check_saved_config(const TrainConfig& cfg, const io::OrderedJson& st, const std::string& where, bool main) {
  if (!st.contains("config") || !st["config"].is_object()) return;
  const io::OrderedJson& saved = st["config"];
  const io::OrderedJson now = cfg.to_json();
  // Options that change nothing a run computes.
  static const std::set<std::string> ignored = {"resume", "quiet", "buffer_overlap", "dataloader_num_workers"};
  static const std::set<std::string> incompatible = {"resolution", "buffer_size", "buffer_batch_size",
                                                     "buffer_num_inference_steps", "lora_rank", "lora_targets"};
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
                         "the saved state (replay buffer or LoRA adapters):", list, "\n  (resume with the saved values, or start a new --logdir)"));
  }
  if (main && !changed.empty()) {
    std::cerr << "[train] resuming with options that differ from the saved run's:";
    for (const auto& l : changed) std::cerr << "\n  " << l;
    std::cerr << "\n";
  }
}

// Tensors of `all` under "prefix/", without the prefix.
std::map<std::string, torch::Tensor> under(const std::map<std::string, torch::Tensor>& all, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : all)
    if (k.rfind(prefix + "/", 0) == 0) out[k.substr(prefix.size() + 1)] = v;
  return out;
}

}  // namespace

void save_state(StateParts& p, int64_t step, const FillerState& filler, bool checkpoint) {
  const TrainConfig& cfg = p.cfg;
  dist::Group& group = p.group;
  const int world = group.size();
  const auto prints = group.all_gather(weight_fingerprint(p.learner.params()));
  for (int r = 0; r < world; ++r)
    if (!std::isfinite(prints[r][0]) || !std::isfinite(prints[r][1]))
      throw Error(cat("[train] rank ", r, "'s weights are not finite at micro-step ", step,
                      "; not saving (the last saved state in ", cfg.logdir, "/state is intact)"));
  for (int r = 1; r < world; ++r)
    if (prints[r] != prints[0])
      throw Error(cat("[train] rank ", r, "'s weights differ from rank 0's at micro-step ", step,
                      " (the ranks diverged; not saving)"));
  if (!group.is_main()) {
    group.send(rank_state(p, filler), 0);
    group.barrier();  // rank 0 has written everything
    return;
  }
  const fs::path logdir = cfg.logdir;
  fs::create_directories(logdir);
  const fs::path final_dir = logdir / "state";
  const fs::path tmp = logdir / ("state.tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  io::save_safetensors(tmp / "unet.safetensors", unet_tensors(p, false));
  if (!p.models.policy_shared()) io::save_safetensors(tmp / "policy.safetensors", policy_tensors(p));
  io::save_safetensors(tmp / "optimizer.safetensors", adamw_state(p.learner.optimizer(), p.learner.params()));
  if (Ema* ema = p.learner.ema()) {
    io::NamedTensors e;
    for (size_t i = 0; i < p.learner.params().size(); ++i) e.emplace_back(p.learner.param_names()[i], ema->shadow()[i]);
    io::save_safetensors(tmp / "ema.safetensors", e);
  }
  for (int r = 0; r < world; ++r) {
    io::NamedTensors part;
    if (r == 0) {
      part = rank_state(p, filler);
    } else {
      for (auto& [k, v] : group.recv(r)) part.emplace_back(k, v);
    }
    io::save_safetensors(tmp / cat("rank-", r, ".safetensors"), part);
  }
  io::OrderedJson st;
  st["format"] = kFormat;
  st["step"] = step;
  st["opt_step"] = p.learner.opt_step();
  st["ema_updates"] = p.learner.ema() ? p.learner.ema()->updates() : 0;
  st["world_size"] = world;
  st["weight_fingerprint"] = prints[0];
  st["rank0_epoch_position"] = {filler.epoch, filler.position};
  st["config"] = cfg.to_json();
  st["dataset_size"] = p.dataset ? p.dataset->size() : int64_t(0);
  io::write_json(tmp / "training_state.json", st);
  // Swap in the new state: a crash leaves either the old or the new folder complete. When only
  // state.old exists (a crash between the two renames), it is the last good state and stays until
  // the new one is in place.
  const fs::path old = logdir / "state.old";
  std::error_code ec;
  if (fs::exists(final_dir)) {
    fs::remove_all(old, ec);
    fs::rename(final_dir, old);
  }
  fs::rename(tmp, final_dir);
  io::sync_directory(logdir);  // the swap survives a power loss
  fs::remove_all(old, ec);
  if (checkpoint) write_checkpoint(p, step);
  group.barrier();
}

fs::path checkpoint_dir(const TrainConfig& cfg, int64_t step) { return fs::path(cfg.logdir) / cat("ckpt-", step); }

void write_checkpoint(StateParts& p, int64_t step) {
  const fs::path dir = checkpoint_dir(p.cfg, step);
  if (p.models.lora)
    write_lora_files(p, dir);
  else
    write_unet_folder(p, dir / "unet", /*use_ema=*/true);
}

bool complete_checkpoint(StateParts& p, int64_t step) {
  bool written = false;
  if (p.group.is_main()) {
    const fs::path dir = checkpoint_dir(p.cfg, step);
    const bool complete = p.models.lora ? fs::exists(dir / kLoraDiffusersFile) && fs::exists(dir / kLoraKohyaFile)
                                        : fs::exists(dir / "unet" / "diffusion_pytorch_model.safetensors") &&
                                              fs::exists(dir / "unet" / "config.json");
    if (!complete) {
      write_checkpoint(p, step);
      written = true;
    }
  }
  p.group.barrier();
  return written;
}

void remove_stale_temporaries(const fs::path& logdir) {
  // Only rank 0 writes them, and it is not saving now, so they are garbage (GBs each for SD).
  std::vector<fs::path> stale;
  auto is_tmp = [](const fs::path& p, const std::string& stem) {
    return p.filename().string().rfind(stem + ".tmp.", 0) == 0;
  };
  for (const auto& e : fs::directory_iterator(logdir)) {
    if (is_tmp(e.path(), "state")) stale.push_back(e.path());
    if (e.is_directory() && e.path().filename().string().rfind("ckpt-", 0) == 0)
      for (const auto& f : fs::directory_iterator(e.path()))
        if (is_tmp(f.path(), "unet") || is_tmp(f.path(), kLoraDiffusersFile) || is_tmp(f.path(), kLoraKohyaFile))
          stale.push_back(f.path());
  }
  for (const auto& p : stale) {
    std::error_code ec;
    fs::remove_all(p, ec);
    std::cerr << "[train] removed " << p.string() << " left by an interrupted save"
              << (ec ? cat(" (failed: ", ec.message(), ")") : std::string()) << "\n";
  }
}

RestoredState load_state(StateParts& p) {
  const TrainConfig& cfg = p.cfg;
  dist::Group& group = p.group;
  const int world = group.size(), rank = group.rank();
  const bool main = group.is_main();
  std::map<std::string, torch::Tensor> all;  // "shared/<file>/<name>", "rank/<name>", "json"
  int saved_world = 1;
  std::string where;
  if (main) {
    fs::path dir = fs::path(cfg.logdir) / "state";
    if (!fs::exists(dir) && fs::exists(fs::path(cfg.logdir) / "state.old")) dir = fs::path(cfg.logdir) / "state.old";
    where = dir.string();
    if (!fs::exists(dir / "training_state.json")) throw IoError(cat("[train] --resume: no state in ", dir.string()));
    const auto st = io::read_json(dir / "training_state.json");
    const std::string format = st.value("format", std::string());
    if (format != kFormat)
      throw IoError(cat("[train] ", (dir / "training_state.json").string(), ": state format '", format,
                        "', expected ", kFormat, " (written by another version)"));
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
        group.send(list, r);
      }
    }
    all = std::move(own);
  } else {
    all = group.recv(0);
    where = "state received from rank 0";
  }
  auto json_entry = all.find("json");
  if (json_entry == all.end())
    throw IoError(cat("[train] --resume: ", where, " has no 'json' entry (damaged, or written by another version?)"));
  const auto& bytes = json_entry->second;
  nlohmann::ordered_json st;
  try {
    st = nlohmann::ordered_json::parse(
        std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())));
  } catch (const nlohmann::json::exception& e) {
    throw IoError(cat("[train] --resume: ", where, ": the state's JSON entry does not parse: ", e.what()));
  }
  // Every entry is looked up by name, so a damaged or foreign state says what it lacks.
  auto entry = [&](const std::map<std::string, torch::Tensor>& m, const std::string& key, const std::string& file,
                   const torch::Tensor& like = {}) -> const torch::Tensor& {
    auto it = m.find(key);
    if (it == m.end())
      throw IoError(cat("[train] --resume: ", where, "/", file, " has no entry '", key,
                        "' (damaged, or written by another version?)"));
    if (like.defined() && it->second.sizes() != like.sizes())
      throw IoError(cat("[train] --resume: ", where, "/", file, ": '", key, "' has shape ", it->second.sizes(),
                        ", the model's is ", like.sizes(), " (state from another model?)"));
    return it->second;
  };
  auto number = [&](const char* key) { return io::get_required<int64_t>(st, key, where + "/training_state.json"); };
  saved_world = static_cast<int>(number("world_size"));
  check_saved_config(cfg, st, where, main);
  torch::NoGradGuard no_grad;
  const auto& params = p.learner.params();
  const auto& names = p.learner.param_names();
  const auto weights = under(all, "shared/unet");
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = weights.find(names[i]);
    if (it == weights.end() || it->second.sizes() != params[i].sizes())
      throw IoError(cat("[train] ", where, "/unet.safetensors: parameter '", names[i],
                        "' missing or of another shape (state from another model?)"));
    params[i].copy_(it->second);
  }
  if (!p.models.policy_shared()) {
    const auto pol = under(all, "shared/policy");
    for (auto& [name, w] : policy_tensors(p)) w.copy_(entry(pol, name, "policy.safetensors", w));
  }
  set_adamw_state(p.learner.optimizer(), params, under(all, "shared/optimizer"), where + "/optimizer.safetensors");
  if (Ema* ema = p.learner.ema()) {
    const auto e = under(all, "shared/ema");
    if (e.empty()) throw IoError(cat("[train] ", where, ": no ema.safetensors but --use-ema is on"));
    for (size_t i = 0; i < params.size(); ++i)
      ema->shadow()[i].copy_(entry(e, names[i], "ema.safetensors", ema->shadow()[i]));
    ema->set_updates(st.value("ema_updates", int64_t(0)));
  }
  RestoredState out;
  out.step = number("step");
  p.learner.set_opt_step(number("opt_step"));
  const auto own = under(all, "rank");
  if (!own.empty()) {  // this rank existed in the saved run
    const std::string file = cat("rank-", rank, ".safetensors");
    p.buffer.from_tensors(under(own, "buffer"), where + "/" + file);
    out.filler.filler_rng = entry(own, "rng/filler", file).clone();
    out.filler.random_data_rng = entry(own, "rng/random_data", file).clone();
    set_generator_state(p.learner.generator(), entry(own, "rng/learner", file).clone());
    p.learner.set_accumulation_state(under(own, "accum"), where + "/" + file);
  }
  if (p.loader) {
    // Rank 0's position stands for the run's: under another sharding, the same fraction of the epoch.
    const auto pos = all.count("rank/data/epoch_position") && saved_world == world ? all.at("rank/data/epoch_position")
                                                                                  : torch::Tensor();
    int64_t epoch = 0, position = 0;
    if (pos.defined()) {
      epoch = pos[0].item<int64_t>();
      position = pos[1].item<int64_t>();
    } else {
      const auto p0 = io::get_required<std::vector<int64_t>>(st, "rank0_epoch_position", where + "/training_state.json");
      if (p0.size() != 2)
        throw IoError(cat("[train] --resume: ", where, "/training_state.json: rank0_epoch_position must be [epoch, position]"));
      epoch = p0[0];
      position = p0[1] * saved_world / world;
    }
    // A dataset that changed size since the save (files added, removed or now skipped) keeps the
    // same fraction of the epoch; the position never runs past the end of the new order.
    const int64_t saved_size = st.value("dataset_size", int64_t(-1));
    if (saved_size > 0 && p.dataset && saved_size != p.dataset->size()) {
      if (main)
        std::cerr << "[train] warning: the dataset had " << saved_size << " examples at the save and has "
                  << p.dataset->size() << " now; the data stream continues at the same fraction of epoch " << epoch
                  << " of the new order\n";
      position = position * p.dataset->size() / saved_size;
    }
    out.filler.epoch = epoch;
    out.filler.position = std::clamp<int64_t>(position, 0, std::max<int64_t>(0, p.loader->epoch_length() - 1));
  }
  if (main) std::cerr << "[train] resumed from " << where << " at micro-step " << out.step << "\n";
  return out;
}

}  // namespace dro::train
