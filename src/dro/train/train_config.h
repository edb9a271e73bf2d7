// Every option of `dro train`, with the official train.py defaults (kebab-case flag names map to
// the official snake_case names). Serialises to JSON for the run folder and state files.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::train {

struct TrainConfig {
  // Model and data.
  std::string pretrained_model_name_or_path;  // diffusers folder (--model)
  std::string unet;                           // optional UNet folder overriding the model's
  std::string reference_unet;                 // frozen reference UNet (default: the starting UNet)
  std::string vae;                            // optional VAE folder overriding the model's
  std::string variant;                        // weights variant, e.g. fp16
  // dro, sft: the expert layout DIR/<id>/{*.png,caption.txt}; dpo: a pairs manifest, kto: a
  // labels manifest (JSONL or CSV, see data/preference_data.h)
  std::string train_dataset;
  std::string logdir = "./logs/sd15_diffusion-dro";
  int64_t seed = 0;
  int64_t resolution = 512;
  bool random_crop = false;
  bool random_flip = true;
  double random_drop_prompt_probability = 0.2;
  bool skip_bad_images = false;  // count and skip unreadable images instead of failing
  int64_t dataloader_num_workers = 2;

  // Optimisation.
  std::string objective = "dro";
  int64_t batch_size = 4;
  int64_t num_steps = 25600;  // micro-steps
  int64_t gradient_accumulation_steps = 16;
  bool gradient_checkpointing = false;
  double learning_rate = 1e-4;
  bool scale_lr = false;
  std::string lr_scheduler = "constant";
  int64_t lr_warmup_steps = 0;  // micro-steps, as the official option
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_weight_decay = 1e-2, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  double margin = 0.001;
  // The baselines' options (Diffusion-DPO's and Diffusion-KTO's defaults).
  double beta_dpo = 5000;
  double beta_kto = 1000;
  double lambda_desirable = 1, lambda_undesirable = 1;
  double desirable_ratio = 0;  // kto: share of desirable images drawn, in (0, 1); 0: as in the data
  // LoRA: adapters of this rank on the layers lora_targets names, the UNet frozen (0: full fine-tuning).
  int64_t lora_rank = 0;
  double lora_alpha = 0;     // 0: the rank (scale alpha / rank = 1)
  double lora_dropout = 0;
  std::string lora_targets;  // comma-separated module patterns; empty: to_q,to_k,to_v,to_out.0
  std::string mixed_precision = "auto";  // auto | no | fp16 | bf16 (auto: bf16 on CUDA, no on CPU)
  bool pure_bf16 = false;                // official behaviour: bf16 weights, optimiser and EMA
  std::string save_dtype = "fp32";       // ckpt-N/unet weights: fp32 | bf16 (the official bf16 runs) | fp16
  bool use_ema = true;
  bool offload_ema = true;
  double ema_decay = 0.9999;
  bool allow_tf32 = false;

  // Replay buffer (online negatives).
  int64_t buffer_size = 4;
  std::string buffer_scheduler = "dpmsolver++";
  int64_t buffer_batch_size = 4;
  int64_t buffer_batch_accumulation = 1;
  int64_t buffer_num_inference_steps = 20;
  double buffer_guidance_scale = 1.0;
  int64_t buffer_sample_steps = 1;
  int64_t buffer_update_steps = 16;
  bool buffer_perturb_timesteps = true;
  bool buffer_official_sigmas = false;  // DPM-Solver++: share sample 0's sigmas (official patch)
  bool buffer_cpu = false;              // hold the buffer on CPU (the official code does)
  // Sample the next refill on a second thread while the learner works, whenever the policy cannot
  // change before that refill is due; results are bitwise those of the sequential order.
  bool buffer_overlap = true;

  // Outputs.
  int64_t checkpointing_steps = 1280;
  bool resume = false;
  int64_t log_every = 1;  // optimisation steps between log lines
  bool quiet = false;

  std::string device = "auto";  // auto | cpu | cuda | cuda:N

  // Data-parallel runs (several processes; see dro/dist/process_group.h).
  std::string dist_backend = "auto";  // auto | gloo | nccl
  double dist_timeout = 600;          // seconds a rank waits for its peers

  io::OrderedJson to_json() const;
  // Reads the fields present in `j` (a config file named `where`; snake_case or kebab-case keys),
  // leaving the others; null keeps a field as it is. UsageError naming the file and the key for a
  // key that is not an option, a value of the wrong JSON type (4.7 for an integer, "true" for a
  // boolean) or out of the option's range. Returns the official train.py options present that dro
  // does not use (validation_*, score*, sdxl, buffer_sync, config): see unused_options_warning.
  std::vector<std::string> update_from_json(const io::OrderedJson& j, const std::string& where);
  // The same for values given as command-line flags (snake_case keys): errors name the flag.
  void update_from_flags(const io::OrderedJson& j);
  // Checks every numeric range and the consistency of the options; UsageError naming the flag and
  // the allowed range.
  void validate() const;

  int64_t optimisation_steps() const { return num_steps / gradient_accumulation_steps; }
  bool lora() const { return lora_rank > 0; }
};

// One warning line naming the unused official options `keys` read from `where` and why dro does not
// use them; "" when `keys` is empty.
std::string unused_options_warning(const std::vector<std::string>& keys, const std::string& where);

}  // namespace dro::train
