// DPM-Solver++ against diffusers 0.32 and the official Diffusion-DRO patch; exact per-sample mode
// by consistency; every order / algorithm by an exactly solvable case.
#include "dro/sched/dpm_solver.h"

#include "dro/core/error.h"
#include "dro/sched/timesteps.h"
#include "sched/sched_golden.h"

namespace dro {
namespace {

using test::sched_ref;

std::unique_ptr<sched::DpmSolverScheduler> sd15_dpm(bool sharing = false) {
  sched::SchedulerOptions opt;
  opt.official_sigma_sharing = sharing;
  return std::make_unique<sched::DpmSolverScheduler>(test::sd15_scheduler_config(), opt);
}

torch::Tensor run(sched::Scheduler& s, torch::Tensor x, const torch::Tensor& outs) {
  std::vector<torch::Tensor> rows;
  for (int64_t k = 0; k < outs.size(0); ++k) {
    x = s.step(outs[k], k, x);
    rows.push_back(x);
  }
  return torch::stack(rows);
}

TEST(SchedDpm, GoldenSigmas) {
  DRO_REQUIRE_FIXTURES();
  for (int n : {20, 50}) {
    auto s = sd15_dpm();
    s->set_timesteps(n);
    const auto key = "dpmpp.n" + std::to_string(n) + ".sigmas";
    EXPECT_TRUE(test::close_rel(s->sigmas(), sched_ref(key), 1e-5, key));
  }
}

TEST(SchedDpm, GoldenAddNoise) {
  DRO_REQUIRE_FIXTURES();
  auto s = sd15_dpm();
  s->set_timesteps(20);
  auto out = s->add_noise(sched_ref("add_noise.x0"), sched_ref("add_noise.noise"),
                          sched_ref("dpmpp.n20.add_noise.t"));
  EXPECT_TRUE(test::close_rel(out, sched_ref("dpmpp.n20.add_noise"), 1e-5, "dpmpp.n20.add_noise"));
}

TEST(SchedDpm, GoldenTrajectory) {
  DRO_REQUIRE_FIXTURES();
  auto s = sd15_dpm();
  s->set_timesteps(20);
  auto traj = run(*s, sched_ref("traj.x_T"), sched_ref("traj.model_outputs"));
  EXPECT_TRUE(
      test::close_traj(traj, sched_ref("dpmpp.n20.trajectory"), 1e-4, "dpmpp.n20.trajectory"));
  // The same scheduler runs a second trajectory identically after reset (or from step 0).
  s->reset();
  EXPECT_TRUE(torch::equal(run(*s, sched_ref("traj.x_T"), sched_ref("traj.model_outputs")), traj));
  EXPECT_TRUE(torch::equal(run(*s, sched_ref("traj.x_T"), sched_ref("traj.model_outputs")), traj));
}

TEST(SchedDpm, GoldenDroPerSampleOfficialSigmaSharing) {
  DRO_REQUIRE_FIXTURES();
  auto s = sd15_dpm(/*sharing=*/true);
  auto table = sched::perturbed_timesteps(20, 1000, sched_ref("dro.perturb"));
  ASSERT_TRUE(torch::equal(table, sched_ref("dro.timesteps")));
  s->set_timesteps(table);
  EXPECT_TRUE(torch::equal(s->timesteps(), table));
  EXPECT_TRUE(torch::equal(s->timestep(4), table[4]));
  EXPECT_TRUE(test::close_rel(s->sigmas(), sched_ref("dro.sigmas"), 1e-5, "dro.sigmas"));
  auto traj = run(*s, sched_ref("dro.x_T"), sched_ref("dro.model_outputs"));
  EXPECT_TRUE(test::close_traj(traj, sched_ref("dro.trajectory"), 1e-4, "dro.trajectory"));
}

TEST(SchedDpm, ExactPerSampleEqualsSamplesAlone) {
  DRO_REQUIRE_FIXTURES();
  auto table = sched_ref("dro.timesteps");  // [20, 3]
  auto x_T = sched_ref("dro.x_T"), outs = sched_ref("dro.model_outputs");
  auto s = sd15_dpm();
  s->set_timesteps(table);
  EXPECT_EQ(s->sigmas().sizes(), (std::vector<int64_t>{21, 3}));
  auto traj = run(*s, x_T, outs);
  for (int64_t b = 0; b < 3; ++b) {
    auto one = sd15_dpm();
    one->set_timesteps(table.slice(1, b, b + 1));  // [20, 1]
    auto alone = run(*one, x_T.slice(0, b, b + 1), outs.slice(1, b, b + 1));
    EXPECT_TRUE(test::allclose(traj.slice(1, b, b + 1), alone, 1e-6)) << "sample " << b;
  }
  // Sample 0 owns the shared levels, so it agrees with the official run; the others do not.
  auto official = sd15_dpm(true);
  official->set_timesteps(table);
  auto shared = run(*official, x_T, outs);
  EXPECT_TRUE(test::allclose(traj.select(1, 0), shared.select(1, 0), 1e-6));
  EXPECT_GT(test::max_abs_diff(traj.select(1, 2), shared.select(1, 2)), 1e-3);
}

TEST(SchedDpm, StepsMustComeInOrder) {
  auto s = std::make_unique<sched::DpmSolverScheduler>(sched::SchedulerConfig{});
  s->set_timesteps(5);
  auto x = torch::randn({1, 4, 2, 2});
  s->step(x, 0, x);
  EXPECT_THROW(s->step(x, 2, x), UsageError);
  s->reset();
  EXPECT_NO_THROW(s->step(x, 2, x));  // an empty history may start anywhere (img2img)
}

// A point mass at x0 with a model predicting its exact noise: the probability-flow ODE keeps
// x_k = alpha_k x0 + sigma_k eps, which every DPM-Solver order reproduces exactly (all history
// terms vanish), ending at x0.
TEST(SchedDpm, ExactNoiseModelRecoversX0ForEveryVariant) {
  torch::manual_seed(8);
  auto x0 = torch::randn({2, 4, 3, 3}), eps = torch::randn({2, 4, 3, 3});
  struct V {
    const char* algorithm;
    const char* solver;
    int order;
    const char* final_sigma;
  };
  for (V v : {V{"dpmsolver++", "midpoint", 2, "zero"}, V{"dpmsolver++", "heun", 2, "zero"},
              V{"dpmsolver++", "midpoint", 3, "zero"}, V{"dpmsolver++", "midpoint", 1, "zero"},
              V{"dpmsolver", "midpoint", 2, "sigma_min"}, V{"dpmsolver", "heun", 3, "sigma_min"}}) {
    sched::SchedulerConfig cfg;
    cfg.beta_schedule = "scaled_linear";
    cfg.beta_start = 0.00085;
    cfg.beta_end = 0.012;
    cfg.algorithm_type = v.algorithm;
    cfg.solver_type = v.solver;
    cfg.solver_order = v.order;
    cfg.final_sigmas_type = v.final_sigma;
    sched::DpmSolverScheduler s(cfg);
    s.set_timesteps(25);
    auto sig = s.sigmas().to(torch::kFloat64);
    auto level = [&](int64_t k) {
      const double sk = sig[k].item<double>();
      return std::make_pair(1 / std::sqrt(sk * sk + 1), sk / std::sqrt(sk * sk + 1));
    };
    auto [a0, s0] = level(0);
    auto x = a0 * x0 + s0 * eps;
    for (int64_t k = 0; k < 25; ++k) {
      x = s.step(eps, k, x);
      auto [a, sg] = level(k + 1);
      ASSERT_TRUE(test::allclose(x, a * x0 + sg * eps, 2e-4))
          << v.algorithm << " " << v.solver << " order " << v.order << " step " << k;
    }
  }
}

TEST(SchedDpm, AddNoisePerSampleLooksUpOwnColumn) {
  auto s = std::make_unique<sched::DpmSolverScheduler>(sched::SchedulerConfig{});
  auto table = torch::tensor({{900, 950}, {400, 420}}, torch::kInt64);
  s->set_timesteps(table);
  auto x0 = torch::ones({2, 1}), n = torch::zeros({2, 1});
  auto out = s->add_noise(x0, n, torch::tensor({400, 420}));
  auto ac = s->noise_schedule().alphas_cumprod;
  EXPECT_NEAR(out[0][0].item<float>(), std::sqrt(ac[400].item<float>()), 1e-6);
  EXPECT_NEAR(out[1][0].item<float>(), std::sqrt(ac[420].item<float>()), 1e-6);
}

}  // namespace
}  // namespace dro
