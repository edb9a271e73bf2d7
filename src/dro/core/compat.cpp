#include "dro/core/compat.h"

#include <dlfcn.h>

#include <ATen/autocast_mode.h>

#include <cmath>

namespace dro::compat {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, bool upcast) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
#if DRO_TORCH2
  if (!upcast || q.scalar_type() == torch::kFloat) {
    return at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask)
                                                                     : c10::nullopt);
  }
#endif
  const auto dtype = q.scalar_type();
  torch::Tensor qq = upcast ? q.to(torch::kFloat) : q;
  torch::Tensor kk = upcast ? k.to(torch::kFloat) : k;
  // scores: [B, heads, Sq, Sk]
  torch::Tensor scores = torch::matmul(qq * scale, kk.transpose(-1, -2));
  if (mask.defined()) scores = scores + mask.to(scores.scalar_type());
  torch::Tensor probs = torch::softmax(scores, -1).to(dtype);
  return torch::matmul(probs, v);
}

void synchronize(const torch::Device& device) {
  if (!device.is_cuda()) return;
#if DRO_TORCH2
  torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
#else
  // LibTorch 1.x has no public synchronize; a blocking copy of a scalar drains the stream.
  torch::zeros({1}, torch::TensorOptions().device(device)).cpu();
#endif
}

int set_openblas_threads(int n) {
  using Get = int (*)();
  using Set = void (*)(int);
  auto get = reinterpret_cast<Get>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto set = reinterpret_cast<Set>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!get || !set) return -1;
  const int before = get();
  set(n);
  return before;
}

void allow_tf32(bool on) { at::globalContext().setAllowTF32CuBLAS(on); }

// LibTorch 2.4 replaced the per-device functions (is_enabled, is_cpu_enabled, ...) by ones taking
// the device type, and deprecated the old ones.
#if DRO_TORCH2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 4)
#define DRO_AUTOCAST_BY_DEVICE_TYPE 1
#else
#define DRO_AUTOCAST_BY_DEVICE_TYPE 0
#endif

AutocastState autocast_state() {
  AutocastState s;
#if DRO_AUTOCAST_BY_DEVICE_TYPE
  s.cpu_enabled = at::autocast::is_autocast_enabled(at::kCPU);
  s.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
  s.cuda_enabled = at::autocast::is_autocast_enabled(at::kCUDA);
  s.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
#else
  s.cpu_enabled = at::autocast::is_cpu_enabled();
  s.cpu_dtype = at::autocast::get_autocast_cpu_dtype();
  s.cuda_enabled = at::autocast::is_enabled();
  s.cuda_dtype = at::autocast::get_autocast_gpu_dtype();
#endif
  s.cache_enabled = at::autocast::is_autocast_cache_enabled();
  return s;
}

namespace {

void set_autocast_state(const AutocastState& s) {
#if DRO_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(at::kCPU, s.cpu_dtype);
  at::autocast::set_autocast_enabled(at::kCPU, s.cpu_enabled);
  at::autocast::set_autocast_dtype(at::kCUDA, s.cuda_dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, s.cuda_enabled);
#else
  at::autocast::set_autocast_cpu_dtype(s.cpu_dtype);
  at::autocast::set_cpu_enabled(s.cpu_enabled);
  at::autocast::set_autocast_gpu_dtype(s.cuda_dtype);
  at::autocast::set_enabled(s.cuda_enabled);
#endif
  at::autocast::set_autocast_cache_enabled(s.cache_enabled);
}

}  // namespace

AutocastStateGuard::AutocastStateGuard(const AutocastState& state) : prev_(autocast_state()) {
  set_autocast_state(state);
  at::autocast::increment_nesting();
}

AutocastStateGuard::~AutocastStateGuard() {
  // torch.autocast.__exit__'s order: the cache goes with the outermost scope, then the settings.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_state(prev_);
}

AutocastGuard::AutocastGuard(const torch::Device& device, bool bf16, AutocastOn on) {
  if (!bf16) return;
  AutocastState s = autocast_state();
  if (device.is_cuda()) {
    s.cuda_enabled = true;
    s.cuda_dtype = at::kBFloat16;
  } else if (device.is_cpu() && on == AutocastOn::kCudaAndCpu) {
    s.cpu_enabled = true;
    s.cpu_dtype = at::kBFloat16;
  } else {
    return;
  }
  scope_.emplace(s);
}

std::string torch_version() {
#if defined(TORCH_VERSION)
  return TORCH_VERSION;
#elif defined(TORCH_VERSION_MAJOR)
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#else
  return "unknown";
#endif
}

}  // namespace dro::compat
