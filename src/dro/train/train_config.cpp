#include "dro/train/train_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "dro/core/error.h"
#include "dro/train/lr_schedule.h"
#include "dro/train/objective.h"

namespace dro::train {
namespace {

// The values a numeric option accepts: finite numbers between lo and hi, each end open or closed.
struct Range {
  double lo = -HUGE_VAL, hi = HUGE_VAL;
  bool lo_open = false, hi_open = false;

  bool contains(double v) const {
    if (!std::isfinite(v)) return false;
    if (lo_open ? !(v > lo) : !(v >= lo)) return false;
    return hi_open ? v < hi : v <= hi;
  }
  std::string describe() const {
    const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
    if (has_lo && has_hi) return cat("in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
    if (has_lo) return cat(lo_open ? "> " : ">= ", lo);
    if (has_hi) return cat(hi_open ? "< " : "<= ", hi);
    return "a finite number";
  }
};

Range any_number() {
  return {};
}
Range at_least(double lo) {
  return {lo, HUGE_VAL, false, false};
}
Range above(double lo) {
  return {lo, HUGE_VAL, true, false};
}
Range closed(double lo, double hi) {
  return {lo, hi, false, false};
}
Range half_open(double lo, double hi) {
  return {lo, hi, false, true};
}
Range open(double lo, double hi) {
  return {lo, hi, true, true};
}

// One table drives to_json, update_from_json and validate so they never disagree. Numeric
// options carry the range they accept; strings and booleans pass none.
template <typename F>
void for_each_field(TrainConfig& c, F&& f) {
  f("pretrained_model_name_or_path", c.pretrained_model_name_or_path);
  f("unet", c.unet);
  f("reference_unet", c.reference_unet);
  f("vae", c.vae);
  f("variant", c.variant);
  f("train_dataset", c.train_dataset);
  f("logdir", c.logdir);
  f("seed", c.seed, any_number());
  f("resolution", c.resolution, at_least(1));
  f("random_crop", c.random_crop);
  f("random_flip", c.random_flip);
  f("random_drop_prompt_probability", c.random_drop_prompt_probability, closed(0, 1));
  f("skip_bad_images", c.skip_bad_images);
  f("dataloader_num_workers", c.dataloader_num_workers, at_least(0));
  f("objective", c.objective);
  f("batch_size", c.batch_size, at_least(1));
  f("num_steps", c.num_steps, at_least(1));
  f("gradient_accumulation_steps", c.gradient_accumulation_steps, at_least(1));
  f("gradient_checkpointing", c.gradient_checkpointing);
  f("learning_rate", c.learning_rate, above(0));
  f("scale_lr", c.scale_lr);
  f("lr_scheduler", c.lr_scheduler);
  f("lr_warmup_steps", c.lr_warmup_steps, at_least(0));
  f("adam_beta1", c.adam_beta1, half_open(0, 1));
  f("adam_beta2", c.adam_beta2, half_open(0, 1));
  f("adam_weight_decay", c.adam_weight_decay, at_least(0));
  f("adam_epsilon", c.adam_epsilon, above(0));
  f("max_grad_norm", c.max_grad_norm, at_least(0));  // 0 disables clipping
  f("margin", c.margin, at_least(0));
  f("beta_dpo", c.beta_dpo, above(0));
  f("beta_kto", c.beta_kto, above(0));
  f("lambda_desirable", c.lambda_desirable, at_least(0));
  f("lambda_undesirable", c.lambda_undesirable, at_least(0));
  f("desirable_ratio", c.desirable_ratio, half_open(0, 1));
  f("lora_rank", c.lora_rank, at_least(0));
  f("lora_alpha", c.lora_alpha, at_least(0));
  f("lora_dropout", c.lora_dropout, half_open(0, 1));
  f("lora_targets", c.lora_targets);
  f("mixed_precision", c.mixed_precision);
  f("pure_bf16", c.pure_bf16);
  f("save_dtype", c.save_dtype);
  f("use_ema", c.use_ema);
  f("offload_ema", c.offload_ema);
  f("ema_decay", c.ema_decay, open(0, 1));
  f("allow_tf32", c.allow_tf32);
  f("buffer_size", c.buffer_size, at_least(1));
  f("buffer_scheduler", c.buffer_scheduler);
  f("buffer_batch_size", c.buffer_batch_size, at_least(1));
  f("buffer_batch_accumulation", c.buffer_batch_accumulation, at_least(1));
  // At most the 1000 training timesteps of the SD schedulers.
  f("buffer_num_inference_steps", c.buffer_num_inference_steps, closed(1, 1000));
  f("buffer_guidance_scale", c.buffer_guidance_scale, at_least(0));  // <= 1: no guidance
  f("buffer_sample_steps", c.buffer_sample_steps, at_least(1));
  f("buffer_update_steps", c.buffer_update_steps, at_least(1));
  f("buffer_perturb_timesteps", c.buffer_perturb_timesteps);
  f("buffer_official_sigmas", c.buffer_official_sigmas);
  f("buffer_cpu", c.buffer_cpu);
  f("buffer_overlap", c.buffer_overlap);
  f("checkpointing_steps", c.checkpointing_steps, at_least(1));
  f("resume", c.resume);
  f("log_every", c.log_every, at_least(1));
  f("quiet", c.quiet);
  f("device", c.device);
  f("dist_backend", c.dist_backend);
  f("dist_timeout", c.dist_timeout, above(0));
}

// Options of the official train.py that dro accepts in a config file but does not use, and why.
struct Unused {
  const char* key;
  const char* why;
};
constexpr const char* kSeparate =
    "validation and scoring run separately here: dro sample, dro score";
constexpr Unused kOfficialUnused[] = {
    {"config", "a config file cannot name another"},
    {"sdxl", "dro reads SDXL from the model folder"},
    {"validation_dataset", kSeparate},
    {"validation_scheduler", kSeparate},
    {"validation_num_inference_steps", kSeparate},
    {"validation_guidance_scale", kSeparate},
    {"score", kSeparate},
    {"score_batch_size", kSeparate},
    {"score_num_images_per_prompt", kSeparate},
    {"buffer_sync", "train.py does not use it either"},
};

const Unused* find_unused(const std::string& key) {
  for (const auto& u : kOfficialUnused)
    if (key == u.key) return &u;
  return nullptr;
}

std::string snake(std::string k) {
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

std::string kebab(std::string k) {
  std::replace(k.begin(), k.end(), '_', '-');
  return k;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The option closest to a misspelt key, or "" when none is close.
std::string closest_option(const std::string& key) {
  std::string best;
  size_t best_d = std::max<size_t>(2, key.size() / 4) + 1;
  TrainConfig dummy;
  for_each_field(dummy, [&](const char* name, auto&, const Range& = {}) {
    const size_t d = edit_distance(key, name);
    if (d < best_d) {
      best_d = d;
      best = name;
    }
  });
  return best;
}

// Names an option in messages: a config file's key, or the flag on the command line.
struct Namer {
  bool flags;
  std::string where;
  std::string operator()(const std::string& name) const {
    return flags ? cat("[train] --", kebab(name)) : cat("[config] ", where, ": '", name, "'");
  }
};

// Reads one value, which must have the option's JSON type: nlohmann's get<int64_t>() would
// silently truncate 4.7 to 4.
template <typename T>
void read_value(const io::OrderedJson& v, T& out, const Range& range, const char* name,
                const Namer& named) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) throw UsageError(cat(named(name), " must be a string, got ", v.dump()));
    out = v.template get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean())
      throw UsageError(cat(named(name), " must be true or false, got ", v.dump()));
    out = v.template get<bool>();
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (!v.is_number_integer())
      throw UsageError(cat(named(name), " must be an integer, got ", v.dump()));
    if (v.is_number_unsigned() &&
        v.template get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      throw UsageError(cat(named(name), " is out of range, got ", v.dump()));
    const int64_t x = v.template get<int64_t>();
    if (!range.contains(static_cast<double>(x)))
      throw UsageError(cat(named(name), " must be ", range.describe(), ", got ", x));
    out = x;
  } else {
    static_assert(std::is_same_v<T, double>);
    if (!v.is_number()) throw UsageError(cat(named(name), " must be a number, got ", v.dump()));
    const double x = v.template get<double>();
    if (!range.contains(x))
      throw UsageError(cat(named(name), " must be ", range.describe(), ", got ", x));
    out = x;
  }
}

std::vector<std::string> update(TrainConfig& c, const io::OrderedJson& j, const Namer& named) {
  if (!j.is_object()) throw UsageError(cat("[config] ", named.where, ": must be a JSON object"));
  std::map<std::string, const io::OrderedJson*> given;
  std::map<std::string, std::string> spelling;  // snake_case -> the key as written
  std::vector<std::string> unused, unknown;
  std::vector<std::string> fields;
  for_each_field(c, [&](const char* name, auto&, const Range& = {}) { fields.push_back(name); });
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = snake(it.key());
    if (spelling.count(key))
      throw UsageError(cat("[config] ", named.where, ": '", key, "' is given twice ('",
                           spelling[key], "' and '", it.key(), "')"));
    spelling[key] = it.key();
    if (find_unused(key)) {
      unused.push_back(key);
    } else if (std::find(fields.begin(), fields.end(), key) == fields.end()) {
      unknown.push_back(it.key());
    } else {
      given[key] = &it.value();
    }
  }
  if (!unknown.empty()) {
    std::string list;
    for (const auto& k : unknown) list += cat(list.empty() ? "" : ", ", "'", k, "'");
    const std::string near = closest_option(snake(unknown.front()));
    throw UsageError(cat("[config] ", named.where, ": unknown option",
                         unknown.size() > 1 ? "s " : " ", list,
                         near.empty() ? "" : cat(" (did you mean '", near, "'?)")));
  }
  for_each_field(c, [&](const char* name, auto& value, const Range& range = {}) {
    auto it = given.find(name);
    if (it == given.end() || it->second->is_null()) return;  // null keeps the default
    read_value(*it->second, value, range, name, named);
  });
  return unused;
}

}  // namespace

