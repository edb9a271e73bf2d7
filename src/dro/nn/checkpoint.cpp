#include "dro/nn/checkpoint.h"

#include <torch/csrc/autograd/custom_function.h>

namespace dro::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides the saved tensors. Held in the context as an IValue capsule because
// saved_data only stores IValues.
struct CheckpointState : torch::CustomClassHolder {
  CheckpointFn fn;
  std::vector<bool> defined;  // per caller input: was it a defined tensor?
  size_t num_inputs = 0;      // defined inputs; the parameters follow them in the tensor list
};

// Puts undefined tensors back where the caller had them.
std::vector<torch::Tensor> expand(const CheckpointState& s,
                                  const std::vector<torch::Tensor>& compact) {
  std::vector<torch::Tensor> full;
  full.reserve(s.defined.size());
  size_t k = 0;
  for (bool d : s.defined) full.push_back(d ? compact[k++] : torch::Tensor());
  return full;
}

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // Runs with grad disabled (Function::apply turns it off), so no activations are kept.
  static torch::Tensor forward(AutogradContext* ctx, c10::intrusive_ptr<CheckpointState> state,
                               at::TensorList tensors) {
    // Inputs and parameters are both saved: the version check then catches a parameter changed
    // in place (an optimizer step) between forward and backward, which would make the
    // recomputation wrong.
    ctx->save_for_backward(tensors.vec());
    std::vector<torch::Tensor> inputs(tensors.begin(), tensors.begin() + state->num_inputs);
    torch::Tensor out = state->fn(expand(*state, inputs));
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto state =
        c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    const variable_list saved = ctx->get_saved_variables();
    // Slot 0 answers the state argument (not a tensor); then one slot per tensor.
    variable_list result(1 + saved.size());

    std::vector<torch::Tensor> detached(state->num_inputs);
    for (size_t i = 0; i < state->num_inputs; ++i) {
      detached[i] = saved[i].detach();
      if (saved[i].requires_grad()) detached[i].requires_grad_(true);
    }
    torch::Tensor out;
    {
      torch::AutoGradMode enable(true);
      out = state->fn(expand(*state, detached));
    }
    if (!out.requires_grad()) return result;

    std::vector<torch::Tensor> targets;
    std::vector<size_t> slots;
    for (size_t i = 0; i < saved.size(); ++i) {
      const torch::Tensor& t = i < state->num_inputs ? detached[i] : saved[i];
      if (!t.requires_grad()) continue;
      targets.push_back(t);
      slots.push_back(1 + i);
    }
    if (targets.empty()) return result;
    auto grads = torch::autograd::grad({out}, targets, {grad_outputs[0]}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t k = 0; k < grads.size(); ++k) result[slots[k]] = grads[k];
    return result;
  }
};

}  // namespace

torch::Tensor checkpoint(const CheckpointFn& fn, const std::vector<torch::Tensor>& inputs,
                         const std::vector<torch::Tensor>& params) {
  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = fn;
  std::vector<torch::Tensor> tensors;
  tensors.reserve(inputs.size() + params.size());
  for (const auto& x : inputs) {
    state->defined.push_back(x.defined());
    if (x.defined()) tensors.push_back(x);
  }
  state->num_inputs = tensors.size();
  // Only trainable parameters need an edge; frozen ones are simply read by fn.
  for (const auto& p : params)
    if (p.defined() && p.requires_grad()) tensors.push_back(p);
  return CheckpointFunction::apply(state, at::TensorList(tensors));
}

}  // namespace dro::nn
