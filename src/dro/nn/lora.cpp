#include "dro/nn/lora.h"

#include "dro/core/compat.h"
#include "dro/core/error.h"

namespace dro::nn {
namespace {

thread_local LoraSlot t_slot = LoraSlot::kTrained;

const torch::ExpandingArray<2>* padding_of(const torch::nn::Conv2dImpl& c) {
#if DRO_TORCH2
  return std::get_if<torch::ExpandingArray<2>>(&c.options.padding());
#else
  return c10::get_if<torch::ExpandingArray<2>>(&c.options.padding());
#endif
}

}  // namespace

LoraSlot current_lora_slot() {
  return t_slot;
}

LoraScope::LoraScope(LoraSlot slot) : previous_(t_slot) {
  t_slot = slot;
}
LoraScope::~LoraScope() {
  t_slot = previous_;
}

const LoraWeights* LoraSlots::active() const {
  switch (t_slot) {
    case LoraSlot::kTrained:
      return trained.get();
    case LoraSlot::kPolicy:
      return policy ? policy.get() : trained.get();
    case LoraSlot::kOff:
      return nullptr;
  }
  return nullptr;
}

torch::Tensor add_lora(const torch::Tensor& y, const LoraWeights& w, const torch::Tensor& x,
                       bool training, const torch::nn::Conv2dImpl* conv) {
  // The adapter computes in its own dtype (fp32 adapters on a bf16 base, as peft casts), except
  // under autocast, which casts both operands of its matmuls itself.
  const auto ac = compat::autocast_state();
  const bool autocast = x.is_cuda() ? ac.cuda_enabled : x.is_cpu() && ac.cpu_enabled;
  torch::Tensor h = autocast ? x : x.to(w.down.scalar_type());
  if (w.dropout > 0 && training && torch::GradMode::is_enabled()) {
    if (!w.generator) throw std::logic_error("LoRA dropout without a generator");
    // Drawn on the CPU from the seeded stream (as every draw in dro), so masks do not depend on the
    // device.
    const torch::Tensor keep =
        at::bernoulli(torch::empty(h.sizes(), torch::kFloat32), 1.0 - w.dropout, *w.generator)
            .div_(1.0 - w.dropout)
            .to(h.device(), h.scalar_type());
    h = h * keep;
  }
  if (!conv)
    return torch::add(y, torch::linear(torch::linear(h, w.down), w.up).to(y.scalar_type()),
                      w.scale);
  const auto* pad = padding_of(*conv);
  if (!pad)
    throw UsageError("[lora] a conv layer with 'same'/'valid' padding cannot take an adapter");
  h = torch::conv2d(h, w.down, {}, conv->options.stride(), *pad, conv->options.dilation(),
                    conv->options.groups());
  return torch::add(y, torch::conv2d(h, w.up).to(y.scalar_type()), w.scale);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::LinearImpl::forward(x);
  if (const LoraWeights* a = lora.active()) y = add_lora(y, *a, x, is_training());
  return y;
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::Conv2dImpl::forward(x);
  if (const LoraWeights* a = lora.active()) y = add_lora(y, *a, x, is_training(), this);
  return y;
}

std::vector<torch::Tensor> parameters_with_lora(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out = m.parameters();
  for (const auto& sub : m.modules(/*include_self=*/true)) {
    const LoraWeights* a = nullptr;
    if (const auto* l = dynamic_cast<const LinearImpl*>(sub.get())) a = l->lora.active();
    if (const auto* c = dynamic_cast<const Conv2dImpl*>(sub.get())) a = c->lora.active();
    if (a) {
      out.push_back(a->down);
      out.push_back(a->up);
    }
  }
  return out;
}

bool Conv2dImpl::numeric_padding() const {
  return padding_of(*this) != nullptr;
}

}  // namespace dro::nn
