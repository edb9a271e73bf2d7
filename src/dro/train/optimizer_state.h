// AdamW state to and from plain tensors (for safetensors state files), keyed by parameter order.
#pragma once

#include <torch/torch.h>

#include "dro/io/safetensors.h"

namespace dro::train {

// exp_avg.<i>, exp_avg_sq.<i>, step.<i> for every parameter i that has state.
io::NamedTensors adamw_state(torch::optim::AdamW& optimizer, const std::vector<torch::Tensor>& params);
// Restores what adamw_state wrote; IoError naming the key when shapes do not match.
void set_adamw_state(torch::optim::AdamW& optimizer, const std::vector<torch::Tensor>& params,
                     const std::map<std::string, torch::Tensor>& tensors, const std::string& where);

}  // namespace dro::train
