// Device and dtype names given on the command line.
#pragma once

#include <string>

#include <torch/torch.h>

namespace dro {

// "auto" picks CUDA when available, else CPU; "cpu", "cuda", "cuda:N" as given. UsageError for a
// name that is not a device or for CUDA where none is available; `flag` names the option.
torch::Device resolve_device(const std::string& name, const std::string& flag = "--device");

// "fp32", "bf16" or "fp16" (the spellings of --dtype, --save-dtype ...); UsageError naming `flag`
// for another.
torch::Dtype dtype_named(const std::string& name, const std::string& flag = "--dtype");

}  // namespace dro