io::OrderedJson TrainConfig::to_json() const {
  io::OrderedJson j;
  auto& self = const_cast<TrainConfig&>(*this);
  for_each_field(self, [&](const char* name, auto& value, const Range& = {}) { j[name] = value; });
  return j;
}

std::vector<std::string> TrainConfig::update_from_json(const io::OrderedJson& j,
                                                       const std::string& where) {
  return update(*this, j, Namer{false, where});
}

void TrainConfig::update_from_flags(const io::OrderedJson& j) {
  update(*this, j, Namer{true, "command line"});
}

std::string unused_options_warning(const std::vector<std::string>& keys, const std::string& where) {
  if (keys.empty()) return "";
  std::string list, why;
  std::vector<std::string> reasons;
  for (const auto& k : keys) {
    list += cat(list.empty() ? "" : ", ", k);
    const Unused* u = find_unused(k);
    const std::string r = u ? u->why : "";
    if (!r.empty() && std::find(reasons.begin(), reasons.end(), r) == reasons.end())
      reasons.push_back(r);
  }
  for (const auto& r : reasons) why += cat(why.empty() ? "" : "; ", r);
  return cat("[config] ", where, ": warning: ignoring official train.py option",
             keys.size() > 1 ? "s" : "", " that dro train does not use: ", list,
             why.empty() ? "" : cat(" (", why, ")"));
}

