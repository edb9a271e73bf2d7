#include "dro/train/objectives/dpo.h"

namespace dro::train {

ObjectiveOutput DpoObjective::compute(const Denoiser& trained, const Denoiser& reference,
                                      const ObjectiveBatch& b) const {
  // Winners first, then losers: [2b, ...], one pass through each denoiser.
  const BothBranches in = both_branches(b);
  const auto &xt = in.xt, &target = in.target, &t = in.t, &c = in.c, &te = in.text_embeds, &ids = in.time_ids;
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = per_sample_mse(reference(xt, t, c, te, ids), target);
  }
  const auto model = per_sample_mse(trained(xt, t, c, te, ids), target);
  const auto m = model.chunk(2), r = ref.chunk(2);
  const auto model_diff = m[0] - m[1];
  const auto ref_diff = r[0] - r[1];
  const auto inside = -0.5 * beta_ * (model_diff - ref_diff);
  ObjectiveOutput out;
  out.loss = -torch::log_sigmoid(inside).mean();
  out.stats = {{"implicit_acc", (inside.detach() > 0).to(torch::kFloat)},
               {"model_mse_w", m[0].detach()},
               {"model_mse_l", m[1].detach()},
               {"ref_mse_w", r[0]},
               {"ref_mse_l", r[1]}};
  return out;
}

}  // namespace dro::train
