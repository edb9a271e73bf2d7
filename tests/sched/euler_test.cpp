// Euler discrete (SDXL's scheduler): no golden data, so properties and hand-computed cases.
#include "dro/sched/euler.h"

#include "dro/core/error.h"
#include "dro/sched/timesteps.h"
#include "sched/sched_golden.h"

namespace dro {
namespace {

std::unique_ptr<sched::EulerScheduler> sdxl_euler() {
  return std::make_unique<sched::EulerScheduler>(test::sdxl_scheduler_config());
}

double sigma_at(const sched::Scheduler& s, int64_t t) {
  const double a = s.noise_schedule().alphas_cumprod[t].item<double>();
  return std::sqrt((1 - a) / a);
}

TEST(SchedEuler, SdxlSigmasAndTimesteps) {
  DRO_REQUIRE_FIXTURES();
  auto s = sdxl_euler();
  s->set_timesteps(20);
  auto ts = s->timesteps();
  EXPECT_EQ(ts.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(ts.to(torch::kInt64), torch::arange(951, 0, -50, torch::kInt64)));
  auto sig = s->sigmas();
  ASSERT_EQ(sig.size(0), 21);
  EXPECT_EQ(sig[20].item<float>(), 0.f);
  EXPECT_TRUE((sig.slice(0, 0, -1) > sig.slice(0, 1)).all().item<bool>());
  for (int64_t k = 0; k < 20; ++k)
    EXPECT_NEAR(sig[k].item<double>(), sigma_at(*s, ts[k].item<int64_t>()),
                1e-5 * sig[k].item<double>());
  // leading spacing: the starting noise has the std of x0 + sigma_max eps for unit-variance data.
  const double smax = sigma_at(*s, 951);
  EXPECT_NEAR(s->init_noise_sigma(), std::sqrt(smax * smax + 1), 1e-5 * smax);
}

TEST(SchedEuler, ScaleModelInputAndHandStep) {
  DRO_REQUIRE_FIXTURES();
  auto s = sdxl_euler();
  s->set_timesteps(4);  // 751, 501, 251, 1
  const double s1 = s->sigmas()[1].item<double>(), s2 = s->sigmas()[2].item<double>();
  auto x = torch::tensor({2.0f, -1.0f}).view({1, 2});
  auto eps = torch::tensor({0.5f, 0.25f}).view({1, 2});
  auto scaled = s->scale_model_input(x, 1);
  EXPECT_NEAR(scaled[0][0].item<double>(), 2.0 / std::sqrt(s1 * s1 + 1), 1e-6);
  // x0 = x - s1 eps; x' = x + (x - x0) / s1 * (s2 - s1) = x + eps (s2 - s1).
  auto next = s->step(eps, 1, x);
  EXPECT_NEAR(next[0][0].item<double>(), 2.0 + 0.5 * (s2 - s1), 1e-5);
  EXPECT_NEAR(next[0][1].item<double>(), -1.0 + 0.25 * (s2 - s1), 1e-5);
  // The last step goes to sigma 0: the predicted x0.
  const double s3 = s->sigmas()[3].item<double>();
  auto last = s->step(eps, 3, x);
  EXPECT_NEAR(last[0][0].item<double>(), 2.0 - 0.5 * s3, 1e-5);
}

// A point mass at x0 whose exact noise the model predicts: in sigma space x_k = x0 + sigma_k eps
// is the ODE solution, Euler's derivative is exactly eps, so every step stays on it and the last
// one returns x0.
TEST(SchedEuler, ExactNoiseModelRecoversX0) {
  DRO_REQUIRE_FIXTURES();
  auto s = sdxl_euler();
  s->set_timesteps(30);
  torch::manual_seed(3);
  auto x0 = torch::randn({2, 4, 3, 3}), eps = torch::randn({2, 4, 3, 3});
  auto x = x0 + s->sigmas()[0].item<double>() * eps;
  for (int64_t k = 0; k < 30; ++k) {
    (void)s->scale_model_input(x, k);  // what the model would see
    x = s->step(eps, k, x);
  }
  EXPECT_TRUE(test::allclose(x, x0, 1e-4));
}

TEST(SchedEuler, LinspaceKeepsFractionalTimesteps) {
  sched::SchedulerConfig cfg;
  cfg.beta_schedule = "scaled_linear";
  cfg.beta_start = 0.00085;
  cfg.beta_end = 0.012;
  cfg.timestep_spacing = "linspace";
  sched::EulerScheduler s(cfg);
  s.set_timesteps(7);  // linspace(0, 999, 7) = 0, 166.5, ...
  EXPECT_FLOAT_EQ(s.timesteps()[5].item<float>(), 166.5f);
  const double lo = sigma_at(s, 166), hi = sigma_at(s, 167);
  EXPECT_NEAR(s.sigmas()[5].item<double>(), 0.5 * (lo + hi), 1e-5);
  // linspace: init_noise_sigma is sigma_max itself.
  EXPECT_NEAR(s.init_noise_sigma(), sigma_at(s, 999), 1e-4);
}

TEST(SchedEuler, PerSampleTableAndAddNoise) {
  DRO_REQUIRE_FIXTURES();
  auto table = sched::perturbed_timesteps(6, 1000, torch::tensor({{0, 100, 165}}));
  torch::manual_seed(4);
  auto x_T = torch::randn({3, 4, 2, 2}), outs = torch::randn({6, 3, 4, 2, 2});
  auto s = sdxl_euler();
  s->set_timesteps(table);
  auto x = x_T;
  for (int64_t k = 0; k < 6; ++k) x = s->step(outs[k], k, x);
  for (int64_t b = 0; b < 3; ++b) {
    auto one = sdxl_euler();
    one->set_timesteps(table.select(1, b).contiguous());
    auto xb = x_T.slice(0, b, b + 1);
    for (int64_t k = 0; k < 6; ++k) xb = one->step(outs[k].slice(0, b, b + 1), k, xb);
    EXPECT_TRUE(test::allclose(x.slice(0, b, b + 1), xb, 1e-6)) << "sample " << b;
  }
  auto noisy = s->add_noise(torch::zeros({3, 1}), torch::ones({3, 1}), table[2]);
  for (int64_t b = 0; b < 3; ++b)
    EXPECT_NEAR(noisy[b][0].item<double>(), sigma_at(*s, table[2][b].item<int64_t>()), 1e-4);
  EXPECT_THROW(s->add_noise(torch::zeros({3, 1}), torch::ones({3, 1}), torch::tensor({1, 2, 3})),
               UsageError);
}

}  // namespace
}  // namespace dro
