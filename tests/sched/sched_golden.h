// Helpers for the scheduler tests: the golden scheduler tensors, the SD1.5 / SDXL scheduler
// configs, and a relative comparison that prints the largest difference.
#pragma once

#include <iostream>
#include <map>
#include <string>

#include "dro/io/safetensors.h"
#include "dro/sched/scheduler_config.h"
#include "test_util.h"

namespace dro::test {

inline const std::map<std::string, torch::Tensor>& sched_golden() {
  static const auto g = io::load_safetensors(fixtures() / "golden/schedulers.safetensors");
  return g;
}

inline torch::Tensor sched_ref(const std::string& name) {
  const auto& g = sched_golden();
  auto it = g.find(name);
  if (it == g.end()) throw std::runtime_error("golden tensor '" + name + "' not found");
  return it->second;
}

inline sched::SchedulerConfig sd15_scheduler_config() {
  return sched::SchedulerConfig::load(fixtures() / "tiny-sd15/scheduler");
}
inline sched::SchedulerConfig sdxl_scheduler_config() {
  return sched::SchedulerConfig::load(fixtures() / "tiny-sdxl/scheduler");
}

// Prints "[parity] what: max |diff| = d" so test logs carry the numbers.
inline void report(const std::string& what, double diff) {
  std::cout << "[parity] " << what << ": max |diff| = " << diff << "\n";
}

// |actual - expected| <= rel * max(1, |expected|) everywhere.
inline ::testing::AssertionResult close_rel(const torch::Tensor& actual,
                                            const torch::Tensor& expected, double rel,
                                            const std::string& what) {
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure()
           << what << ": shape " << actual.sizes() << " != expected " << expected.sizes();
  auto a = actual.to(torch::kFloat64), e = expected.to(torch::kFloat64);
  auto diff = (a - e).abs();
  auto bound = e.abs().clamp_min(1.0) * rel;
  const double m = diff.max().item<double>();
  report(what, m);
  auto excess = (diff - bound).flatten();
  const int64_t at = excess.argmax().item<int64_t>();
  if (excess[at].item<double>() > 0)
    return ::testing::AssertionFailure() << what << ": |diff| " << diff.flatten()[at].item<double>()
                                         << " > " << rel << " * max(1, |ref|) at flat index " << at
                                         << " (actual " << a.flatten()[at].item<double>()
                                         << ", expected " << e.flatten()[at].item<double>() << ")";
  return ::testing::AssertionSuccess();
}

// Trajectory tolerance: tol * max(1, max |ref|), one bound for the whole tensor.
inline ::testing::AssertionResult close_traj(const torch::Tensor& actual,
                                             const torch::Tensor& expected, double tol,
                                             const std::string& what) {
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  if (actual.sizes() == expected.sizes()) report(what, max_abs_diff(actual, expected));
  return ::dro::test::allclose(actual, expected, tol * scale);
}

}  // namespace dro::test
