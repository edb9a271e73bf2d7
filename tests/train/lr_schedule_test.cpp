// Every learning-rate schedule at the start, in the warmup, at its end, half-way and at the end of
// the run; and the degenerate step counts (a warmup as long as the run, no steps at all) that must
// give finite factors.
#include <cmath>

#include "dro/core/error.h"
#include "dro/train/lr_schedule.h"
#include "test_util.h"

namespace dro::train {
namespace {

LrSchedule schedule(const std::string& name, int64_t warmup, int64_t total) {
  LrSchedule s;
  s.name = name;
  s.warmup_steps = warmup;
  s.total_steps = total;
  s.base_lr = 1e-4;  // lr_end 1e-7: the polynomial ends at factor 1e-3
  return s;
}

struct Expected {
  const char* name;
  double start, mid_warmup, end_warmup, middle, end;
};

TEST(LrSchedule, EveryScheduleAtFivePoints) {
  // Warmup 10 of 110 steps: step 0, 5, 10, 60 (half-way through the decay) and 110.
  const Expected table[] = {
      {"constant", 1, 1, 1, 1, 1},  // diffusers' constant ignores the warmup
      {"constant_with_warmup", 0, 0.5, 1, 1, 1},
      {"linear", 0, 0.5, 1, 0.5, 0},
      {"cosine", 0, 0.5, 1, 0.5, 0},                // half a cosine period over the decay
      {"cosine_with_restarts", 0, 0.5, 1, 0.5, 0},  // one cycle by default
      {"polynomial", 0, 0.5, 1, 0.5 * (1 - 1e-3) + 1e-3, 1e-3},
  };
  for (const auto& e : table) {
    const LrSchedule s = schedule(e.name, 10, 110);
    EXPECT_NO_THROW(s.validate()) << e.name;
    EXPECT_NEAR(s.factor(0), e.start, 1e-12) << e.name;
    EXPECT_NEAR(s.factor(5), e.mid_warmup, 1e-12) << e.name;
    EXPECT_NEAR(s.factor(10), e.end_warmup, 1e-12) << e.name;
    EXPECT_NEAR(s.factor(60), e.middle, 1e-12) << e.name;
    EXPECT_NEAR(s.factor(110), e.end, 1e-12) << e.name;
    EXPECT_NEAR(s.lr(60), 1e-4 * e.middle, 1e-18) << e.name;
  }
  // Past the end: the decaying schedules stay at their floor.
  EXPECT_DOUBLE_EQ(schedule("linear", 10, 110).factor(500), 0.0);
  EXPECT_NEAR(schedule("polynomial", 10, 110).factor(500), 1e-3, 1e-15);
  // The polynomial's power bends the decay: a quarter of the range left half-way with power 2.
  LrSchedule p = schedule("polynomial", 10, 110);
  p.power = 2;
  EXPECT_NEAR(p.lr(60), (1e-4 - 1e-7) * 0.25 + 1e-7, 1e-15);
}

TEST(LrSchedule, WarmupAsLongAsTheRunOrNoStepsStaysFinite) {
  for (const auto& name : LrSchedule::names()) {
    for (const auto& [warmup, total] :
         {std::pair<int64_t, int64_t>{10, 10}, {0, 0}, {20, 10}, {10, 11}}) {
      const LrSchedule s = schedule(name, warmup, total);
      for (int64_t step = 0; step <= 25; ++step) {
        const double f = s.factor(step);
        EXPECT_TRUE(std::isfinite(f) && f >= 0 && f <= 1)
            << name << " warmup " << warmup << " total " << total << " step " << step << ": " << f;
      }
    }
  }
  // The polynomial used to compute 0/0 at the step where warmup and decay meet.
  const LrSchedule p = schedule("polynomial", 10, 10);
  EXPECT_DOUBLE_EQ(p.factor(5), 0.5);
  EXPECT_NEAR(p.factor(10), 1e-3, 1e-15);
  EXPECT_NEAR(schedule("polynomial", 0, 0).factor(0), 1e-3, 1e-15);
  // The others follow diffusers' formulas, whose divisors are at least 1.
  EXPECT_DOUBLE_EQ(schedule("linear", 10, 10).factor(10), 0.0);
  EXPECT_DOUBLE_EQ(schedule("cosine", 10, 10).factor(11), 0.0);
  EXPECT_DOUBLE_EQ(schedule("cosine_with_restarts", 10, 10).factor(11), 0.0);
  EXPECT_NO_THROW(schedule("polynomial", 10, 10).validate());
}

TEST(LrSchedule, ValidateNamesTheProblem) {
  auto message = [](const LrSchedule& s) {
    try {
      s.validate();
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(schedule("nope", 0, 10)).find("unknown --lr-scheduler 'nope'"),
            std::string::npos);
  EXPECT_NE(message(schedule("linear", -1, 10)).find("--lr-warmup-steps must be >= 0, got -1"),
            std::string::npos);
  EXPECT_NE(message(schedule("linear", 0, 0)).find("at least one optimisation step, got 0"),
            std::string::npos);
  LrSchedule s = schedule("polynomial", 0, 10);
  s.base_lr = 1e-8;  // below lr_end
  EXPECT_NE(message(s).find("lr_end"), std::string::npos) << message(s);
  s = schedule("constant", 0, 10);
  s.base_lr = 0;
  EXPECT_NE(message(s).find("--learning-rate must be a finite number > 0, got 0"),
            std::string::npos)
      << message(s);
}

}  // namespace
}  // namespace dro::train