void TrainConfig::validate() const {
  if (pretrained_model_name_or_path.empty())
    throw UsageError("[train] --pretrained-model-name-or-path (--model) is required");
  if (train_dataset.empty()) throw UsageError("[train] --train-dataset is required");
  const Namer flag{true, ""};
  for_each_field(
      const_cast<TrainConfig&>(*this), [&](const char* name, auto& value, const Range& range = {}) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
          if (!range.contains(static_cast<double>(value)))
            throw UsageError(cat(flag(name), " must be ", range.describe(), ", got ", value));
        }
      });
  if (num_steps < gradient_accumulation_steps)
    throw UsageError(cat("[train] --num-steps (", num_steps, ") is smaller than ",
                         "--gradient-accumulation-steps (", gradient_accumulation_steps,
                         "): no optimisation step would run"));
  if (mixed_precision != "auto" && mixed_precision != "no" && mixed_precision != "fp16" &&
      mixed_precision != "bf16")
    throw UsageError(
        cat("[train] --mixed-precision '", mixed_precision, "' (auto, no, fp16, bf16)"));
  if (save_dtype != "fp32" && save_dtype != "bf16" && save_dtype != "fp16")
    throw UsageError(cat("[train] --save-dtype '", save_dtype, "' (fp32, bf16, fp16)"));
  if (buffer_scheduler != "ddpm" && buffer_scheduler != "ddim" && buffer_scheduler != "dpmsolver++")
    throw UsageError(
        cat("[train] --buffer-scheduler '", buffer_scheduler, "' (ddpm, ddim, dpmsolver++)"));
  LrSchedule s;
  s.name = lr_scheduler;
  s.base_lr = learning_rate;
  s.warmup_steps = lr_warmup_steps / gradient_accumulation_steps;  // as the trainer builds it
  s.total_steps = optimisation_steps();
  s.validate();
  if (dist_backend != "auto" && dist_backend != "gloo" && dist_backend != "nccl")
    throw UsageError(cat("[train] --dist-backend '", dist_backend, "' (auto, gloo, nccl)"));
  make_objective(*this);  // a known name
  const bool preference = objective == "dpo" || objective == "kto";
  if (preference && std::filesystem::is_directory(train_dataset))
    throw UsageError(cat("[train] --objective ", objective, " reads a ", objective == "dpo" ? "pairs" : "labels",
                         " manifest (JSONL or CSV) as --train-dataset, not a folder: ", train_dataset));
  if (desirable_ratio > 0 && objective != "kto")
    throw UsageError(cat("[train] --desirable-ratio applies to --objective kto only (got ", objective, ")"));
  if (lora_rank == 0 && (lora_alpha > 0 || lora_dropout > 0 || !lora_targets.empty()))
    throw UsageError("[train] --lora-alpha, --lora-dropout and --lora-targets need --lora-rank");
  if (lora_dropout > 0 && gradient_checkpointing)
    throw UsageError("[train] --lora-dropout with --gradient-checkpointing: the recomputation would draw other "
                     "dropout masks; use one of the two");
}

}  // namespace dro::train
