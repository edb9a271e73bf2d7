// Noise schedule and timestep grids against diffusers 0.32 (golden/schedulers.safetensors).
#include "dro/sched/noise_schedule.h"

#include "dro/core/error.h"
#include "dro/sched/scheduler.h"
#include "dro/sched/timesteps.h"
#include "sched/sched_golden.h"

namespace dro {
namespace {

using test::close_rel;
using test::sched_ref;

TEST(SchedNoise, BetasAndAlphasCumprodMatchGoldenBits) {
  DRO_REQUIRE_FIXTURES();
  auto s = sched::NoiseSchedule::from_config(test::sd15_scheduler_config());
  test::report("betas", test::max_abs_diff(s.betas, sched_ref("betas")));
  test::report("alphas_cumprod", test::max_abs_diff(s.alphas_cumprod, sched_ref("alphas_cumprod")));
  EXPECT_EQ(s.betas.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(s.betas, sched_ref("betas")));
  EXPECT_TRUE(torch::equal(s.alphas_cumprod, sched_ref("alphas_cumprod")));
}

TEST(SchedNoise, AddNoiseDdpmDdim) {
  DRO_REQUIRE_FIXTURES();
  const auto cfg = test::sd15_scheduler_config();
  auto x0 = sched_ref("add_noise.x0"), noise = sched_ref("add_noise.noise");
  auto t = sched_ref("add_noise.t");
  for (const char* name : {"ddpm", "ddim"}) {
    auto s = sched::make_scheduler(name, cfg);
    auto ref = sched_ref(std::string(name) + ".add_noise");
    EXPECT_TRUE(close_rel(s->add_noise(x0, noise, t), ref, 1e-5, std::string(name) + ".add_noise"));
  }
}

TEST(SchedNoise, VelocityInvertsToX0AndNoise) {
  DRO_REQUIRE_FIXTURES();
  auto s = sched::NoiseSchedule::from_config(test::sd15_scheduler_config());
  torch::manual_seed(0);
  auto x0 = torch::randn({3, 4, 2, 2}), eps = torch::randn({3, 4, 2, 2});
  auto t = torch::tensor({0, 417, 999}, torch::kInt64);
  auto xt = s.add_noise(x0, eps, t);
  auto v = s.get_velocity(x0, eps, t);
  auto a = s.alphas_cumprod.index_select(0, t).view({3, 1, 1, 1});
  // x0 = sqrt(a) x_t - sqrt(1-a) v and eps = sqrt(1-a) x_t + sqrt(a) v.
  EXPECT_TRUE(test::allclose(a.sqrt() * xt - (1 - a).sqrt() * v, x0, 1e-5));
  EXPECT_TRUE(test::allclose((1 - a).sqrt() * xt + a.sqrt() * v, eps, 1e-5));
  EXPECT_THROW(s.add_noise(x0, eps, torch::tensor({0, 1, 1000})), UsageError);
}

TEST(SchedNoise, OtherBetaSchedules) {
  sched::SchedulerConfig c;
  c.beta_schedule = "linear";
  auto lin = sched::make_betas(c);
  EXPECT_FLOAT_EQ(lin[0].item<float>(), 1e-4f);
  EXPECT_FLOAT_EQ(lin[-1].item<float>(), 0.02f);

  c.beta_schedule = "squaredcos_cap_v2";
  auto cosb = sched::make_betas(c);
  EXPECT_EQ(cosb.size(0), 1000);
  EXPECT_GT(cosb.min().item<float>(), 0.f);
  EXPECT_FLOAT_EQ(cosb.max().item<float>(), 0.999f);  // capped at the last step
  // First beta from Glide's alpha_bar: 1 - f(1/T) / f(0), f(t) = cos((t + s)/(1 + s) pi/2)^2.
  const double f0 = std::pow(std::cos(0.008 / 1.008 * M_PI / 2), 2);
  const double f1 = std::pow(std::cos((0.001 + 0.008) / 1.008 * M_PI / 2), 2);
  EXPECT_FLOAT_EQ(cosb[0].item<float>(), static_cast<float>(1 - f1 / f0));

  c.beta_schedule = "scaled_linear";
  c.beta_start = 0.00085;
  c.beta_end = 0.012;
  c.rescale_betas_zero_snr = true;
  auto s = sched::NoiseSchedule::from_config(c);
  EXPECT_NEAR(s.alphas_cumprod[-1].item<float>(), 0.f, 1e-7);  // zero terminal SNR
  c.rescale_betas_zero_snr = false;
  auto plain = sched::NoiseSchedule::from_config(c);
  EXPECT_NEAR(s.alphas_cumprod[0].item<float>(), plain.alphas_cumprod[0].item<float>(), 1e-6);

  c.trained_betas = {0.1, 0.2};
  EXPECT_THROW(sched::make_betas(c), UsageError);  // 2 values for 1000 steps
  c.num_train_timesteps = 2;
  EXPECT_TRUE(torch::allclose(sched::make_betas(c), torch::tensor({0.1f, 0.2f})));
}

TEST(SchedTimesteps, GoldenGridsN20N50) {
  DRO_REQUIRE_FIXTURES();
  const auto cfg = test::sd15_scheduler_config();
  for (int n : {20, 50}) {
    for (const char* name : {"ddpm", "ddim", "dpmpp"}) {
      auto s = sched::make_scheduler(std::string(name) == "dpmpp" ? "dpmsolver++" : name, cfg);
      s->set_timesteps(n);
      const auto key = std::string(name) + ".n" + std::to_string(n) + ".timesteps";
      EXPECT_TRUE(torch::equal(s->timesteps(), sched_ref(key))) << key << ": " << s->timesteps();
    }
  }
}

TEST(SchedTimesteps, Spacings) {
  using V = std::vector<int64_t>;
  EXPECT_EQ(sched::spaced_timesteps(4, 1000, "leading", 1), (V{751, 501, 251, 1}));
  EXPECT_EQ(sched::spaced_timesteps(3, 1000, "trailing", 0), (V{999, 666, 332}));
  EXPECT_EQ(sched::spaced_timesteps(4, 1000, "linspace", 0), (V{999, 666, 333, 0}));
  // numpy rounds half to even: linspace(0, 999, 3) = 0, 499.5, 999.
  EXPECT_EQ(sched::spaced_timesteps(3, 1000, "linspace", 0), (V{999, 500, 0}));
  // trailing with ties: 1000 - 62.5 i rounds to even.
  auto tr = sched::spaced_timesteps(16, 1000, "trailing", 0);
  EXPECT_EQ(tr[1], 937);  // round(937.5) = 938, minus 1
  EXPECT_EQ(tr[3], 811);  // round(812.5) = 812, minus 1
  // DPM-Solver places N + 1 points and drops the last.
  EXPECT_EQ(sched::dpm_solver_timesteps(4, 1000, 1000, "leading", 1), (V{801, 601, 401, 201}));
  EXPECT_EQ(sched::dpm_solver_timesteps(4, 1000, 1000, "linspace", 0), (V{999, 749, 500, 250}));
  EXPECT_EQ(sched::dpm_solver_timesteps(4, 1000, 1000, "trailing", 0), (V{999, 749, 499, 249}));
  EXPECT_THROW(sched::spaced_timesteps(4, 1000, "karras", 0), UsageError);
  EXPECT_THROW(sched::spaced_timesteps(1001, 1000, "leading", 0), UsageError);
}

TEST(SchedTimesteps, PerturbedGridAsTrainPy) {
  DRO_REQUIRE_FIXTURES();
  auto table = sched::perturbed_timesteps(20, 1000, sched_ref("dro.perturb"));
  EXPECT_TRUE(torch::equal(table, sched_ref("dro.timesteps"))) << table;

  auto g1 = at::detail::createCPUGenerator(123);
  auto g2 = at::detail::createCPUGenerator(123);
  auto drawn = sched::perturbed_timesteps(20, 1000, 5, &g1);
  auto p = torch::randint(0, 50, {1, 5}, g2, torch::kInt64);
  EXPECT_TRUE(torch::equal(drawn, sched::perturbed_timesteps(20, 1000, p)));
  EXPECT_EQ(drawn.sizes(), (std::vector<int64_t>{20, 5}));
  EXPECT_TRUE((drawn[19] < 50).all().item<bool>());
  EXPECT_TRUE((drawn[0] >= 950).all().item<bool>());
  EXPECT_THROW(sched::perturbed_timesteps(20, 1000, torch::tensor({{0, 50}})), UsageError);
}

TEST(SchedTimesteps, TableValidation) {
  const auto T = 1000;
  EXPECT_NO_THROW(sched::check_timestep_table(torch::tensor({{900, 901}, {10, 0}}), T, "t"));
  EXPECT_THROW(sched::check_timestep_table(torch::tensor({10, 10}), T, "t"), UsageError);
  EXPECT_THROW(sched::check_timestep_table(torch::tensor({{5, 9}, {6, 1}}), T, "t"), UsageError);
  EXPECT_THROW(sched::check_timestep_table(torch::tensor({1000, 1}), T, "t"), UsageError);
  EXPECT_THROW(sched::check_timestep_table(torch::tensor({5, -1}), T, "t"), UsageError);
  EXPECT_THROW(sched::check_timestep_table(torch::tensor({5.0, 1.0}), T, "t"), UsageError);
  EXPECT_THROW(sched::check_timestep_table(torch::zeros({2, 2, 2}, torch::kInt64), T, "t"),
               UsageError);
}

}  // namespace
}  // namespace dro
