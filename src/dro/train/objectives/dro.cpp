#include "dro/train/objectives/dro.h"


namespace dro::train {

ObjectiveOutput DroObjective::compute(const Denoiser& trained, const Denoiser& reference,
                                      const ObjectiveBatch& b) const {
  // Expert rows first, then policy rows: [2b, ...].
  const BothBranches in = both_branches(b);
  const auto &xt = in.xt, &target = in.target, &t = in.t, &c = in.c, &te = in.text_embeds, &ids = in.time_ids;

  torch::Tensor losses0;  // [2b]
  {
    torch::NoGradGuard no_grad;
    const auto pred_ref = reference(xt, t, c, te, ids);
    losses0 = (pred_ref.to(target.scalar_type()) - target).square().mean({1, 2, 3});
  }
  const auto pred = trained(xt, t, c, te, ids);
  const auto losses = (pred.to(target.scalar_type()) - target).square().mean({1, 2, 3});  // [2b]
  const auto l0 = losses0.chunk(2);
  const auto l = losses.chunk(2);
  const auto expert_diff = l[0] - l0[0];
  const auto policy_diff = l[1] - l0[1];
  const auto diff = expert_diff - policy_diff;  // [b]
  ObjectiveOutput out;
  out.loss = torch::relu(diff + margin_).mean();
  out.stats = {{"diff", diff.detach()},
               {"expert", l[0].detach()},
               {"policy", l[1].detach()},
               {"expert0", l0[0]},
               {"policy0", l0[1]},
               {"expert_diff", expert_diff.detach()},
               {"policy_diff", policy_diff.detach()},
               {"active", (diff.detach() + margin_ > 0).to(torch::kFloat)}};
  return out;
}

}  // namespace dro::train
