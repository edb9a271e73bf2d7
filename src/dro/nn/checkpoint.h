// Gradient checkpointing for LibTorch C++, which has no torch.utils.checkpoint: the wrapped
// function runs without recording a graph, only its inputs are kept, and backward runs it again
// with grad enabled to get the gradients. Memory for activations inside the function is traded
// for one extra forward in backward.
//
// As torch.utils.checkpoint (use_reentrant, preserve_rng_state), the recomputation runs under the
// autocast settings (CPU and CUDA) and the default random generators' states (CPU and the CUDA
// devices of the tensors) that the forward saw, so under mixed precision and with dropout it
// computes what the forward computed. Explicitly passed generators are not replayed.
#pragma once

#include <functional>
#include <vector>

#include <torch/torch.h>

namespace dro::nn {

// The checkpointed computation: tensors in, one tensor out. Undefined input tensors are allowed
// and passed through as undefined.
using CheckpointFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// fn(inputs), with activations recomputed in backward. `params` are the parameters fn reads
// (usually module.parameters()); their gradients flow through the normal autograd edges, so both
// Tensor::backward() and torch::autograd::grad() see them. Call it only when a graph is wanted
// (GradMode enabled); it still works otherwise but saves nothing.
torch::Tensor checkpoint(const CheckpointFn& fn, const std::vector<torch::Tensor>& inputs,
                         const std::vector<torch::Tensor>& params);

// Whether a block with checkpointing switched on should checkpoint now: diffusers checkpoints only
// when grad mode is on (not under NoGradGuard / InferenceMode).
inline bool should_checkpoint(bool enabled) {
  return enabled && torch::GradMode::is_enabled();
}

}  // namespace dro::nn
