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

}  // namespace dro
