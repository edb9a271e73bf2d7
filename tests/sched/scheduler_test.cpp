// The scheduler factory and diffusers from_config semantics.
#include "dro/sched/scheduler.h"

#include "dro/core/error.h"
#include "sched/sched_golden.h"

namespace dro {
namespace {

TEST(SchedFactory, NamesAndClassNames) {
  DRO_REQUIRE_FIXTURES();
  const auto cfg = test::sd15_scheduler_config();  // a PNDMScheduler config
  for (const auto& n : sched::scheduler_names())
    EXPECT_EQ(sched::make_scheduler(n, cfg)->name(), n);
  EXPECT_EQ(sched::make_scheduler("DPMSolverMultistepScheduler", cfg)->name(), "dpmsolver++");
  EXPECT_EQ(sched::make_scheduler("EulerDiscreteScheduler", cfg)->name(), "euler");
  EXPECT_THROW(sched::make_scheduler("pndm", cfg), UsageError);
  for (const auto& n : sched::scheduler_names()) {
    auto s = sched::make_scheduler(n, cfg);
    EXPECT_THROW(s->step(torch::zeros({1, 1}), 0, torch::zeros({1, 1})), UsageError) << n;
    EXPECT_EQ(s->num_inference_steps(), 0);
  }
}

TEST(SchedFactory, AbsentKeysTakeTheSchedulerDefaults) {
  io::OrderedJson j = {{"_class_name", "DDPMScheduler"},
                       {"beta_schedule", "scaled_linear"},
                       {"beta_start", 0.00085},
                       {"beta_end", 0.012}};
  auto cfg = sched::SchedulerConfig::from_json(j, "test");
  // DDPM/DDIM default to leading spacing, DPM-Solver and Euler to linspace.
  auto ddim = sched::make_scheduler("ddim", cfg);
  ddim->set_timesteps(4);
  EXPECT_TRUE(torch::equal(ddim->timesteps(), torch::tensor({750, 500, 250, 0})));
  auto dpm = sched::make_scheduler("dpmsolver++", cfg);
  dpm->set_timesteps(4);
  EXPECT_TRUE(torch::equal(dpm->timesteps(), torch::tensor({999, 749, 500, 250})));
  auto euler = sched::make_scheduler("euler", cfg);
  euler->set_timesteps(4);
  EXPECT_TRUE(torch::equal(euler->timesteps(), torch::tensor({999.f, 666.f, 333.f, 0.f})));
  // A file that sets the spacing keeps it for every scheduler.
  j["timestep_spacing"] = "trailing";
  auto trailing = sched::make_scheduler("euler", sched::SchedulerConfig::from_json(j, "test"));
  trailing->set_timesteps(4);
  EXPECT_TRUE(torch::equal(trailing->timesteps(), torch::tensor({999.f, 749.f, 499.f, 249.f})));
}

TEST(SchedFactory, UnsupportedSettingsAreErrors) {
  sched::SchedulerConfig c;
  c.use_karras_sigmas = true;
  EXPECT_THROW(sched::make_scheduler("dpmsolver++", c), UsageError);
  EXPECT_THROW(sched::make_scheduler("euler", c), UsageError);
  c = {};
  c.algorithm_type = "sde-dpmsolver";
  EXPECT_THROW(sched::make_scheduler("dpmsolver++", c), UsageError);
  c = {};
  c.interpolation_type = "log_linear";
  EXPECT_THROW(sched::make_scheduler("euler", c), UsageError);
}

}  // namespace
}  // namespace dro
