#include "dro/train/objectives/dpo.h"

namespace dro::train {

namespace {

torch::Tensor mse(const torch::Tensor& pred, const torch::Tensor& target) {
  return (pred.to(target.scalar_type()) - target).square().mean({1, 2, 3});
}

}  // namespace

ObjectiveOutput DpoObjective::compute(const Denoiser& trained, const Denoiser& reference,
                                      const ObjectiveBatch& b) const {
  // Winners first, then losers: [2b, ...], one pass through each denoiser.
  const auto xt = torch::cat({b.xt_expert, b.xt_policy});
  const auto target = torch::cat({b.eps_expert, b.eps_policy}).to(xt.scalar_type());
  const auto t = torch::cat({b.t, b.t});
  const auto c = torch::cat({b.c, b.c});
  const auto te = b.text_embeds.defined() ? torch::cat({b.text_embeds, b.text_embeds}) : torch::Tensor();
  const auto ids = b.time_ids.defined() ? torch::cat({b.time_ids, b.time_ids}) : torch::Tensor();
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = mse(reference(xt, t, c, te, ids), target);
  }
  const auto model = mse(trained(xt, t, c, te, ids), target);
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
