#include "dro/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "dro/core/error.h"

namespace dro::train {

const std::vector<std::string>& LrSchedule::names() {
  static const std::vector<std::string> n = {"linear",     "cosine",   "cosine_with_restarts",
                                             "polynomial", "constant", "constant_with_warmup"};
  return n;
}

void LrSchedule::validate() const {
  const auto& n = names();
  if (std::find(n.begin(), n.end(), name) == n.end())
    throw UsageError(cat(
        "[lr] unknown --lr-scheduler '", name,
        "' (linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup)"));
  if (warmup_steps < 0)
    throw UsageError(cat("[lr] --lr-warmup-steps must be >= 0, got ", warmup_steps));
  if (total_steps < 1)
    throw UsageError(
        cat("[lr] the schedule needs at least one optimisation step, got ", total_steps));
  if (!(base_lr > 0) || !std::isfinite(base_lr))
    throw UsageError(cat("[lr] --learning-rate must be a finite number > 0, got ", base_lr));
  if (name == "polynomial" && !(base_lr > lr_end))
    throw UsageError(cat("[lr] polynomial schedule needs lr_end (", lr_end,
                         ") smaller than the learning rate (", base_lr, ")"));
  if (name == "polynomial" && !(power > 0))
    throw UsageError(cat("[lr] polynomial schedule needs a power > 0, got ", power));
}

double LrSchedule::factor(int64_t step) const {
  const double s = static_cast<double>(step);
  const double w = static_cast<double>(warmup_steps);
  const double T = static_cast<double>(total_steps);
  if (name == "constant") return 1.0;
  if (step < warmup_steps) return s / std::max(1.0, w);
  if (name == "constant_with_warmup") return 1.0;
  const double progress = (s - w) / std::max(1.0, T - w);
  if (name == "linear") return std::max(0.0, (T - s) / std::max(1.0, T - w));
  if (name == "cosine") {
    const double cycles = num_cycles < 0 ? 0.5 : num_cycles;
    return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * cycles * 2.0 * progress)));
  }
  if (name == "cosine_with_restarts") {
    const double cycles = num_cycles < 0 ? 1.0 : num_cycles;
    if (progress >= 1.0) return 0.0;
    return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * std::fmod(cycles * progress, 1.0))));
  }
  if (name == "polynomial") {
    // diffusers divides by (total - warmup) here and fails when the warmup fills the whole run;
    // a decay phase of no steps is over as soon as it starts.
    if (step > total_steps || total_steps <= warmup_steps) return lr_end / base_lr;
    const double range = base_lr - lr_end;
    const double remaining = 1.0 - (s - w) / (T - w);
    return (range * std::pow(remaining, power) + lr_end) / base_lr;
  }
  throw UsageError(cat("[lr] unknown schedule '", name, "'"));
}

}  // namespace dro::train
