// Low-rank adapters (LoRA) on linear and conv layers, as peft's LoraLayer: the layer's output plus
// scale * up(down(dropout(x))), with `down` (peft's lora_A) of rank r and `up` (lora_B). For a conv
// layer `down` is a conv with the layer's kernel, stride, padding and dilation and `up` a 1x1 conv.
//
// nn::Linear and nn::Conv2d are torch's layers (same parameters, same keys) with two adapter
// slots that are not registered parameters, so state dicts, EMA and checkpoints of the model are
// untouched by them. Which slot a forward applies is a setting of the calling thread (LoraScope):
// the learner's thread uses the trained adapters, the frozen reference is the same model with
// adapters off, and the buffer filler's thread samples with the policy snapshot, all at once.
#pragma once

#include <memory>

#include <torch/torch.h>

namespace dro::nn {

struct LoraWeights {
  torch::Tensor down;    // lora_A: [r, in] (linear) or [r, in, kh, kw] (conv)
  torch::Tensor up;      // lora_B: [out, r] or [out, r, 1, 1]
  double scale = 1.0;    // alpha / r
  double dropout = 0.0;  // on the adapter's input, while training with gradients only
  // Draws the dropout masks (seeded; shared with the learner so resume stays exact).
  std::shared_ptr<at::Generator> generator;
};

// kTrained is every thread's default: the trained (or applied) adapters.
enum class LoraSlot : int { kOff = -1, kTrained = 0, kPolicy = 1 };
LoraSlot current_lora_slot();

// Sets this thread's slot for the guard's lifetime.
class LoraScope {
 public:
  explicit LoraScope(LoraSlot slot);
  ~LoraScope();
  LoraScope(const LoraScope&) = delete;
  LoraScope& operator=(const LoraScope&) = delete;

 private:
  LoraSlot previous_;
};

struct LoraSlots {
  std::shared_ptr<LoraWeights> trained, policy;
  // The adapter for this thread's slot, or null.
  const LoraWeights* active() const;
};

// y + scale * up(down(dropout(x))) for `w` on a linear layer (conv_layer null) or a conv layer;
// the adapter computes in its own dtype, the sum is in y's.
torch::Tensor add_lora(const torch::Tensor& y, const LoraWeights& w, const torch::Tensor& x,
                       bool training, const torch::nn::Conv2dImpl* conv_layer = nullptr);

struct LinearImpl : torch::nn::LinearImpl {
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x);
  LoraSlots lora;
};
TORCH_MODULE(Linear);

struct Conv2dImpl : torch::nn::Conv2dImpl {
  using torch::nn::Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x);
  // The numeric padding (a LoRA on a conv with "same"/"valid" padding is refused).
  bool numeric_padding() const;
  LoraSlots lora;
};
TORCH_MODULE(Conv2d);

// m's parameters plus the adapter tensors its layers apply on this thread now: what a
// checkpointed block reads, so gradients reach the adapters too.
std::vector<torch::Tensor> parameters_with_lora(const torch::nn::Module& m);

}  // namespace dro::nn
