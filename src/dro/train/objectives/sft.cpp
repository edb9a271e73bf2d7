#include "dro/train/objectives/sft.h"

namespace dro::train {

ObjectiveOutput SftObjective::compute(const Denoiser& trained, const Denoiser&,
                                      const ObjectiveBatch& b) const {
  const auto pred = trained(b.xt_expert, b.t, b.c, b.text_embeds, b.time_ids);
  const auto per_sample = (pred.to(b.eps_expert.scalar_type()) - b.eps_expert).square().mean({1, 2, 3});
  ObjectiveOutput out;
  out.loss = per_sample.mean();
  out.stats = {{"expert", per_sample.detach()}};
  return out;
}

}  // namespace dro::train
