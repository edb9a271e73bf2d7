#include "dro/sched/scheduler.h"

#include <algorithm>
#include <cctype>

#include "dro/core/error.h"
#include "dro/sched/ddim.h"
#include "dro/sched/ddpm.h"
#include "dro/sched/dpm_solver.h"
#include "dro/sched/euler.h"
#include "dro/sched/timesteps.h"

namespace dro::sched {

Scheduler::Scheduler(SchedulerConfig config, SchedulerOptions options)
    : config_(std::move(config)), options_(options) {
  schedule_ = NoiseSchedule::from_config(config_);
}

void Scheduler::set_timesteps(int64_t num_inference_steps) {
  if (num_inference_steps < 1)
    throw UsageError(cat("[", name(), "] num_inference_steps must be at least 1 (got ",
                         num_inference_steps, ")"));
  timesteps_ = spaced(num_inference_steps);
  prepare(/*custom=*/false);
  reset();
}

void Scheduler::set_timesteps(const torch::Tensor& table) {
  timesteps_ = check_timestep_table(table, schedule_.num_train_timesteps(), name());
  prepare(/*custom=*/true);
  reset();
}

torch::Tensor Scheduler::timestep(int64_t k) const {
  if (!timesteps_.defined())
    throw UsageError(cat("[", name(), "] call set_timesteps before asking for a timestep"));
  if (k < 0 || k >= num_inference_steps())
    throw UsageError(
        cat("[", name(), "] step index ", k, " is outside [0, ", num_inference_steps(), ")"));
  return timesteps_[k];
}

torch::Tensor Scheduler::scale_model_input(const torch::Tensor& sample, int64_t) const {
  return sample;
}

torch::Tensor Scheduler::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                   const torch::Tensor& t) const {
  return schedule_.add_noise(x0, noise, t);
}

int64_t Scheduler::check_step(const torch::Tensor& model_output, int64_t k,
                              const torch::Tensor& sample, const char* who) const {
  if (!timesteps_.defined()) throw UsageError(cat("[", who, "] call set_timesteps before step"));
  if (k < 0 || k >= num_inference_steps())
    throw UsageError(
        cat("[", who, "] step index ", k, " is outside [0, ", num_inference_steps(), ")"));
  if (!sample.defined() || !model_output.defined() || sample.dim() < 1)
    throw UsageError(cat("[", who, "] step needs a batched sample [B, ...] and a model output"));
  if (model_output.size(0) != sample.size(0))
    throw UsageError(cat("[", who, "] model output batch ", model_output.size(0),
                         " != sample batch ", sample.size(0)));
  const int64_t c = columns();
  if (per_sample() && sample.size(0) != c)
    throw UsageError(cat("[", who, "] the timestep table has ", c, " columns (one per sample) but ",
                         "the batch has ", sample.size(0), " samples"));
  return c;
}

torch::Tensor Scheduler::int_table() const {
  auto t = timesteps_.to(torch::kCPU, torch::kInt64);
  return (t.dim() == 1 ? t.unsqueeze(1) : t).contiguous();  // [N, C]
}

std::vector<torch::Tensor> Scheduler::to_sample(const std::vector<torch::Tensor>& coeffs,
                                                const torch::Tensor& like,
                                                torch::Dtype dtype) const {
  auto packed = torch::stack(coeffs).to(like.device(), dtype);  // [K, C]
  std::vector<int64_t> shape;                                   // 0-dim for a shared table
  if (per_sample()) {
    shape.assign(like.dim(), 1);
    shape[0] = packed.size(1);
  }
  std::vector<torch::Tensor> out;
  out.reserve(coeffs.size());
  for (int64_t k = 0; k < packed.size(0); ++k) out.push_back(packed[k].reshape(shape));
  return out;
}

torch::Tensor Scheduler::draw_noise(const torch::Tensor& like, torch::Generator* gen,
                                    const std::vector<bool>& draw) const {
  // randn_tensor draws on a CPU generator's device and moves the result.
  auto opts =
      torch::TensorOptions().dtype(like.scalar_type()).device(gen ? gen->device() : like.device());
  auto randn = [&](torch::IntArrayRef shape) {
    return gen ? torch::randn(shape, *gen, opts) : torch::randn(shape, opts);
  };
  if (!per_sample()) return draw.at(0) ? randn(like.sizes()).to(like.device()) : torch::Tensor();
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < like.size(0); ++b)
    rows.push_back(draw.at(b) ? randn(like[b].sizes()) : torch::zeros(like[b].sizes(), opts));
  return torch::stack(rows).to(like.device());
}

torch::Tensor Scheduler::postprocess_x0(const torch::Tensor& x0, bool clip) const {
  if (config_.thresholding) {
    // diffusers _threshold_sample: s = clamp(quantile(|x0|, ratio), 1, max) per sample.
    auto dtype = x0.scalar_type();
    auto x = (dtype == torch::kFloat32 || dtype == torch::kFloat64) ? x0 : x0.to(torch::kFloat32);
    auto flat = x.reshape({x.size(0), -1});  // [B, C*H*W]
    auto s = torch::quantile(flat.abs(), config_.dynamic_thresholding_ratio, 1)
                 .clamp(1.0, config_.sample_max_value)
                 .unsqueeze(1);  // [B, 1]
    return (torch::clamp(flat, -s, s) / s).reshape(x0.sizes()).to(dtype);
  }
  if (clip) return x0.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  return x0;
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::vector<std::string> scheduler_names() {
  return {"ddpm", "ddim", "dpmsolver++", "euler"};
}

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const SchedulerConfig& config,
                                          const SchedulerOptions& options) {
  const std::string n = lower(name);
  if (n == "ddpm" || n == "ddpmscheduler") return std::make_unique<DdpmScheduler>(config);
  if (n == "ddim" || n == "ddimscheduler") return std::make_unique<DdimScheduler>(config, options);
  if (n == "dpmsolver++" || n == "dpmsolvermultistepscheduler")
    return std::make_unique<DpmSolverScheduler>(config, options);
  if (n == "euler" || n == "eulerdiscretescheduler")
    return std::make_unique<EulerScheduler>(config);
  throw UsageError(
      cat("[scheduler] unknown scheduler '", name, "' (ddpm, ddim, dpmsolver++, euler)"));
}

}  // namespace dro::sched
