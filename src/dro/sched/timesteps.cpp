#include "dro/sched/timesteps.h"

#include <cmath>

#include "dro/core/error.h"

namespace dro::sched {
namespace {

void check_counts(int64_t num_steps, int64_t num_train_timesteps, const char* who) {
  if (num_steps < 1)
    throw UsageError(
        cat("[", who, "] the number of inference steps must be at least 1 (got ", num_steps, ")"));
  if (num_train_timesteps < 1)
    throw UsageError(
        cat("[", who, "] num_train_timesteps must be positive (got ", num_train_timesteps, ")"));
}

// numpy.round: half to even (the default rounding mode of nearbyint).
int64_t round_half_even(double x) {
  return static_cast<int64_t>(std::nearbyint(x));
}

// numpy.linspace(0, stop, num): i * (stop / (num - 1)), the last point set to stop exactly.
std::vector<double> np_linspace0(double stop, int64_t num) {
  std::vector<double> y(num, 0.0);
  if (num == 1) return y;
  const double step = stop / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) y[i] = static_cast<double>(i) * step;
  y[num - 1] = stop;
  return y;
}

// numpy.arange(start, stop, step) for floats: ceil((stop - start) / step) values start + i * d,
// where d = (start + step) - start as numpy's fill function recomputes it.
std::vector<double> np_arange(double start, double stop, double step) {
  const double len_d = std::ceil((stop - start) / step);
  const int64_t len = len_d > 0 ? static_cast<int64_t>(len_d) : 0;
  std::vector<double> y(len);
  if (len == 0) return y;
  y[0] = start;
  const double d = (start + step) - start;
  for (int64_t i = 1; i < len; ++i) y[i] = start + static_cast<double>(i) * d;
  return y;
}

std::string bad_spacing(const std::string& spacing, const char* who) {
  return cat("[", who, "] timestep_spacing '", spacing,
             "' is not supported (leading, trailing, linspace)");
}

}  // namespace

std::vector<int64_t> spaced_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                      const std::string& spacing, int64_t steps_offset) {
  check_counts(num_steps, num_train_timesteps, "timesteps");
  if (num_steps > num_train_timesteps)
    throw UsageError(cat("[timesteps] num_inference_steps ", num_steps,
                         " cannot be larger than num_train_timesteps ", num_train_timesteps));
  std::vector<int64_t> t;
  if (spacing == "leading") {
    const int64_t ratio = num_train_timesteps / num_steps;
    for (int64_t i = num_steps - 1; i >= 0; --i) t.push_back(i * ratio + steps_offset);
  } else if (spacing == "trailing") {
    const double ratio = static_cast<double>(num_train_timesteps) / static_cast<double>(num_steps);
    for (double v : np_arange(static_cast<double>(num_train_timesteps), 0.0, -ratio))
      t.push_back(round_half_even(v) - 1);
  } else if (spacing == "linspace") {
    auto y = np_linspace0(static_cast<double>(num_train_timesteps - 1), num_steps);
    for (auto it = y.rbegin(); it != y.rend(); ++it) t.push_back(round_half_even(*it));
  } else {
    throw UsageError(bad_spacing(spacing, "timesteps"));
  }
  return t;
}

std::vector<int64_t> dpm_solver_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                          int64_t last_timestep, const std::string& spacing,
                                          int64_t steps_offset) {
  check_counts(num_steps, num_train_timesteps, "dpmsolver++");
  std::vector<int64_t> t;
  if (spacing == "leading") {
    const int64_t ratio = last_timestep / (num_steps + 1);
    for (int64_t i = num_steps; i >= 1; --i) t.push_back(i * ratio + steps_offset);
  } else if (spacing == "trailing") {
    const double ratio = static_cast<double>(num_train_timesteps) / static_cast<double>(num_steps);
    for (double v : np_arange(static_cast<double>(last_timestep), 0.0, -ratio))
      t.push_back(round_half_even(v) - 1);
  } else if (spacing == "linspace") {
    auto y = np_linspace0(static_cast<double>(last_timestep - 1), num_steps + 1);
    for (int64_t i = num_steps; i >= 1; --i) t.push_back(round_half_even(y[i]));
  } else {
    throw UsageError(bad_spacing(spacing, "dpmsolver++"));
  }
  return t;
}

torch::Tensor perturbed_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                  const torch::Tensor& perturb) {
  check_counts(num_steps, num_train_timesteps, "timesteps");
  const int64_t ratio = num_train_timesteps / num_steps;
  if (!perturb.defined() || perturb.is_floating_point() || perturb.is_complex() ||
      !(perturb.dim() == 1 || (perturb.dim() == 2 && perturb.size(0) == 1)) || perturb.numel() == 0)
    throw UsageError("[timesteps] perturb must be an integer tensor of shape [1, B] or [B]");
  auto p = perturb.to(torch::kCPU, torch::kInt64).reshape({1, -1});  // [1, B]
  if (p.min().item<int64_t>() < 0 || p.max().item<int64_t>() >= ratio)
    throw UsageError(cat("[timesteps] perturbations must lie in [0, ", ratio, ") (T // N), got [",
                         p.min().item<int64_t>(), ", ", p.max().item<int64_t>(), "]"));
  // base: [N, 1] = ratio * (N-1 ... 0)
  auto base = (torch::arange(num_steps, torch::kInt64) * ratio).flip(0).unsqueeze(1);
  return (base + p).contiguous();  // [N, B]
}

torch::Tensor perturbed_timesteps(int64_t num_steps, int64_t num_train_timesteps,
                                  int64_t batch_size, torch::Generator* gen) {
  check_counts(num_steps, num_train_timesteps, "timesteps");
  if (batch_size < 1) throw UsageError("[timesteps] batch size must be at least 1");
  const int64_t ratio = num_train_timesteps / num_steps;
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  auto p = gen ? torch::randint(0, ratio, {1, batch_size}, *gen, opts)
               : torch::randint(0, ratio, {1, batch_size}, opts);
  return perturbed_timesteps(num_steps, num_train_timesteps, p);
}

torch::Tensor check_timestep_table(const torch::Tensor& table, int64_t num_train_timesteps,
                                   const std::string& who) {
  if (!table.defined() || table.numel() == 0)
    throw UsageError(cat("[", who, "] the timestep table is empty"));
  if (table.is_floating_point() || table.is_complex() || table.scalar_type() == torch::kBool)
    throw UsageError(cat("[", who, "] timesteps must be integers (got ", table.scalar_type(), ")"));
  if (table.dim() != 1 && table.dim() != 2)
    throw UsageError(
        cat("[", who, "] timesteps must be [N] or [N, B] (got shape ", table.sizes(), ")"));
  auto t = table.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
  if (lo < 0 || hi >= num_train_timesteps)
    throw UsageError(cat("[", who, "] timesteps must lie in [0, ", num_train_timesteps, "), got [",
                         lo, ", ", hi, "]"));
  if (t.size(0) > 1) {
    auto ok = (t.slice(0, 0, -1) > t.slice(0, 1)).all().item<bool>();
    if (!ok)
      throw UsageError(cat("[", who, "] timesteps must be strictly descending along the steps"));
  }
  return t;
}

}  // namespace dro::sched
