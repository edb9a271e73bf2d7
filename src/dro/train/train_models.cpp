#include "dro/train/train_models.h"

#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/train/train_config.h"

namespace dro::train {
namespace fs = std::filesystem;

namespace {

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

models::UNet2DConditionModel load_frozen_unet(const fs::path& dir, const nn::LoadOptions& lo,
                                              const std::string& variant) {
  auto u = models::load_unet(dir, lo, variant);
  u->eval();
  for (auto& p : u->parameters()) p.set_requires_grad(false);
  return u;
}

}  // namespace

TrainModels TrainModels::load(const TrainConfig& cfg, const Precision& precision, const torch::Device& device,
                              bool reference, bool policy_samples) {
  TrainModels m;
  m.folder = io::ModelFolder::open(cfg.pretrained_model_name_or_path);
  nn::LoadOptions frozen;
  frozen.device = device;
  frozen.dtype = precision.frozen;
  nn::LoadOptions trained = frozen;
  trained.dtype = precision.trained;
  m.prompts = pipeline::PromptEncoder::load(m.folder, frozen, cfg.variant);
  if (!cfg.vae.empty()) {
    if (!fs::exists(fs::path(cfg.vae) / "config.json"))
      throw UsageError(cat("[train] --vae ", cfg.vae, ": no config.json (expected a diffusers AutoencoderKL folder)"));
    m.vae = models::load_vae(cfg.vae, frozen, "");
  } else if (m.folder.has("vae")) {
    m.vae = models::load_vae(m.folder.component("vae").dir, frozen, cfg.variant);
  }
  if (m.vae) m.vae->eval();
  const fs::path unet_dir = cfg.unet.empty() ? m.folder.component("unet").dir : fs::path(cfg.unet);
  const std::string unet_variant = cfg.unet.empty() ? cfg.variant : "";
  if (reference && (!cfg.lora() || !cfg.reference_unet.empty())) {  // LoRA: the base with adapters off
    const bool own_ref = !cfg.reference_unet.empty();
    m.reference = load_frozen_unet(own_ref ? fs::path(cfg.reference_unet) : unet_dir, frozen,
                                   own_ref ? "" : unet_variant);
  } else if (!cfg.reference_unet.empty()) {
    throw UsageError(cat("[train] --reference-unet: the '", cfg.objective, "' objective uses no reference model"));
  }
  m.unet = models::load_unet(unet_dir, cfg.lora() ? frozen : trained, unet_variant);
  m.unet->train();
  m.unet->set_gradient_checkpointing(cfg.gradient_checkpointing);
  if (cfg.lora()) {
    for (auto& p : m.unet->parameters()) p.set_requires_grad(false);
    models::LoraOptions lo;
    lo.rank = cfg.lora_rank;
    lo.alpha = cfg.lora_alpha;
    lo.dropout = cfg.lora_dropout;
    lo.targets = models::parse_lora_targets(cfg.lora_targets);
    m.lora = std::make_shared<models::UnetLora>(*m.unet, lo, precision.trained, device, derive_seed(cfg.seed, "lora"));
  }
  if (m.reference && m.reference->config().raw != m.unet->config().raw) {
    // Same architecture is required: the objective compares the two predictions element-wise.
    const auto& a = m.reference->config();
    const auto& b = m.unet->config();
    if (a.in_channels != b.in_channels || a.out_channels != b.out_channels ||
        a.cross_attention_dim != b.cross_attention_dim)
      throw UsageError(cat("[train] --reference-unet ", cfg.reference_unet, ": its in/out channels or "
                           "cross_attention_dim differ from the trained UNet's"));
  }
  // With buffer_update_steps dividing gradient_accumulation_steps the policy is refreshed right
  // after every optimiser step, so it always equals the trained weights: sample with those (no
  // third copy in memory, identical results in fp32).
  const bool shared = !policy_samples || cfg.gradient_accumulation_steps % cfg.buffer_update_steps == 0;
  if (!shared && m.lora) m.lora->add_policy_slot();
  if (!shared && !m.lora) m.policy_copy = load_frozen_unet(unet_dir, frozen, unet_variant);
  m.scheduler_config = sched::SchedulerConfig::load(m.folder.component("scheduler").dir);
  // The DRO targets are noise predictions (the stored eps_pred and the expert noise).
  if (m.scheduler_config.prediction_type != "epsilon")
    throw UsageError(cat("[train] ", cfg.pretrained_model_name_or_path, "/scheduler: prediction_type '",
                         m.scheduler_config.prediction_type, "' is not supported for training (only 'epsilon' ",
                         "models, e.g. SD1.5 and SDXL base)"));
  m.noise = sched::NoiseSchedule::from_config(m.scheduler_config);
  m.latent_channels = m.unet->config().in_channels;
  const int64_t f = m.vae ? m.vae->config().scale_factor() : 1;
  if (cfg.resolution % f != 0)
    throw UsageError(cat("[train] --resolution ", cfg.resolution, " must be a multiple of the VAE scale ", f));
  if (m.vae && m.vae->config().latent_channels != m.latent_channels)
    throw UsageError(cat("[train] the VAE has ", m.vae->config().latent_channels, " latent channels, the UNet ",
                         m.latent_channels, " input channels", cfg.vae.empty() ? "" : " (--vae from another model?)"));
  m.latent_size = cfg.resolution / f;
  if (m.prompts->sdxl() != m.unet->needs_added_conditions())
    throw IoError(cat("[train] ", m.folder.root.string(), ": UNet and text encoders disagree on SDXL"));
  return m;
}

ModelSizes TrainModels::sizes() const {
  ModelSizes s;
  s.unet = count_parameters(*unet);
  s.lora = lora ? lora->parameter_count() : 0;
  s.vae = vae ? count_parameters(*vae) : 0;
  s.text_encoders = prompts->parameter_count();
  s.reference = static_cast<bool>(reference);
  s.separate_policy = static_cast<bool>(policy_copy) || (lora && lora->has_policy_slot());
  return s;
}

}  // namespace dro::train
