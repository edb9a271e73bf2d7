// Device selection shared by the subcommands.
#pragma once

#include <string>

#include <torch/torch.h>

#include "dro/core/error.h"

namespace dro::app {

// "auto" picks CUDA when available, else CPU; "cpu", "cuda", "cuda:N" as given.
inline torch::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  try {
    torch::Device d(name);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw UsageError(cat("--device ", name, ": CUDA is not available in this build or machine"));
    return d;
  } catch (const c10::Error&) {
    throw UsageError(cat("--device '", name, "' is not a device (auto, cpu, cuda, cuda:N)"));
  }
}

}  // namespace dro::app
