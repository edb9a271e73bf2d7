// Diffusion-KTO (Li et al.): per image x with label y (+1 desirable, -1 undesirable), its own
// timestep and noise, e(x) = mean over C,H,W of (eps_hat - eps)^2,
//   g = e_ref(x) - e_theta(x)                 (implicit reward),
//   z = max(0, mean of g over the batch and every rank), detached   (reference point),
//   h = sigmoid(y * beta * (g - z)),   loss = mean(lambda_y * (1 - h)).
// The batch's expert branch holds the images, `labels` the y. Stats: g, h, the two MSEs.
#pragma once

#include "dro/train/objective.h"

namespace dro::train {

class KtoObjective : public Objective {
 public:
  KtoObjective(double beta, double lambda_desirable, double lambda_undesirable)
      : beta_(beta), lambda_d_(lambda_desirable), lambda_u_(lambda_undesirable) {}
  std::string name() const override { return "kto"; }
  bool needs_policy_samples() const override { return false; }
  ObjectiveOutput compute(const Denoiser& trained, const Denoiser& reference,
                          const ObjectiveBatch& batch) const override;

 private:
  double beta_, lambda_d_, lambda_u_;
};

}  // namespace dro::train
