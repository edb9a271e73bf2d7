#include "dro/train/learner.h"

#include <chrono>
#include <cmath>

#include "dro/core/clock.h"
#include "dro/core/compat.h"
#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/dist/process_group.h"
#include "dro/train/train_config.h"

namespace dro::train {
Learner::Learner(const TrainConfig& cfg, TrainModels& models, const Precision& precision, torch::Device device,
                 dist::Group& group, at::Generator gen)
    : cfg_(cfg), models_(models), precision_(precision), device_(device), group_(group), gen_(std::move(gen)) {
  objective_ = make_objective(cfg);
  if (models.lora) {
    params_ = models.lora->parameters();
    names_ = models.lora->names();
    if (cfg.lora_dropout > 0) models.lora->set_dropout_generator(std::make_shared<at::Generator>(gen_));
  } else {
    for (const auto& p : models.unet->named_parameters(true)) {
      params_.push_back(p.value());
      names_.push_back(p.key());
    }
  }
  double base_lr = cfg.learning_rate;
  if (cfg.scale_lr) base_lr *= cfg.gradient_accumulation_steps * cfg.batch_size * group.size();
  lr_.name = cfg.lr_scheduler;
  lr_.base_lr = base_lr;
  lr_.warmup_steps = cfg.lr_warmup_steps / cfg.gradient_accumulation_steps;
  lr_.total_steps = cfg.optimisation_steps();
  lr_.validate();
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      params_, torch::optim::AdamWOptions(base_lr)
                   .betas({cfg.adam_beta1, cfg.adam_beta2})
                   .weight_decay(cfg.adam_weight_decay)
                   .eps(cfg.adam_epsilon));
  if (group.size() > 1)
    mean_over_ranks_ = [this](const torch::Tensor& x) {
      std::vector<torch::Tensor> v{x.detach().clone()};
      group_.all_reduce_mean(v);
      return v[0];
    };
  if (cfg.use_ema)
    ema_ = std::make_unique<Ema>(params_, cfg.ema_decay, cfg.offload_ema ? torch::Device(torch::kCPU) : device);
}

Denoiser Learner::denoiser(models::UNet2DConditionModel& m, nn::LoraSlot slot, double* timer) const {
  const bool sync = profile_ && device_.is_cuda();
  return [this, &m, slot, timer, sync](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c,
                                       const torch::Tensor& te, const torch::Tensor& ids) {
    auto t0 = Clock::now();
    nn::LoraScope lora(slot);
    compat::AutocastGuard ac(device_, precision_.autocast, compat::AutocastOn::kCudaAndCpu);
    auto out = m->forward(x, t, c, te, ids);
    if (sync) compat::synchronize(device_);
    *timer += seconds_since(t0);
    return out;
  };
}

double Learner::accumulate(const BufferSample& sample, int64_t s, PhaseTimes& times) {
  ObjectiveBatch ob;
  ob.t = sample.t;
  ob.c = sample.c;
  ob.eps_expert = randn(sample.x0.sizes(), gen_, sample.x0.options());
  ob.xt_expert = models_.noise.add_noise(sample.x0, ob.eps_expert, sample.t);
  if (sample.x0_rejected.defined()) {
    // A preference pair: the rejected image takes the chosen one's timestep and noise.
    ob.eps_policy = ob.eps_expert;
    ob.xt_policy = models_.noise.add_noise(sample.x0_rejected, ob.eps_expert, sample.t);
  } else {
    ob.xt_policy = sample.xt;
    ob.eps_policy = sample.eps;
  }
  ob.text_embeds = sample.c_pooled;
  ob.time_ids = sample.add_time_ids;
  ob.labels = sample.labels;
  ob.mean_over_ranks = mean_over_ranks_;
  auto out = objective_->compute(denoiser(models_.unet, nn::LoraSlot::kTrained, &times.trained_forward),
                                 denoiser(models_.reference_model(), models_.reference_slot(), &times.reference), ob);
  const double loss = out.loss.item<double>();
  if (!std::isfinite(loss))
    throw Error(cat("[train] the loss became ", loss, " at micro-step ", s,
                    "; stopping without writing state (the last saved state in ", cfg_.logdir,
                    "/state is intact). Lower --learning-rate or check the data."));
  const auto t0 = Clock::now();
  (out.loss / static_cast<double>(cfg_.gradient_accumulation_steps)).backward();
  if (profile_ && device_.is_cuda()) compat::synchronize(device_);
  times.backward += seconds_since(t0);
  sums_["loss"] += loss;
  for (const auto& [k, v] : out.stats) sums_[k] += v.mean().item<double>();
  ++count_;
  return loss;
}

