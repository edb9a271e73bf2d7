// DDPM and DDIM against diffusers 0.32 trajectories, and per-sample tables against samples alone.
#include "dro/core/error.h"
#include "dro/sched/ddim.h"
#include "dro/sched/ddpm.h"
#include "dro/sched/timesteps.h"
#include "sched/sched_golden.h"

namespace dro {
namespace {

using test::sched_ref;

TEST(SchedDdpm, GoldenTrajectoryReplayedWithRecordedNoise) {
  DRO_REQUIRE_FIXTURES();
  sched::DdpmScheduler s(test::sd15_scheduler_config());
  s.set_timesteps(20);
  auto x = sched_ref("traj.x_T");
  auto outs = sched_ref("traj.model_outputs"), noise = sched_ref("ddpm.n20.variance_noise");
  std::vector<torch::Tensor> rows;
  for (int64_t k = 0; k < 20; ++k) {
    x = s.step_with_noise(outs[k], k, x, noise[k]);
    rows.push_back(x);
  }
  EXPECT_TRUE(test::close_traj(torch::stack(rows), sched_ref("ddpm.n20.trajectory"), 1e-4,
                               "ddpm.n20.trajectory"));
}

TEST(SchedDdpm, GeneratorNoiseIsRandnOfTheGenerator) {
  sched::DdpmScheduler s(sched::SchedulerConfig{});
  s.set_timesteps(10);
  torch::manual_seed(1);
  auto x = torch::randn({2, 4, 4, 4}), eps = torch::randn({2, 4, 4, 4});
  auto g1 = at::detail::createCPUGenerator(7);
  auto g2 = at::detail::createCPUGenerator(7);
  auto a = s.step(eps, 3, x, &g1);
  auto b = s.step_with_noise(eps, 3, x, torch::randn({2, 4, 4, 4}, g2));
  EXPECT_TRUE(torch::equal(a, b));
}

// Runs all steps of a scheduler, sample b alone on column b of the table, and stacks the results.
template <typename Make, typename Step>
torch::Tensor run_alone(const torch::Tensor& table, const torch::Tensor& x_T, const Make& make,
                        const Step& step) {
  std::vector<torch::Tensor> finals;
  for (int64_t b = 0; b < table.size(1); ++b) {
    auto s = make();
    s->set_timesteps(table.select(1, b).contiguous());  // [N]: a shared 1-column schedule
    auto x = x_T.slice(0, b, b + 1);
    for (int64_t k = 0; k < table.size(0); ++k) x = step(*s, k, x, b);
    finals.push_back(x);
  }
  return torch::cat(finals);
}

TEST(SchedDdpm, PerSampleTableEqualsSamplesAlone) {
  auto table = sched::perturbed_timesteps(10, 1000, torch::tensor({{0, 37, 99}}));
  torch::manual_seed(2);
  auto x_T = torch::randn({3, 4, 4, 4});
  auto outs = torch::randn({10, 3, 4, 4, 4}), noise = torch::randn({10, 3, 4, 4, 4});
  sched::SchedulerConfig cfg;
  cfg.clip_sample = false;
  sched::DdpmScheduler s(cfg);
  s.set_timesteps(table);
  EXPECT_TRUE(s.per_sample());
  EXPECT_TRUE(torch::equal(s.timestep(9), torch::tensor({0, 37, 99})));
  auto x = x_T;
  for (int64_t k = 0; k < 10; ++k) x = s.step_with_noise(outs[k], k, x, noise[k]);
  auto alone = run_alone(
      table, x_T, [&] { return std::make_unique<sched::DdpmScheduler>(cfg); },
      [&](sched::DdpmScheduler& one, int64_t k, const torch::Tensor& xb, int64_t b) {
        return one.step_with_noise(outs[k].slice(0, b, b + 1), k, xb, noise[k].slice(0, b, b + 1));
      });
  EXPECT_TRUE(test::allclose(x, alone, 1e-6));
}

TEST(SchedDdpm, NoNoiseDrawnAtTimestepZeroPerSample) {
  // Sample 0 ends at t = 0 and draws nothing; sample 1 (t = 5) draws one [4, 4, 4] block, as the
  // official patch steps samples one at a time. (A last step has variance ~0 either way, so the
  // generator state tells the draws apart.)
  sched::DdpmScheduler s(sched::SchedulerConfig{});
  s.set_timesteps(torch::tensor({{500, 505}, {0, 5}}));
  torch::manual_seed(3);
  auto x = torch::randn({2, 4, 4, 4}), eps = torch::randn({2, 4, 4, 4});
  auto g = at::detail::createCPUGenerator(11);
  auto out = s.step(eps, 1, x, &g);
  auto g2 = at::detail::createCPUGenerator(11);
  auto n1 = torch::randn({4, 4, 4}, g2);
  EXPECT_TRUE(torch::equal(torch::randn({8}, g), torch::randn({8}, g2)));
  auto expect = s.step_with_noise(eps, 1, x, torch::stack({torch::zeros({4, 4, 4}), n1}));
  EXPECT_TRUE(torch::equal(out, expect));
  auto mean = s.step_with_noise(eps, 1, x, torch::zeros({2, 4, 4, 4}));
  EXPECT_TRUE(torch::equal(out[0], mean[0]));
}

TEST(SchedDdpm, VarianceTypes) {
  sched::SchedulerConfig cfg;
  cfg.clip_sample = false;
  torch::manual_seed(4);
  auto x = torch::randn({1, 4, 2, 2}), eps = torch::randn({1, 4, 2, 2}),
       n = torch::randn({1, 4, 2, 2});
  auto run = [&](const std::string& vt, const torch::Tensor& out) {
    cfg.variance_type = vt;
    sched::DdpmScheduler s(cfg);
    s.set_timesteps(torch::tensor({600, 300}));
    return s.step_with_noise(out, 0, x, n);
  };
  auto ac = sched::NoiseSchedule::from_config(cfg).alphas_cumprod;
  const double a_t = ac[600].item<double>(), a_p = ac[300].item<double>();
  const double beta = 1 - a_t / a_p, beta_tilde = (1 - a_p) / (1 - a_t) * beta;
  auto mean = run("fixed_small", eps) - std::sqrt(beta_tilde) * n;
  EXPECT_TRUE(test::allclose(run("fixed_small_log", eps), mean + std::sqrt(beta_tilde) * n, 1e-5));
  EXPECT_TRUE(test::allclose(run("fixed_large", eps), mean + std::sqrt(beta) * n, 1e-5));
  // learned_range with v = 1 picks log beta; v = -1 picks log beta~.
  auto two = [&](double v) { return torch::cat({eps, torch::full_like(eps, v)}, 1); };
  EXPECT_TRUE(test::allclose(run("learned_range", two(1)), mean + std::sqrt(beta) * n, 1e-5));
  EXPECT_TRUE(
      test::allclose(run("learned_range", two(-1)), mean + std::sqrt(beta_tilde) * n, 1e-5));
  EXPECT_TRUE(test::allclose(run("learned", two(0.25)), mean + 0.5 * n, 1e-5));
  EXPECT_THROW(run("fixed_large_log", eps), UsageError);
}

TEST(SchedDdim, GoldenTrajectoryEta0) {
  DRO_REQUIRE_FIXTURES();
  sched::DdimScheduler s(test::sd15_scheduler_config());
  s.set_timesteps(20);
  auto x = sched_ref("traj.x_T");
  auto outs = sched_ref("traj.model_outputs");
  std::vector<torch::Tensor> rows;
  for (int64_t k = 0; k < 20; ++k) {
    x = s.step(outs[k], k, x);
    rows.push_back(x);
  }
  EXPECT_TRUE(test::close_traj(torch::stack(rows), sched_ref("ddim.n20.trajectory"), 1e-4,
                               "ddim.n20.trajectory"));
}

TEST(SchedDdim, EtaNoiseAndFinalAlpha) {
  sched::SchedulerConfig cfg;
  cfg.clip_sample = false;
  torch::manual_seed(5);
  auto x = torch::randn({2, 4, 4, 4}), eps = torch::randn({2, 4, 4, 4});
  sched::SchedulerOptions opt;
  opt.eta = 1.0;
  sched::DdimScheduler s(cfg, opt);
  s.set_timesteps(10);
  auto g1 = at::detail::createCPUGenerator(9);
  auto g2 = at::detail::createCPUGenerator(9);
  EXPECT_TRUE(torch::equal(s.step(eps, 2, x, &g1),
                           s.step_with_noise(eps, 2, x, torch::randn({2, 4, 4, 4}, g2))));
  // eta = 1 gives the DDPM posterior std sqrt(beta~_t).
  auto ac = s.noise_schedule().alphas_cumprod;
  const int64_t t = s.timesteps()[2].item<int64_t>(), p = t - 100;
  const double a_t = ac[t].item<double>(), a_p = ac[p].item<double>();
  const double std_dev = std::sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p));
  auto n = torch::randn({2, 4, 4, 4});
  auto diff = s.step_with_noise(eps, 2, x, n) - s.step_with_noise(eps, 2, x, torch::zeros_like(n));
  EXPECT_TRUE(test::allclose(diff, std_dev * n, 1e-5));

