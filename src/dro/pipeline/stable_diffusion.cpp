#include "dro/pipeline/stable_diffusion.h"

#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/sched/scheduler.h"

namespace dro::pipeline {

StableDiffusion StableDiffusion::load(const LoadSpec& spec) {
  StableDiffusion sd;
  sd.folder = io::ModelFolder::open(spec.model);
  sd.device = spec.device;
  sd.dtype = spec.dtype;
  nn::LoadOptions opts;
  opts.device = spec.device;
  opts.dtype = spec.dtype;
  sd.prompts = PromptEncoder::load(sd.folder, opts, spec.variant);
  const auto unet_dir = spec.unet.empty() ? sd.folder.component("unet").dir : spec.unet;
  sd.unet = models::load_unet(unet_dir, opts, spec.unet.empty() ? spec.variant : spec.unet_variant);
  sd.unet->eval();
  models::merge_lora_files(*sd.unet, spec.loras);
  sd.pixel_space = !sd.folder.has("vae") && spec.vae.empty();
  if (!sd.pixel_space) {
    sd.vae_dir = spec.vae.empty() ? sd.folder.component("vae").dir : spec.vae;
    if (!spec.vae.empty() && !std::filesystem::exists(spec.vae / "config.json"))
      throw UsageError(cat("[model] --vae ", spec.vae.string(), ": no config.json (expected a diffusers AutoencoderKL folder)"));
  }
  if (spec.load_vae && !sd.pixel_space) {
    sd.vae = models::load_vae(sd.vae_dir, opts, spec.vae.empty() ? spec.variant : "");
    sd.vae->eval();
  }
  sd.scheduler_config = sched::SchedulerConfig::load(sd.folder.component("scheduler").dir);
  const auto& uc = sd.unet->config();
  if (uc.cross_attention_dim[0] != sd.prompts.embed_dim())
    throw IoError(cat("[model] ", unet_dir.string(), ": cross_attention_dim ", uc.cross_attention_dim[0],
                      " does not match the text encoders' width ", sd.prompts.embed_dim()));
  if (sd.sdxl() != sd.unet->needs_added_conditions())
    throw IoError(cat("[model] ", spec.model.string(), ": the UNet ",
                      sd.unet->needs_added_conditions() ? "needs" : "does not take",
                      " SDXL added conditions but the model has ", sd.sdxl() ? "two" : "one",
                      " text encoder(s)"));
  return sd;
}

int64_t StableDiffusion::vae_scale_factor() const {
  if (pixel_space) return 1;
  if (vae) return vae->config().scale_factor();
  return models::VaeConfig::load(vae_dir).scale_factor();
}

Conditioning make_conditioning(StableDiffusion& sd, const std::vector<std::string>& prompts,
                               const std::vector<std::string>& negative_prompts,
                               double guidance_scale, const GenerateOptions& o) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  const bool cfg = guidance_scale > 1.0;
  PromptEmbeds pos = sd.prompts.encode(prompts);
  Conditioning c;
  if (cfg) {
    bool all_empty = true;
    for (const auto& n : negative_prompts) all_empty = all_empty && n.empty();
    PromptEmbeds neg = (all_empty && sd.prompts.force_zeros_for_empty_prompt())
                           ? sd.prompts.zeros(B)
                           : sd.prompts.encode(negative_prompts.empty()
                                                   ? std::vector<std::string>(B, "")
                                                   : negative_prompts);
    c.embeds = torch::cat({neg.embeds, pos.embeds});
    if (pos.pooled.defined()) c.text_embeds = torch::cat({neg.pooled, pos.pooled});
  } else {
    c.embeds = pos.embeds;
    c.text_embeds = pos.pooled;
  }
  if (sd.sdxl()) {
    const int64_t H = o.height ? o.height : sd.default_size();
    const int64_t W = o.width ? o.width : sd.default_size();
    const double oh = o.original_height ? o.original_height : H;
    const double ow = o.original_width ? o.original_width : W;
    auto ids = torch::tensor({oh, ow, double(o.crop_top), double(o.crop_left), double(H), double(W)},
                             torch::TensorOptions().dtype(torch::kFloat64))
                   .to(sd.device, sd.dtype);
    c.time_ids = ids.unsqueeze(0).expand({c.embeds.size(0), 6}).contiguous();  // [B or 2B, 6]
  }
  return c;
}

torch::Tensor decode_latents(StableDiffusion& sd, const torch::Tensor& latents) {
  torch::NoGradGuard no_grad;
  if (sd.pixel_space) return (latents.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1);
  if (!sd.vae) throw UsageError("[sample] no VAE loaded: cannot decode images");
  auto z = sd.vae->unscale_latents(latents);
  const bool upcast = sd.dtype == torch::kFloat16 && sd.vae->force_upcast();
  if (upcast) {
    sd.vae->to(torch::kFloat32);
    z = z.to(torch::kFloat32);
  }
  auto img = sd.vae->decode(z.to(upcast ? torch::kFloat32 : sd.dtype));
  if (upcast) sd.vae->to(sd.dtype);
  return (img.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1);
}

GenerateResult generate(StableDiffusion& sd, const std::vector<ImageRequest>& batch,
                        const GenerateOptions& o, const TrajectoryHook& hook, Progress* progress) {
  if (batch.empty()) throw UsageError("[sample] empty batch");
  const int64_t H = o.height ? o.height : sd.default_size();
  const int64_t W = o.width ? o.width : sd.default_size();
  const int64_t f = sd.vae_scale_factor();
  if (H % f != 0 || W % f != 0)
    throw UsageError(cat("[sample] --height/--width must be multiples of ", f, " (the VAE scale), got ",
                         H, "x", W));
  const int64_t C = sd.unet->config().in_channels;
  const int64_t h = H / f, w = W / f;

  std::vector<std::string> prompts, negatives;
  std::vector<at::Generator> gens;
  std::vector<torch::Tensor> noise;
  for (const auto& r : batch) {
    prompts.push_back(r.prompt);
    negatives.push_back(r.negative_prompt);
    gens.push_back(make_generator(r.seed));
    if (r.init_latents.defined()) {
      if (r.init_latents.sizes() != at::IntArrayRef({C, h, w}))
        throw UsageError(cat("[sample] initial latents have shape ", r.init_latents.sizes(),
                             ", expected [", C, ", ", h, ", ", w, "]"));
      noise.push_back(r.init_latents.to(torch::kFloat32));
    } else {
      noise.push_back(at::randn({C, h, w}, gens.back(), torch::TensorOptions().dtype(torch::kFloat32)));
    }
  }
  auto scheduler = sched::make_scheduler(o.scheduler, sd.scheduler_config, sched::SchedulerOptions{o.eta});
  scheduler->set_timesteps(o.steps);
  auto latents = (torch::stack(noise) * scheduler->init_noise_sigma()).to(sd.device, sd.dtype);
  auto cond = make_conditioning(sd, prompts, negatives, o.guidance_scale, o);
  DenoiseOptions d;
  d.guidance_scale = o.guidance_scale;
  d.hook = hook;
  d.progress = progress;
  d.per_sample_generators = &gens;
  GenerateResult r;
  {
    torch::InferenceMode guard;
    r.latents = denoise(sd.unet, *scheduler, latents, cond, d);
    if (sd.vae || sd.pixel_space) r.images = decode_latents(sd, r.latents);
  }
  return r;
}

}  // namespace dro::pipeline