void Learner::average_gradients() {
  if (group_.size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (auto& p : params_) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // every rank sends the same set
    grads.push_back(p.grad());
  }
  group_.all_reduce_mean(grads);
}

StepRecord Learner::optimise(int64_t micro_step, bool log, PhaseTimes& times) {
  const auto t0 = Clock::now();
  torch::NoGradGuard no_grad;
  average_gradients();
  double norm = 0;
  if (cfg_.max_grad_norm > 0) {
    norm = torch::nn::utils::clip_grad_norm_(params_, cfg_.max_grad_norm);
  } else {
    double sq = 0;
    for (const auto& p : params_)
      if (p.grad().defined()) sq += p.grad().to(torch::kFloat64).square().sum().item<double>();
    norm = std::sqrt(sq);
  }
  if (!std::isfinite(norm))
    throw Error(cat("[train] the gradient norm became ", norm, " at optimisation step ", opt_step_ + 1,
                    " (micro-step ", micro_step, "); stopping without writing state (the last saved state in ",
                    cfg_.logdir, "/state is intact). Lower --learning-rate or check the data."));
  const double rate = lr_.lr(opt_step_);
  for (auto& g : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(rate);
  optimizer_->step();
  optimizer_->zero_grad();
  if (ema_) ema_->update(params_);
  ++opt_step_;
  if (profile_ && device_.is_cuda()) compat::synchronize(device_);
  times.optimizer += seconds_since(t0);
  StepRecord r;
  r.opt_step = opt_step_;
  r.lr = rate;
  r.grad_norm = norm;
  if (log) {
    double n = static_cast<double>(count_);
    std::vector<double> v;
    for (const auto& [k, s] : sums_) v.push_back(s);
    if (group_.size() > 1) {  // a collective: every rank takes part, in the same key order
      v.push_back(n);
      v = group_.all_reduce_sum(v);
      n = v.back();
    }
    size_t i = 0;
    for (const auto& [k, s] : sums_) r.means[k] = v[i++] / std::max(1.0, n);
  }
  last_step_loss_ = count_ ? sums_["loss"] / static_cast<double>(count_) : 0.0;
  sums_.clear();
  count_ = 0;
  return r;
}

double Learner::running_loss() const {
  if (!count_) return last_step_loss_;
  auto it = sums_.find("loss");
  return it == sums_.end() ? 0.0 : it->second / static_cast<double>(count_);
}

io::NamedTensors Learner::accumulation_state() const {
  io::NamedTensors t;
  if (count_ == 0) return t;
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].grad().defined()) t.emplace_back("grad/" + names_[i], params_[i].grad());
  for (const auto& [k, v] : sums_) t.emplace_back("sum/" + k, torch::tensor(v, torch::kFloat64));
  t.emplace_back("count", torch::tensor(count_, torch::kInt64));
  return t;
}

void Learner::set_accumulation_state(const std::map<std::string, torch::Tensor>& t, const std::string& where) {
  torch::NoGradGuard no_grad;
  optimizer_->zero_grad();
  sums_.clear();
  count_ = 0;
  if (t.empty()) return;
  auto count = t.find("count");
  if (count == t.end()) throw IoError(cat("[train] --resume: ", where, ": accumulation state without 'count'"));
  count_ = count->second.item<int64_t>();
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = t.find("grad/" + names_[i]);
    if (it == t.end()) continue;  // no gradient reached it yet
    if (it->second.sizes() != params_[i].sizes())
      throw IoError(cat("[train] --resume: ", where, ": gradient of '", names_[i], "' has shape ", it->second.sizes(),
                        ", the parameter's is ", params_[i].sizes()));
    params_[i].mutable_grad() = it->second.to(params_[i].options()).clone();
  }
  for (const auto& [k, v] : t)
    if (k.rfind("sum/", 0) == 0) sums_[k.substr(4)] = v.item<double>();
}

void Learner::refresh_policy() {
  if (models_.lora) return models_.lora->copy_to_policy();
  torch::NoGradGuard no_grad;
  auto dst = models_.policy_copy->parameters(true);
  for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(params_[i]);
}

}  // namespace dro::train
