// Supervised fine-tuning (plain denoising): loss = mean over the batch of mean((model(x_t, t, c) -
// eps)^2) on expert data with fresh noise and uniform timesteps. Used to pretrain the demo's base
// model and as the SFT baseline; needs neither the replay buffer nor the reference model.
#pragma once

#include "dro/train/objective.h"

namespace dro::train {

class SftObjective : public Objective {
 public:
  std::string name() const override { return "sft"; }
  bool needs_policy_samples() const override { return false; }
  bool needs_reference() const override { return false; }
  ObjectiveOutput compute(const Denoiser& trained, const Denoiser& reference,
                          const ObjectiveBatch& batch) const override;
};

}  // namespace dro::train
