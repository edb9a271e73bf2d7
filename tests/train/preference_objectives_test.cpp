// Diffusion-DPO and Diffusion-KTO losses against closed-form values on hand-made inputs, with the
// signs checked: improving on the winner (DPO) or on a desirable image (KTO) lowers the loss.
#include <gtest/gtest.h>

#include <cmath>

#include "dro/train/objectives/dpo.h"
#include "dro/train/objectives/kto.h"

namespace dro::train {
namespace {

// eps_hat = scale * x_t, a 1x1x1 "image" per row, noise 0: e(x) = (scale * x)^2.
Denoiser scaled(const torch::Tensor& scale) {
  return [scale](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                 const torch::Tensor&) { return x * scale; };
}

ObjectiveBatch pair_batch(double winner, double loser) {
  ObjectiveBatch b;
  b.t = torch::tensor({10});
  b.c = torch::zeros({1, 1, 1});
  b.xt_expert = torch::full({1, 1, 1, 1}, winner, torch::kDouble);
  b.xt_policy = torch::full({1, 1, 1, 1}, loser, torch::kDouble);
  b.eps_expert = torch::zeros({1, 1, 1, 1}, torch::kDouble);
  b.eps_policy = b.eps_expert;
  return b;
}

TEST(DpoObjective, ClosedFormLossAndAccuracy) {
  // e_theta(w) = a^2, e_theta(l) = 4 a^2, e_ref = r^2, 4 r^2: inside = 1.5 beta (a^2 - r^2).
  const auto b = pair_batch(1.0, 2.0);
  const auto ref = scaled(torch::tensor(1.0, torch::kDouble));
  auto same = DpoObjective(1.0).compute(scaled(torch::tensor(1.0, torch::kDouble)), ref, b);
  EXPECT_NEAR(same.loss.item<double>(), std::log(2.0), 1e-12);
  EXPECT_EQ(same.stats.at("implicit_acc").item<float>(), 0.f);
  auto sharper = DpoObjective(1.0).compute(scaled(torch::tensor(std::sqrt(2.0), torch::kDouble)), ref, b);
  EXPECT_NEAR(sharper.loss.item<double>(), std::log1p(std::exp(-1.5)), 1e-12);
  EXPECT_EQ(sharper.stats.at("implicit_acc").item<float>(), 1.f);
  EXPECT_NEAR(sharper.stats.at("model_mse_w").item<double>(), 2.0, 1e-12);
  EXPECT_NEAR(sharper.stats.at("model_mse_l").item<double>(), 8.0, 1e-12);
  EXPECT_NEAR(sharper.stats.at("ref_mse_l").item<double>(), 4.0, 1e-12);
  // beta scales the inside term: 5000 as the official default saturates.
  auto big = DpoObjective(5000).compute(scaled(torch::tensor(std::sqrt(1.001), torch::kDouble)), ref, b);
  EXPECT_NEAR(big.loss.item<double>(), std::log1p(std::exp(-1.5 * 5000 * 0.001)), 1e-9);
}

// Winner rows have x_t = 1, loser rows x_t = 2, noise 0: a denoiser answering `w` on winners and
// `l` on losers has errors w^2 and l^2.
Denoiser per_branch(const torch::Tensor& w, const torch::Tensor& l) {
  return [w, l](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                const torch::Tensor&) { return torch::where(x == 1, w * torch::ones_like(x), l * torch::ones_like(x)); };
}

TEST(DpoObjective, ImprovingOnTheWinnerLowersTheLoss) {
  const auto b = pair_batch(1.0, 2.0);
  auto d = [](double v) { return torch::tensor(v, torch::kDouble); };
  const auto ref = per_branch(d(1), d(1));  // ref_diff = 0
  const DpoObjective dpo(4.0);
  // Better on the winner: model_diff = 0.25 - 1, inside = 0.375 beta.
  const double better_w = dpo.compute(per_branch(d(0.5), d(1)), ref, b).loss.item<double>();
  EXPECT_NEAR(better_w, std::log1p(std::exp(-1.5)), 1e-12);
  EXPECT_LT(better_w, std::log(2.0));
  // Better on the loser: the mirror image, a higher loss.
  const double better_l = dpo.compute(per_branch(d(1), d(0.5)), ref, b).loss.item<double>();
  EXPECT_NEAR(better_l, std::log1p(std::exp(1.5)), 1e-12);
  // The gradient pushes the winner's error down and the loser's up.
  auto w = torch::tensor(1.0, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  auto l = torch::tensor(1.0, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  dpo.compute(per_branch(w, l), ref, b).loss.backward();
  EXPECT_GT(w.grad().item<double>(), 0.0);  // descending lowers w, the winner's error
  EXPECT_LT(l.grad().item<double>(), 0.0);
  EXPECT_NEAR(w.grad().item<double>(), -l.grad().item<double>(), 1e-12);
}

ObjectiveBatch labelled_batch() {
  ObjectiveBatch b;
  b.t = torch::tensor({10, 20});
  b.c = torch::zeros({2, 1, 1});
  b.xt_expert = torch::ones({2, 1, 1, 1}, torch::kDouble);
  b.eps_expert = torch::zeros({2, 1, 1, 1}, torch::kDouble);
  b.labels = torch::tensor({1.0, -1.0}, torch::kDouble);
  return b;
}

TEST(KtoObjective, ClosedFormLossWithTheReferencePoint) {
  // e_theta = a^2 = 0.5, e_ref = 1: g = 0.5 for both images.
  const auto trained = scaled(torch::tensor(std::sqrt(0.5), torch::kDouble));
  const auto ref = scaled(torch::tensor(1.0, torch::kDouble));
  auto b = labelled_batch();
  // z = mean g = 0.5: h = sigmoid(0) for both; lambda_d = 1, lambda_u = 2.
  auto out = KtoObjective(2.0, 1.0, 2.0).compute(trained, ref, b);
  EXPECT_NEAR(out.loss.item<double>(), (1 * 0.5 + 2 * 0.5) / 2, 1e-12);
  EXPECT_NEAR(out.stats.at("reference_point")[0].item<double>(), 0.5, 1e-12);
  // Another rank's rewards pull the mean below zero: z = max(0, -1) = 0.
  b.mean_over_ranks = [](const torch::Tensor& v) { return v * 0 - 1; };
  out = KtoObjective(2.0, 1.0, 2.0).compute(trained, ref, b);
  const double hd = 1 / (1 + std::exp(-1.0)), hu = 1 / (1 + std::exp(1.0));
  EXPECT_NEAR(out.loss.item<double>(), (1 * (1 - hd) + 2 * (1 - hu)) / 2, 1e-12);
  EXPECT_NEAR(out.stats.at("utility")[0].item<double>(), hd, 1e-12);
  EXPECT_NEAR(out.stats.at("reward")[1].item<double>(), 0.5, 1e-12);
}

TEST(KtoObjective, GradientRaisesTheDesirableRewardAndLowersTheUndesirable) {
  // One desirable image: the loss falls as e_theta falls (g rises); one undesirable: as it rises.
  for (double label : {1.0, -1.0}) {
    ObjectiveBatch b = labelled_batch();
    b.xt_expert = torch::ones({1, 1, 1, 1}, torch::kDouble);
    b.eps_expert = torch::zeros({1, 1, 1, 1}, torch::kDouble);
    b.t = torch::tensor({10});
    b.c = torch::zeros({1, 1, 1});
    b.labels = torch::tensor({label}, torch::kDouble);
    b.mean_over_ranks = [](const torch::Tensor& v) { return v * 0; };  // z = 0
    auto a = torch::tensor(0.8, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
    auto out = KtoObjective(1.0, 1.0, 1.0).compute(scaled(a), scaled(torch::tensor(0.8, torch::kDouble)), b);
    out.loss.backward();
    // d e_theta / d a = 2 a > 0: desirable wants e_theta down (grad > 0 on a), undesirable up.
    if (label > 0)
      EXPECT_GT(a.grad().item<double>(), 0.0);
    else
      EXPECT_LT(a.grad().item<double>(), 0.0);
  }
}

}  // namespace
}  // namespace dro::train
