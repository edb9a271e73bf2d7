#include "dro/train/train_config.h"

#include <algorithm>
#include <functional>
#include <map>

#include "dro/core/error.h"
#include "dro/train/lr_schedule.h"

namespace dro::train {
namespace {

// One table drives to_json and update_from_json so the two never disagree.
template <typename F>
void for_each_field(TrainConfig& c, F&& f) {
  f("pretrained_model_name_or_path", c.pretrained_model_name_or_path);
  f("unet", c.unet);
  f("variant", c.variant);
  f("train_dataset", c.train_dataset);
  f("logdir", c.logdir);
  f("seed", c.seed);
  f("resolution", c.resolution);
  f("random_crop", c.random_crop);
  f("random_flip", c.random_flip);
  f("random_drop_prompt_probability", c.random_drop_prompt_probability);
  f("skip_bad_images", c.skip_bad_images);
  f("dataloader_num_workers", c.dataloader_num_workers);
  f("objective", c.objective);
  f("batch_size", c.batch_size);
  f("num_steps", c.num_steps);
  f("gradient_accumulation_steps", c.gradient_accumulation_steps);
  f("gradient_checkpointing", c.gradient_checkpointing);
  f("learning_rate", c.learning_rate);
  f("scale_lr", c.scale_lr);
  f("lr_scheduler", c.lr_scheduler);
  f("lr_warmup_steps", c.lr_warmup_steps);
  f("adam_beta1", c.adam_beta1);
  f("adam_beta2", c.adam_beta2);
  f("adam_weight_decay", c.adam_weight_decay);
  f("adam_epsilon", c.adam_epsilon);
  f("max_grad_norm", c.max_grad_norm);
  f("margin", c.margin);
  f("mixed_precision", c.mixed_precision);
  f("pure_bf16", c.pure_bf16);
  f("use_ema", c.use_ema);
  f("offload_ema", c.offload_ema);
  f("ema_decay", c.ema_decay);
  f("allow_tf32", c.allow_tf32);
  f("buffer_size", c.buffer_size);
  f("buffer_scheduler", c.buffer_scheduler);
  f("buffer_batch_size", c.buffer_batch_size);
  f("buffer_batch_accumulation", c.buffer_batch_accumulation);
  f("buffer_num_inference_steps", c.buffer_num_inference_steps);
  f("buffer_guidance_scale", c.buffer_guidance_scale);
  f("buffer_sample_steps", c.buffer_sample_steps);
  f("buffer_update_steps", c.buffer_update_steps);
  f("buffer_perturb_timesteps", c.buffer_perturb_timesteps);
  f("buffer_official_sigmas", c.buffer_official_sigmas);
  f("buffer_cpu", c.buffer_cpu);
  f("checkpointing_steps", c.checkpointing_steps);
  f("resume", c.resume);
  f("log_every", c.log_every);
  f("quiet", c.quiet);
  f("device", c.device);
  f("dist_backend", c.dist_backend);
  f("dist_timeout", c.dist_timeout);
}

std::string snake(std::string k) {
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

}  // namespace

io::OrderedJson TrainConfig::to_json() const {
  io::OrderedJson j;
  auto& self = const_cast<TrainConfig&>(*this);
  for_each_field(self, [&](const char* name, auto& value) { j[name] = value; });
  return j;
}

void TrainConfig::update_from_json(const io::OrderedJson& j, const std::string& where) {
  if (!j.is_object()) throw UsageError(cat("[config] ", where, ": must be a JSON object"));
  std::map<std::string, const io::OrderedJson*> given;
  for (auto it = j.begin(); it != j.end(); ++it) {
    // Official option names the program does not use (validation and scoring run separately).
    static const char* kIgnored[] = {"config", "sdxl", "validation_dataset", "validation_scheduler",
                                     "validation_num_inference_steps", "validation_guidance_scale",
                                     "score", "score_batch_size", "score_num_images_per_prompt",
                                     "buffer_sync"};
    const std::string key = snake(it.key());
    if (std::find(std::begin(kIgnored), std::end(kIgnored), key) != std::end(kIgnored)) continue;
    given[key] = &it.value();
  }
  for_each_field(*this, [&](const char* name, auto& value) {
    auto it = given.find(name);
    if (it == given.end()) return;
    using T = std::decay_t<decltype(value)>;
    try {
      if (!it->second->is_null()) value = it->second->template get<T>();
    } catch (const std::exception&) {
      throw UsageError(cat("[config] ", where, ": '", name, "' has the wrong type (", it->second->dump(), ")"));
    }
    given.erase(it);
  });
  if (!given.empty())
    throw UsageError(cat("[config] ", where, ": unknown option '", given.begin()->first, "'"));
}

void TrainConfig::validate() const {
  auto positive = [](int64_t v, const char* flag) {
    if (v <= 0) throw UsageError(cat("[train] --", flag, " must be positive, got ", v));
  };
  if (pretrained_model_name_or_path.empty())
    throw UsageError("[train] --pretrained-model-name-or-path (--model) is required");
  if (train_dataset.empty()) throw UsageError("[train] --train-dataset is required");
  positive(resolution, "resolution");
  positive(batch_size, "batch-size");
  positive(num_steps, "num-steps");
  positive(gradient_accumulation_steps, "gradient-accumulation-steps");
  positive(buffer_size, "buffer-size");
  positive(buffer_batch_size, "buffer-batch-size");
  positive(buffer_batch_accumulation, "buffer-batch-accumulation");
  positive(buffer_num_inference_steps, "buffer-num-inference-steps");
  positive(buffer_sample_steps, "buffer-sample-steps");
  positive(buffer_update_steps, "buffer-update-steps");
  positive(checkpointing_steps, "checkpointing-steps");
  positive(log_every, "log-every");
  if (num_steps < gradient_accumulation_steps)
    throw UsageError(cat("[train] --num-steps (", num_steps, ") is smaller than ",
                         "--gradient-accumulation-steps (", gradient_accumulation_steps,
                         "): no optimisation step would run"));
  if (random_drop_prompt_probability < 0 || random_drop_prompt_probability > 1)
    throw UsageError("[train] --random-drop-prompt-probability must be in [0, 1]");
  if (!(learning_rate > 0)) throw UsageError("[train] --learning-rate must be positive");
  if (max_grad_norm < 0) throw UsageError("[train] --max-grad-norm must be >= 0 (0 disables clipping)");
  if (mixed_precision != "auto" && mixed_precision != "no" && mixed_precision != "fp16" &&
      mixed_precision != "bf16")
    throw UsageError(cat("[train] --mixed-precision '", mixed_precision, "' (auto, no, fp16, bf16)"));
  if (buffer_scheduler != "ddpm" && buffer_scheduler != "ddim" && buffer_scheduler != "dpmsolver++")
    throw UsageError(cat("[train] --buffer-scheduler '", buffer_scheduler, "' (ddpm, ddim, dpmsolver++)"));
  if (buffer_num_inference_steps > 1000)
    throw UsageError("[train] --buffer-num-inference-steps must be <= the training timesteps");
  if (!(ema_decay > 0 && ema_decay < 1)) throw UsageError("[train] --ema-decay must be in (0, 1)");
  LrSchedule s;
  s.name = lr_scheduler;
  s.base_lr = learning_rate;
  s.validate();
  if (dist_backend != "auto" && dist_backend != "gloo" && dist_backend != "nccl")
    throw UsageError(cat("[train] --dist-backend '", dist_backend, "' (auto, gloo, nccl)"));
  if (!(dist_timeout > 0)) throw UsageError(cat("[train] --dist-timeout must be positive, got ", dist_timeout));
  if (objective != "dro" && objective != "sft")
    throw UsageError(cat("[train] --objective '", objective, "' (dro, sft)"));
}

}  // namespace dro::train