  // Last step with set_alpha_to_one lands on the predicted x0; without it on alphas_cumprod[0].
  cfg.set_alpha_to_one = true;
  sched::DdimScheduler one(cfg);
  one.set_timesteps(10);
  const double a_last = ac[one.timesteps()[9].item<int64_t>()].item<double>();
  auto x0 = (x - std::sqrt(1 - a_last) * eps) / std::sqrt(a_last);
  EXPECT_TRUE(test::allclose(one.step(eps, 9, x), x0, 1e-5));
  cfg.set_alpha_to_one = false;
  sched::DdimScheduler zero(cfg);
  zero.set_timesteps(10);
  const double a0 = ac[0].item<double>();
  EXPECT_TRUE(
      test::allclose(zero.step(eps, 9, x), std::sqrt(a0) * x0 + std::sqrt(1 - a0) * eps, 1e-5));
}

TEST(SchedDdim, PerSampleTableEqualsSamplesAlone) {
  auto table = sched::perturbed_timesteps(8, 1000, torch::tensor({{3, 0, 124}}));
  torch::manual_seed(6);
  auto x_T = torch::randn({3, 4, 4, 4}), outs = torch::randn({8, 3, 4, 4, 4});
  sched::DdimScheduler s(sched::SchedulerConfig{});
  s.set_timesteps(table);
  auto x = x_T;
  for (int64_t k = 0; k < 8; ++k) x = s.step(outs[k], k, x);
  auto alone = run_alone(
      table, x_T, [&] { return std::make_unique<sched::DdimScheduler>(sched::SchedulerConfig{}); },
      [&](sched::DdimScheduler& one, int64_t k, const torch::Tensor& xb, int64_t b) {
        return one.step(outs[k].slice(0, b, b + 1), k, xb);
      });
  EXPECT_TRUE(test::allclose(x, alone, 1e-6));
  EXPECT_THROW(s.step(outs[0].slice(0, 0, 2), 0, x_T.slice(0, 0, 2)), UsageError);
}

}  // namespace
}  // namespace dro
