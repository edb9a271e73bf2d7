#include "dro/core/device.h"

#include "dro/core/error.h"

namespace dro {

torch::Device resolve_device(const std::string& name, const std::string& flag) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  try {
    torch::Device d(name);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw UsageError(cat(flag, " ", name, ": CUDA is not available in this build or on this machine"));
    return d;
  } catch (const c10::Error&) {
    throw UsageError(cat(flag, " '", name, "' is not a device (auto, cpu, cuda, cuda:N)"));
  }
}

torch::Dtype dtype_named(const std::string& name, const std::string& flag) {
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  if (name == "fp16") return torch::kFloat16;
  throw UsageError(cat(flag, " '", name, "': expected fp32, bf16 or fp16"));
}

}  // namespace dro
