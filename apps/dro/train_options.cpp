#include "train_options.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/io/toml.h"

namespace dro::app {
namespace {

std::string snake(std::string s) {
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

}  // namespace

void add_train_flags(CLI::App* cmd, TrainFlags& f) {
  auto& c = f.cli;
  cmd->add_option("--config", f.config_file,
                  "JSON (official train.py style, snake_case keys) or flat TOML file of options; "
                  "flags given on the command line override it");
  cmd->add_option("--pretrained-model-name-or-path,--model", c.pretrained_model_name_or_path,
                  "diffusers model folder (SD1.5 or SDXL layout)");
  cmd->add_option("--unet", c.unet, "start from this UNet folder instead of MODEL/unet");
  cmd->add_option("--reference-unet", c.reference_unet,
                  "frozen reference UNet folder (default: the UNet training starts from; e.g. the base "
                  "model's when --unet is an SFT checkpoint)");
  cmd->add_option("--vae", c.vae,
                  "VAE folder replacing MODEL/vae (e.g. madebyollin/sdxl-vae-fp16-fix, as the official SDXL run)");
  cmd->add_option("--variant", c.variant, "weights variant of the model, e.g. fp16");
  cmd->add_option("--train-dataset", c.train_dataset,
                  "dro, sft: expert folder DIR/<id>/caption.txt + one .png/.jpg per sub-folder. dpo: pairs "
                  "manifest (JSONL/CSV rows {caption, chosen, rejected}, or Pick-a-Pic {caption, image_0, "
                  "image_1, label_0}, ties dropped). kto: labels manifest (rows {caption, image, label 1/0}, or "
                  "the Diffusion-KTO CSV {file_path, caption, label exclusive_win/exclusive_lose}). Image "
                  "paths are relative to the manifest's folder");
  cmd->add_option("--logdir", c.logdir, "run folder: checkpoints, state, logs")->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed of every random stream")->capture_default_str();
  cmd->add_option("--resolution", c.resolution, "training image size (shorter side, then crop)")->capture_default_str();
  cmd->add_flag("--random-crop,!--no-random-crop", c.random_crop, "random instead of center crop");
  cmd->add_flag("--random-flip,!--no-random-flip", c.random_flip, "random horizontal flips (default on)");
  cmd->add_option("--random-drop-prompt-probability", c.random_drop_prompt_probability,
                  "probability of replacing a caption by \"\"")->capture_default_str();
  cmd->add_flag("--skip-bad-images", c.skip_bad_images,
                "skip (and count) expert folders whose caption or image is missing or unreadable instead of failing");
  cmd->add_option("--dataloader-num-workers", c.dataloader_num_workers, "image decoding threads")->capture_default_str();
  cmd->add_option("--objective", c.objective,
                  "dro: Diffusion-DRO (expert folder, online policy samples). sft: supervised fine-tuning on the "
                  "expert folder. dpo: Diffusion-DPO on preference pairs. kto: Diffusion-KTO on labelled "
                  "images. dpo and kto learn against the frozen reference (--reference-unet, default the "
                  "starting UNet); start them from an SFT checkpoint with --unet for the 'w/ SFT' variants")
      ->capture_default_str();
  cmd->add_option("--batch-size", c.batch_size,
                  "examples per micro-step (dro: expert/policy pairs; dpo: preference pairs; kto: images)")
      ->capture_default_str();
  cmd->add_option("--num-steps", c.num_steps, "micro-steps (forward/backward passes)")->capture_default_str();
  cmd->add_option("--gradient-accumulation-steps", c.gradient_accumulation_steps,
                  "micro-steps per optimisation step")->capture_default_str();
  cmd->add_flag("--gradient-checkpointing,!--no-gradient-checkpointing", c.gradient_checkpointing,
                "recompute activations in backward to save memory");
  cmd->add_option("--learning-rate", c.learning_rate, "AdamW learning rate")->capture_default_str();
  cmd->add_flag("--scale-lr,!--no-scale-lr", c.scale_lr,
                "multiply the learning rate by accumulation x batch size x processes");
  cmd->add_option("--lr-scheduler", c.lr_scheduler,
                  "linear | cosine | cosine_with_restarts | polynomial | constant | constant_with_warmup")
      ->capture_default_str();
  cmd->add_option("--lr-warmup-steps", c.lr_warmup_steps, "warmup length in micro-steps")->capture_default_str();
  cmd->add_option("--adam-beta1", c.adam_beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--adam-beta2", c.adam_beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--adam-weight-decay", c.adam_weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--adam-epsilon", c.adam_epsilon, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--max-grad-norm", c.max_grad_norm, "global gradient-norm clip (0 disables)")->capture_default_str();
  cmd->add_option("--margin", c.margin, "dro: hinge margin of the ranking loss")->capture_default_str();
  cmd->add_option("--beta-dpo", c.beta_dpo,
                  "dpo: inverse temperature of the loss -log sigmoid(-beta/2 * (model_diff - ref_diff))")
      ->capture_default_str();
  cmd->add_option("--beta-kto", c.beta_kto, "kto: inverse temperature of the utility sigmoid")->capture_default_str();
  cmd->add_option("--lambda-desirable", c.lambda_desirable, "kto: weight of desirable images' loss")
      ->capture_default_str();
  cmd->add_option("--lambda-undesirable", c.lambda_undesirable, "kto: weight of undesirable images' loss")
      ->capture_default_str();
  cmd->add_option("--desirable-ratio", c.desirable_ratio,
                  "kto: draw desirable images with this probability, in (0, 1) (0: as often as the data holds "
                  "them)")->capture_default_str();
  cmd->add_option("--lora-rank", c.lora_rank,
                  "train LoRA adapters of this rank instead of the whole UNet (any objective): the UNet stays "
                  "frozen, the reference is that UNet with the adapters off, checkpoints are ckpt-N/"
                  "pytorch_lora_weights.safetensors (diffusers) and ckpt-N/lora_kohya.safetensors (webui); "
                  "0: full fine-tuning")
      ->capture_default_str();
  cmd->add_option("--lora-alpha", c.lora_alpha, "LoRA alpha; the update is scaled by alpha / rank (0: the rank)")
      ->capture_default_str();
  cmd->add_option("--lora-dropout", c.lora_dropout, "dropout on the adapters' input while training, in [0, 1)")
      ->capture_default_str();
  cmd->add_option("--lora-targets", c.lora_targets,
                  "comma-separated module patterns that take adapters; a pattern matches a whole module name or "
                  "a dotted tail of it, '*' also across dots, e.g. to_q,to_k,to_v,to_out.0,ff.net.*,proj_in,"
                  "proj_out,conv1,conv2 (empty: to_q,to_k,to_v,to_out.0)");
  cmd->add_option("--mixed-precision", c.mixed_precision,
                  "auto | no | bf16. no: everything fp32. bf16: the trained UNet, its gradients, AdamW and "
                  "EMA in fp32, every UNet forward (learner and buffer sampling) under bf16 autocast, the "
                  "frozen models (reference UNet, separate policy copy, VAE, text encoders) held in bf16, "
                  "the replay buffer fp32 (CPU autocast works too, slowly). auto: bf16 on CUDA, no on CPU")
      ->capture_default_str();
  cmd->add_flag("--pure-bf16", c.pure_bf16,
                "official behaviour: every weight, gradient, AdamW moment, EMA and the replay buffer in bf16");
  cmd->add_option("--save-dtype", c.save_dtype,
                  "dtype of the ckpt-N/unet weights: fp32, or bf16 / fp16 as the official bf16 runs save them "
                  "(the resumable state is always saved as trained)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_flag("--use-ema,!--no-use-ema", c.use_ema, "keep an EMA of the weights (checkpoints hold it)");
  cmd->add_flag("--offload-ema,!--no-offload-ema", c.offload_ema, "hold the EMA on the CPU");
  cmd->add_option("--ema-decay", c.ema_decay, "EMA decay cap")->capture_default_str();
  cmd->add_flag("--allow-tf32,!--no-allow-tf32", c.allow_tf32, "TF32 matmuls on CUDA");
  cmd->add_option("--buffer-size", c.buffer_size, "replay buffer capacity in trajectories")->capture_default_str();
  cmd->add_option("--buffer-scheduler", c.buffer_scheduler, "ddpm | ddim | dpmsolver++")->capture_default_str();
  cmd->add_option("--buffer-batch-size", c.buffer_batch_size, "trajectories sampled per refill batch")->capture_default_str();
  cmd->add_option("--buffer-batch-accumulation", c.buffer_batch_accumulation, "refill batches per refill")->capture_default_str();
  cmd->add_option("--buffer-num-inference-steps", c.buffer_num_inference_steps, "sampler steps per trajectory")->capture_default_str();
  cmd->add_option("--buffer-guidance-scale", c.buffer_guidance_scale, "guidance when sampling the policy")->capture_default_str();
  cmd->add_option("--buffer-sample-steps", c.buffer_sample_steps, "micro-steps between refills")->capture_default_str();
  cmd->add_option("--buffer-update-steps", c.buffer_update_steps,
                  "micro-steps between copies of the trained weights into the policy")->capture_default_str();
  cmd->add_flag("--buffer-perturb-timesteps,!--no-buffer-perturb-timesteps", c.buffer_perturb_timesteps,
                "per-sample randomly shifted timesteps when sampling the policy (default on)");
  cmd->add_flag("--buffer-official-sigmas", c.buffer_official_sigmas,
                "DPM-Solver++: integrate every sample on sample 0's noise levels, as the official patch");
  cmd->add_flag("--buffer-cpu", c.buffer_cpu, "hold the replay buffer in CPU memory");
  cmd->add_flag("--buffer-overlap,!--no-buffer-overlap", c.buffer_overlap,
                "sample the next refill on a second thread (with the same intra-op thread count) while "
                "the learner works, whenever the policy cannot change before it is due; bitwise the "
                "same results as --no-buffer-overlap (default on)");
  cmd->add_option("--checkpointing-steps", c.checkpointing_steps,
                  "micro-steps between state saves and ckpt-N/unet checkpoints")->capture_default_str();
  cmd->add_flag("--resume,!--no-resume", c.resume, "continue from LOGDIR/state");
  cmd->add_option("--log-every", c.log_every, "optimisation steps between metric records")->capture_default_str();
  cmd->add_option("--device", c.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_flag("--quiet", c.quiet, "no progress display");
  cmd->add_option("--dist-backend", c.dist_backend,
                  "several processes (RANK/WORLD_SIZE set by torchrun, srun or dro launch): auto (nccl on "
                  "CUDA, gloo on CPU) | gloo | nccl")->capture_default_str();
  cmd->add_option("--dist-timeout", c.dist_timeout,
                  "seconds a rank waits for its peers (start-up, collectives, rank 0's saves) before "
                  "exiting with an error")->capture_default_str();
}

train::TrainConfig resolve_train_config(CLI::App* cmd, const TrainFlags& f) {
  train::TrainConfig cfg;
  if (!f.config_file.empty()) {
    const bool toml = f.config_file.size() > 5 && f.config_file.substr(f.config_file.size() - 5) == ".toml";
    io::OrderedJson j = toml ? io::read_flat_toml(f.config_file, "train") : io::read_json(f.config_file);
    if (j.contains("buffer_scheduler") && j["buffer_scheduler"].is_string()) {
      std::string v = j["buffer_scheduler"];
      std::transform(v.begin(), v.end(), v.begin(), ::tolower);
      j["buffer_scheduler"] = v;  // the official spelling is DPMSolver++ / DDPM / DDIM
    }
    const auto unused = cfg.update_from_json(j, f.config_file);
    // Once, from the first process of a data-parallel run only.
    const char* rank = std::getenv("RANK");
    if (!unused.empty() && (rank == nullptr || std::string(rank) == "0"))
      std::cerr << train::unused_options_warning(unused, f.config_file) << std::endl;
  }
  // Flags given on the command line win.
  const io::OrderedJson all = f.cli.to_json();
  io::OrderedJson given = io::OrderedJson::object();
  for (const CLI::Option* o : cmd->get_options()) {
    if (o->count() == 0) continue;
    if (o->get_lnames().empty()) continue;
    std::string name = snake(o->get_lnames().front());
    if (name == "model") name = "pretrained_model_name_or_path";
    if (all.contains(name)) given[name] = all[name];
  }
  cfg.update_from_flags(given);
  return cfg;
}

}  // namespace dro::app
