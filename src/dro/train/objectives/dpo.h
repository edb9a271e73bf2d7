// Diffusion-DPO (Wallace et al.; the official train script's loss): for pairs (winner w, loser l)
// sharing timestep and noise, e(x) = mean over C,H,W of (eps_hat(x_t, t, c) - eps)^2,
//   model_diff = e_theta(w) - e_theta(l),   ref_diff = e_ref(w) - e_ref(l)   (no gradient),
//   inside     = -0.5 * beta * (model_diff - ref_diff),   loss = -mean(log sigmoid(inside)).
// The batch's expert branch holds the noised winners, the policy branch the noised losers, both
// with the shared noise as target. Stats: implicit accuracy (inside > 0) and the four MSEs.
#pragma once

#include "dro/train/objective.h"

namespace dro::train {

class DpoObjective : public Objective {
 public:
  explicit DpoObjective(double beta) : beta_(beta) {}
  std::string name() const override { return "dpo"; }
  bool needs_policy_samples() const override { return false; }
  ObjectiveOutput compute(const Denoiser& trained, const Denoiser& reference,
                          const ObjectiveBatch& batch) const override;

 private:
  double beta_;
};

}  // namespace dro::train
