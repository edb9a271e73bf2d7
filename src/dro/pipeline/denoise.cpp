#include "dro/pipeline/denoise.h"

#include "dro/core/error.h"
#include "dro/core/progress.h"
#include "dro/sched/ddim.h"
#include "dro/sched/ddpm.h"

namespace dro::pipeline {

torch::Tensor denoise(models::UNet2DConditionModel& unet, sched::Scheduler& scheduler,
                      torch::Tensor latents, const Conditioning& cond, const DenoiseOptions& o) {
  torch::NoGradGuard no_grad;
  const int64_t B = latents.size(0);
  const bool cfg = o.guidance_scale > 1.0;
  const int64_t rows = cond.embeds.size(0);
  if (rows != (cfg ? 2 * B : B))
    throw UsageError(cat("[sample] conditioning has ", rows, " rows for ", B, " latents",
                         cfg ? " with guidance (expected 2B: unconditional first)" : ""));
  const int64_t N = scheduler.num_inference_steps();
  if (N == 0) throw UsageError("[sample] the scheduler has no timesteps (set_timesteps first)");
  auto* ddpm = dynamic_cast<sched::DdpmScheduler*>(&scheduler);
  auto* ddim = dynamic_cast<sched::DdimScheduler*>(&scheduler);
  const bool per_sample_noise = (ddpm || (ddim && ddim->eta() > 0)) && o.per_sample_generators &&
                                !o.per_sample_generators->empty();
  const auto dtype = latents.scalar_type();
  for (int64_t k = 0; k < N; ++k) {
    torch::Tensor t = scheduler.timestep(k);  // 0-dim or [B]
    torch::Tensor x_in = scheduler.scale_model_input(latents, k);
    torch::Tensor t_in = t.dim() == 0 ? t : (cfg ? torch::cat({t, t}) : t);
    torch::Tensor model_in = cfg ? torch::cat({x_in, x_in}) : x_in;
    torch::Tensor eps = unet->forward(model_in, t_in.to(latents.device()), cond.embeds,
                                      cond.text_embeds, cond.time_ids);
    if (cfg) {
      auto parts = eps.chunk(2);
      eps = parts[0] + o.guidance_scale * (parts[1] - parts[0]);
    }
    eps = eps.to(dtype);
    if (o.hook) o.hook(k, t.dim() == 0 ? t.expand({B}) : t, latents, eps);
    if (per_sample_noise) {
      // Each sample's step noise from its own generator: an image does not depend on its batch.
      std::vector<torch::Tensor> noise;
      for (int64_t b = 0; b < B; ++b)
        noise.push_back(at::randn(latents.sizes().slice(1), (*o.per_sample_generators)[b],
                                  torch::TensorOptions().dtype(torch::kFloat32)));
      const auto n = torch::stack(noise).to(latents.device(), dtype);
      latents = ddpm ? ddpm->step_with_noise(eps, k, latents, n) : ddim->step_with_noise(eps, k, latents, n);
    } else {
      latents = scheduler.step(eps, k, latents, o.generator);
    }
    if (o.progress) o.progress->tick();
  }
  return latents;
}

}  // namespace dro::pipeline
