// Diffusion-DRO's thresholded ranking loss (train.py of the official code):
// per sample, L(model) = mean over C,H,W of (model(x_t, t, c) - target)^2 for the expert branch
// (target: the forward-diffusion noise) and the policy branch (target: the stored policy
// prediction); diff = (L_exp - L_exp_ref) - (L_pol - L_pol_ref); loss = mean(relu(diff + margin)).
#pragma once

#include "dro/train/objective.h"

namespace dro::train {

class DroObjective : public Objective {
 public:
  explicit DroObjective(double margin) : margin_(margin) {}
  std::string name() const override { return "dro"; }
  // Both branches go through each denoiser as one batch of 2b, as the official code does.
  ObjectiveOutput compute(const Denoiser& trained, const Denoiser& reference,
                          const ObjectiveBatch& batch) const override;

 private:
  double margin_;
};

}  // namespace dro::train
