// Training objectives behind one small interface. An objective sees the trained and the frozen
// reference denoisers and one batch drawn from the replay buffer (with the expert branch already
// noised), and returns the scalar loss to back-propagate plus per-sample diagnostics.
// Diffusion-DRO lives in objectives/dro.cpp; SFT, Diffusion-DPO and Diffusion-KTO go beside it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace dro::train {

// eps_hat = denoiser(x_t [N,C,H,W], t [N], c [N,S,D], text_embeds [N,P] or {}, time_ids [N,6] or {})
using Denoiser = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&,
                                             const torch::Tensor&, const torch::Tensor&,
                                             const torch::Tensor&)>;

// For the preference objectives the expert branch carries the winners (DPO) or the labelled
// images (KTO), the policy branch the losers (DPO); see objectives/dpo.h and kto.h.
struct ObjectiveBatch {
  torch::Tensor t;             // [b]
  torch::Tensor c;             // [b, S, D]
  torch::Tensor xt_expert;     // [b, C, H, W] forward-diffused expert latent
  torch::Tensor eps_expert;    // [b, C, H, W] the noise used for it (its target)
  torch::Tensor xt_policy;     // [b, C, H, W] policy state from the buffer
  torch::Tensor eps_policy;    // [b, C, H, W] the policy's stored prediction (its target)
  torch::Tensor text_embeds;   // [b, P] (SDXL) or undefined
  torch::Tensor time_ids;      // [b, 6] (SDXL) or undefined
  torch::Tensor labels;        // [b] +1 desirable / -1 undesirable (KTO) or undefined
  // Mean of a scalar over every rank of a data-parallel run (KTO's reference point); identity
  // when unset.
  std::function<torch::Tensor(const torch::Tensor&)> mean_over_ranks;
};

// Both branches as one batch of 2b rows (expert / winner rows first), so each denoiser runs once.
struct BothBranches {
  torch::Tensor xt, target, t, c, text_embeds, time_ids;
};
inline BothBranches both_branches(const ObjectiveBatch& b) {
  auto twice = [](const torch::Tensor& x) { return x.defined() ? torch::cat({x, x}) : torch::Tensor(); };
  BothBranches o;
  o.xt = torch::cat({b.xt_expert, b.xt_policy});
  o.target = torch::cat({b.eps_expert, b.eps_policy}).to(o.xt.scalar_type());
  o.t = twice(b.t);
  o.c = twice(b.c);
  o.text_embeds = twice(b.text_embeds);
  o.time_ids = twice(b.time_ids);
  return o;
}

// Per-sample mean over C, H, W of (pred - target)^2 -> [N], in the target's dtype.
inline torch::Tensor per_sample_mse(const torch::Tensor& pred, const torch::Tensor& target) {
  return (pred.to(target.scalar_type()) - target).square().mean({1, 2, 3});
}

struct ObjectiveOutput {
  torch::Tensor loss;                          // scalar, differentiable w.r.t. the trained model
  std::map<std::string, torch::Tensor> stats;  // detached per-sample values, e.g. "diff" [b]
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  // False for objectives that learn from data alone (no replay buffer, no buffer filler).
  virtual bool needs_policy_samples() const { return true; }
  // False for objectives without a frozen reference model (SFT).
  virtual bool needs_reference() const { return true; }
  virtual ObjectiveOutput compute(const Denoiser& trained, const Denoiser& reference,
                                  const ObjectiveBatch& batch) const = 0;
};

struct TrainConfig;

// The objective cfg.objective names, with its options: dro (--margin), sft, dpo (--beta-dpo),
// kto (--beta-kto, --lambda-desirable, --lambda-undesirable). UsageError for another name.
std::unique_ptr<Objective> make_objective(const TrainConfig& cfg);
// The objectives make_objective knows, in --help order.
const std::vector<std::string>& objective_names();

}  // namespace dro::train
