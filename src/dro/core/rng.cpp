#include "dro/core/rng.h"

#include <ATen/CPUGeneratorImpl.h>

namespace dro {

at::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

uint64_t derive_seed(uint64_t base, const std::string& stream, uint64_t index) {
  // splitmix64 over (base, FNV-1a(stream), index)
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : stream) h = (h ^ ch) * 1099511628211ull;
  uint64_t x = base ^ (h + 0x9E3779B97F4A7C15ull * (index + 1));
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFFull;
}

torch::Tensor generator_state(const at::Generator& gen_in) {
  at::Generator gen = gen_in;  // shares the implementation
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(at::Generator& gen, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

torch::Tensor randn(at::IntArrayRef shape, at::Generator& gen, const torch::TensorOptions& options) {
  auto t = at::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat32));
  return t.to(options.device(), options.dtype().toScalarType());
}

}  // namespace dro
