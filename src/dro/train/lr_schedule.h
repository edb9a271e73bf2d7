// Learning-rate schedules of diffusers' `get_scheduler`, as multipliers of the base rate indexed
// by optimisation step (torch's LambdaLR: the first update uses factor(0)).
#pragma once

#include <string>
#include <vector>

namespace dro::train {

struct LrSchedule {
  // linear | cosine | cosine_with_restarts | polynomial | constant | constant_with_warmup
  std::string name = "constant";
  int64_t warmup_steps = 0;  // optimisation steps
  int64_t total_steps = 1;   // optimisation steps (>= 1; a warmup may be as long or longer)
  double num_cycles = -1;    // cosine: 0.5, cosine_with_restarts: 1 when < 0
  double power = 1.0;        // polynomial
  double lr_end = 1e-7;      // polynomial
  double base_lr = 1e-4;     // polynomial needs it to express lr_end as a factor

  // Factor by which the base learning rate is multiplied at optimisation step `step` (0-based);
  // finite for any step counts, including a warmup as long as the run and a run of no steps.
  double factor(int64_t step) const;
  double lr(int64_t step) const { return base_lr * factor(step); }

  static const std::vector<std::string>& names();
  // UsageError naming the flag for an unknown name, a negative warmup, no steps, a learning rate
  // that is not > 0, or a polynomial whose lr_end is not below the learning rate.
  void validate() const;
};

}  // namespace dro::train
