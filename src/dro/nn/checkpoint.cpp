#include "dro/nn/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "dro/core/compat.h"

namespace dro::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Default generators with their states at forward.
using RngStates = std::vector<std::pair<at::Generator, torch::Tensor>>;

RngStates rng_states(const std::vector<at::Generator>& gens) {
  RngStates states;
  for (const auto& g : gens) {
    at::Generator gen = g;
    std::lock_guard<std::mutex> lock(gen.mutex());
    states.emplace_back(gen, gen.get_state());
  }
  return states;
}

// The CPU's default generator and that of every CUDA device the tensors are on: the streams
// torch.utils.checkpoint preserves (dropout draws from them).
RngStates save_rng(const std::vector<torch::Tensor>& tensors) {
  std::vector<at::Generator> gens{at::detail::getDefaultCPUGenerator()};
  std::set<c10::DeviceIndex> cuda;
  for (const auto& t : tensors)
    if (t.is_cuda()) cuda.insert(t.get_device());
  for (c10::DeviceIndex i : cuda)
    gens.push_back(at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, i)));
  return rng_states(gens);
}

void restore_rng(const RngStates& states) {
  for (const auto& [g, state] : states) {
    at::Generator gen = g;
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
}

// Replays the forward's random streams for its lifetime, then puts the current ones back: the
// recomputation draws what the forward drew, and the rest of the program sees the same streams
// as without checkpointing.
class RngFork {
 public:
  explicit RngFork(const RngStates& forward) {
    std::vector<at::Generator> gens;
    for (const auto& s : forward) gens.push_back(s.first);
    current_ = rng_states(gens);
    restore_rng(forward);
  }
  ~RngFork() { restore_rng(current_); }
  RngFork(const RngFork&) = delete;
  RngFork& operator=(const RngFork&) = delete;

 private:
  RngStates current_;
};

// What backward needs besides the saved tensors. Held in the context as an IValue capsule because
// saved_data only stores IValues.
struct CheckpointState : torch::CustomClassHolder {
  CheckpointFn fn;
  std::vector<bool> defined;       // per caller input: was it a defined tensor?
  size_t num_inputs = 0;           // defined inputs; the parameters follow them in the tensor list
  compat::AutocastState autocast;  // at forward; the recomputation runs under it
  RngStates rng;                   // at forward; empty when no graph is recorded
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
    torch::Tensor out;
    {
      // Weight casts made here have no graph. Kept out of autocast's cache, where a later use of
      // the same weight in this autocast scope (or a recomputation inside it) would pick them up
      // and lose the weight's gradient. The values are the same either way.
      std::optional<compat::AutocastStateGuard> no_cache;
      if (state->autocast.any_enabled() && state->autocast.cache_enabled) {
        compat::AutocastState s = state->autocast;
        s.cache_enabled = false;
        no_cache.emplace(s);
      }
      out = state->fn(expand(*state, inputs));
    }
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
      // The forward's random streams and autocast settings: backward usually runs after the
      // autocast scope has ended, and on CUDA on an autograd worker thread with its own state.
      std::optional<RngFork> rng;
      if (!state->rng.empty()) rng.emplace(state->rng);
      compat::AutocastStateGuard autocast(state->autocast);
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
  state->autocast = compat::autocast_state();
  // Only trainable parameters need an edge; frozen ones are simply read by fn.
  for (const auto& p : params)
    if (p.defined() && p.requires_grad()) tensors.push_back(p);
  // Without grad mode no backward will come, so no random state need be kept.
  if (torch::GradMode::is_enabled()) state->rng = save_rng(tensors);
  return CheckpointFunction::apply(state, at::TensorList(tensors));
}

}  // namespace dro::nn
