#include "dro/world/base_model.h"

#include <iostream>

#include <torch/torch.h>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/models/unet.h"
#include "dro/models/unet_config.h"
#include "dro/nn/state_dict.h"
#include "dro/text/clip_config.h"
#include "dro/text/clip_text_model.h"
#include "dro/text/clip_tokenizer.h"
#include "dro/train/trainer.h"
#include "dro/world/vocab_builder.h"

namespace dro::world {
namespace fs = std::filesystem;

namespace {

io::OrderedJson model_index() {
  io::OrderedJson j;
  j["_class_name"] = "StableDiffusionPipeline";
  j["_diffusers_version"] = "0.32.0";
  j["feature_extractor"] = {nullptr, nullptr};
  j["image_encoder"] = {nullptr, nullptr};
  j["requires_safety_checker"] = false;
  j["safety_checker"] = {nullptr, nullptr};
  j["scheduler"] = {"diffusers", "DDPMScheduler"};
  j["text_encoder"] = {"transformers", "CLIPTextModel"};
  j["tokenizer"] = {"transformers", "CLIPTokenizer"};
  j["unet"] = {"diffusers", "UNet2DConditionModel"};
  return j;
}

io::OrderedJson scheduler_config() {
  io::OrderedJson j;
  j["_class_name"] = "DDPMScheduler";
  j["_diffusers_version"] = "0.32.0";
  j["beta_end"] = 0.02;
  j["beta_schedule"] = "linear";
  j["beta_start"] = 0.0001;
  j["clip_sample"] = true;
  j["clip_sample_range"] = 1.0;
  j["num_train_timesteps"] = 1000;
  j["prediction_type"] = "epsilon";
  j["set_alpha_to_one"] = false;
  j["steps_offset"] = 1;
  j["timestep_spacing"] = "leading";
  j["trained_betas"] = nullptr;
  j["variance_type"] = "fixed_small";
  return j;
}

io::OrderedJson text_encoder_config(const BaseModelConfig& c, const text::ClipTokenizer& tok) {
  io::OrderedJson j;
  j["architectures"] = {"CLIPTextModel"};
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = tok.bos_id();
  j["dropout"] = 0.0;
  j["eos_token_id"] = tok.eos_id();
  j["hidden_act"] = "quick_gelu";
  j["hidden_size"] = c.text_hidden;
  j["initializer_factor"] = 1.0;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.text_hidden * 4;
  j["layer_norm_eps"] = 1e-5;
  j["max_position_embeddings"] = c.max_length;
  j["model_type"] = "clip_text_model";
  j["num_attention_heads"] = c.text_heads;
  j["num_hidden_layers"] = c.text_layers;
  j["pad_token_id"] = tok.pad_id();
  j["projection_dim"] = c.text_hidden;
  j["torch_dtype"] = "float32";
  j["transformers_version"] = "4.47.1";
  j["vocab_size"] = tok.vocab_size();
  return j;
}

io::OrderedJson unet_config(const BaseModelConfig& c) {
  const size_t n = c.block_out_channels.size();
  if (n < 2) throw UsageError("[world] the base UNet needs at least 2 blocks");
  // Full resolution without attention (1024 tokens is the expensive part); cross-attention below.
  std::vector<std::string> down{"DownBlock2D"}, up;
  for (size_t i = 1; i < n; ++i) down.push_back("CrossAttnDownBlock2D");
  for (size_t i = 1; i < n; ++i) up.push_back("CrossAttnUpBlock2D");
  up.push_back("UpBlock2D");
  io::OrderedJson j;
  j["_class_name"] = "UNet2DConditionModel";
  j["_diffusers_version"] = "0.32.0";
  j["act_fn"] = "silu";
  j["attention_head_dim"] = c.attention_heads;  // diffusers reads this as the number of heads
  j["block_out_channels"] = c.block_out_channels;
  j["center_input_sample"] = false;
  j["cross_attention_dim"] = c.text_hidden;
  j["down_block_types"] = down;
  j["downsample_padding"] = 1;
  j["dropout"] = 0.0;
  j["flip_sin_to_cos"] = true;
  j["freq_shift"] = 0;
  j["in_channels"] = 3;
  j["layers_per_block"] = c.layers_per_block;
  j["mid_block_scale_factor"] = 1;
  j["mid_block_type"] = "UNetMidBlock2DCrossAttn";
  j["norm_eps"] = 1e-5;
  j["norm_num_groups"] = c.norm_num_groups;
  j["only_cross_attention"] = false;
  j["out_channels"] = 3;
  j["resnet_time_scale_shift"] = "default";
  j["sample_size"] = c.image_size;
  j["transformer_layers_per_block"] = 1;
  j["up_block_types"] = up;
  j["upcast_attention"] = false;
  j["use_linear_projection"] = false;
  return j;
}

}  // namespace

void write_base_model(const fs::path& dir, const BaseModelConfig& c) {
  fs::create_directories(dir);
  io::write_json(dir / "model_index.json", model_index());
  fs::create_directories(dir / "scheduler");
  io::write_json(dir / "scheduler" / "scheduler_config.json", scheduler_config());
  write_world_tokenizer(dir / "tokenizer", c.max_length);
  const auto tok = text::ClipTokenizer::load(dir / "tokenizer");

  torch::NoGradGuard no_grad;
  torch::manual_seed(c.seed);
  const auto te_json = text_encoder_config(c, tok);
  text::ClipTextModel te(text::ClipTextConfig::from_json(te_json, "[world] text_encoder"));
  nn::save_component(dir / "text_encoder", *te, te_json, "model");

  torch::manual_seed(c.seed + 1);
  const auto un_json = unet_config(c);
  models::UNet2DConditionModel unet(models::UNetConfig::from_json(un_json, "[world] unet"));
  models::save_unet(dir / "unet", unet);
}

void pretrain_base_model(const PretrainOptions& o) {
  if (!fs::is_directory(o.world / "base"))
    throw UsageError(cat("[world] ", o.world.string(), " has no base/ folder: build a world first "
                         "(dro world build --out ", o.world.string(), ")"));
  if (!o.resume) write_base_model(o.out, o.model);
  const fs::path logdir = o.logdir.empty() ? fs::path(o.out.string() + ".run") : o.logdir;
  train::TrainConfig cfg;
  cfg.pretrained_model_name_or_path = o.out.string();
  cfg.train_dataset = (o.world / "base").string();
  cfg.logdir = logdir.string();
  cfg.seed = static_cast<int64_t>(o.model.seed);
  cfg.resolution = o.model.image_size;
  cfg.random_flip = false;  // flips contradict "left" / "right" captions
  cfg.random_drop_prompt_probability = o.prompt_dropout;
  cfg.dataloader_num_workers = o.dataloader_workers;
  cfg.objective = "sft";
  cfg.batch_size = o.batch_size;
  cfg.num_steps = o.steps;
  cfg.gradient_accumulation_steps = 1;
  cfg.learning_rate = o.learning_rate;
  cfg.lr_scheduler = o.lr_scheduler;
  cfg.lr_warmup_steps = o.warmup_steps;
  cfg.mixed_precision = "no";
  cfg.use_ema = true;
  cfg.offload_ema = false;
  cfg.ema_decay = o.ema_decay;
  cfg.checkpointing_steps = o.checkpointing_steps;
  cfg.log_every = 10;
  cfg.resume = o.resume;
  cfg.quiet = o.quiet;
  cfg.device = "auto";
  train::Trainer trainer(cfg);
  trainer.run();
  const fs::path ckpt = logdir / cat("ckpt-", trainer.step()) / "unet";
  if (!fs::exists(ckpt)) throw IoError(cat("[world] expected checkpoint ", ckpt.string(), " after training"));
  auto unet = models::load_unet(ckpt);
  models::save_unet(o.out / "unet", unet);
  std::cerr << "[world] base model written to " << o.out.string() << " (EMA weights of "
            << trainer.step() << " steps; run folder " << logdir.string() << ")\n";
}

}  // namespace dro::world
