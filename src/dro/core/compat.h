// The one place where LibTorch 1.13 (Debian, CPU) and LibTorch 2.x (CUDA wheels) differ.
#pragma once

#include <optional>

#include <torch/torch.h>

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif

#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
#define DRO_TORCH2 1
#else
#define DRO_TORCH2 0
#endif

namespace dro::compat {

// softmax(q k^T * scale + mask) v. q: [B, heads, Sq, d], k/v: [B, heads, Sk, d], mask broadcastable
// to [B, heads, Sq, Sk] (additive) or undefined. Fused kernel on LibTorch 2.x, classic path otherwise.
// When upcast is true the scores are computed in float32 (diffusers' upcast_attention).
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask = {}, bool upcast = false);

// Waits for queued kernels on `device` (no-op on CPU).
void synchronize(const torch::Device& device);

// Allows TF32 matrix products on CUDA (no-op elsewhere).
void allow_tf32(bool on);

// The thread count of OpenBLAS's own pool when LibTorch's BLAS is OpenBLAS (it ignores
// at::set_num_threads and serialises callers from several threads); returns the previous count,
// or -1 (and does nothing) for another BLAS.
int set_openblas_threads(int n);

// The calling thread's autocast settings for the two device types dro runs on, as
// torch.utils.checkpoint saves them at forward. Other device types (XPU ...) are left alone.
struct AutocastState {
  bool cpu_enabled = false;
  at::ScalarType cpu_dtype = at::kBFloat16;
  bool cuda_enabled = false;
  at::ScalarType cuda_dtype = at::kHalf;
  bool cache_enabled = true;  // autocast's cache of weight casts

  bool any_enabled() const { return cpu_enabled || cuda_enabled; }
  bool operator==(const AutocastState& o) const {
    return cpu_enabled == o.cpu_enabled && cpu_dtype == o.cpu_dtype &&
           cuda_enabled == o.cuda_enabled && cuda_dtype == o.cuda_dtype &&
           cache_enabled == o.cache_enabled;
  }
  bool operator!=(const AutocastState& o) const { return !(*this == o); }
};

// The current settings of the calling thread.
AutocastState autocast_state();

// Sets `state` for the lifetime of the guard and then puts the previous settings back, also when
// unwinding. Like torch.autocast it counts nesting and clears the weight-cast cache when the
// outermost guard ends, so no cast outlives the weights' next in-place update.
class AutocastStateGuard {
 public:
  explicit AutocastStateGuard(const AutocastState& state);
  ~AutocastStateGuard();
  AutocastStateGuard(const AutocastStateGuard&) = delete;
  AutocastStateGuard& operator=(const AutocastStateGuard&) = delete;

 private:
  AutocastState prev_;
};

// Which devices AutocastGuard acts on. Mixed precision in the trainer is CUDA-only: on a CPU
// device it runs in float32. kCudaAndCpu also turns bf16 autocast on for a CPU device.
enum class AutocastOn { kCudaOnly, kCudaAndCpu };

// bf16 autocast on `device` for the lifetime of the guard; does nothing when bf16 is false, and
// on a CPU device unless `on` is kCudaAndCpu. The other device type's settings are untouched.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, bool bf16, AutocastOn on = AutocastOn::kCudaOnly);
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<AutocastStateGuard> scope_;
};

// Human-readable LibTorch version, e.g. "1.13.1".
std::string torch_version();

}  // namespace dro::compat
