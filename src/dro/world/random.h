// The world's random numbers: a small explicit generator (xoshiro256**, seeded through SplitMix64)
// with its own uniform, normal and integer draws. std:: distributions are avoided on purpose:
// their algorithms differ between standard libraries, and the world's files must be the same
// bytes for the same seed everywhere. (Normal draws use std::log/std::sqrt/std::cos, which glibc
// rounds correctly; the renderer's float arithmetic is plain IEEE without contraction.)
#pragma once

#include <cstdint>
#include <initializer_list>

namespace dro::world {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // An independent stream for (seed, tags...): each image or session gets its own stream, so
  // results do not depend on the order or number of other draws.
  static Rng derive(uint64_t seed, std::initializer_list<uint64_t> tags);

  uint64_t next_u64();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), unbiased; n > 0.
  uint64_t below(uint64_t n);
  bool bernoulli(double p) { return uniform() < p; }
  // Standard normal (Box-Muller, one value per call).
  double normal();

 private:
  uint64_t s_[4];
};

// SplitMix64 finaliser: a good 64-bit mixer, also used to hash tags into seeds.
uint64_t mix64(uint64_t x);

}  // namespace dro::world
