// Seeded random streams. Every random draw in dro goes through an explicit generator so the same
// seed and thread count give the same result, and generator states are saved for exact resume.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace dro {

// A CPU generator seeded with `seed` (torch's Mersenne Twister, as torch.Generator().manual_seed).
at::Generator make_generator(uint64_t seed);

// Derives a well-mixed seed for a named stream from a base seed ("data", "filler", rank ...).
uint64_t derive_seed(uint64_t base, const std::string& stream, uint64_t index = 0);

// Generator state as a uint8 tensor and back (for state files).
torch::Tensor generator_state(const at::Generator& gen);
void set_generator_state(at::Generator& gen, const torch::Tensor& state);

// Standard normal noise of `shape` drawn on CPU from `gen`, then moved to `options`' device/dtype
// (so results do not depend on the device the model runs on).
torch::Tensor randn(at::IntArrayRef shape, at::Generator& gen, const torch::TensorOptions& options = {});

}  // namespace dro
