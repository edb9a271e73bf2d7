#include "dro/train/objectives/kto.h"

namespace dro::train {

ObjectiveOutput KtoObjective::compute(const Denoiser& trained, const Denoiser& reference,
                                      const ObjectiveBatch& b) const {
  const auto target = b.eps_expert.to(b.xt_expert.scalar_type());
  auto mse = [&](const torch::Tensor& pred) { return per_sample_mse(pred, target); };
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = mse(reference(b.xt_expert, b.t, b.c, b.text_embeds, b.time_ids));
  }
  const auto model = mse(trained(b.xt_expert, b.t, b.c, b.text_embeds, b.time_ids));
  const auto g = ref - model;  // the implicit reward
  torch::Tensor z;
  {
    torch::NoGradGuard no_grad;
    z = g.detach().mean();
    if (b.mean_over_ranks) z = b.mean_over_ranks(z);
    z = z.clamp_min(0);
  }
  const auto y = b.labels.to(g.scalar_type());
  const auto h = torch::sigmoid(y * beta_ * (g - z));
  const auto lambda = torch::where(y > 0, torch::full_like(y, lambda_d_), torch::full_like(y, lambda_u_));
  ObjectiveOutput out;
  out.loss = (lambda * (1 - h)).mean();
  out.stats = {{"reward", g.detach()}, {"utility", h.detach()}, {"model_mse", model.detach()}, {"ref_mse", ref},
               {"reference_point", z.expand_as(g)}};
  return out;
}

}  // namespace dro::train
