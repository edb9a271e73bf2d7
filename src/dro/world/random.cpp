#include "dro/world/random.h"

#include <cmath>

namespace dro::world {

namespace {
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}
}  // namespace

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) {
    x += kGolden;
    s = mix64(x);
  }
}

Rng Rng::derive(uint64_t seed, std::initializer_list<uint64_t> tags) {
  uint64_t h = mix64(seed + kGolden);
  for (uint64_t t : tags) h = mix64(h ^ (t + kGolden + (h << 6) + (h >> 2)));
  return Rng(h);
}

uint64_t Rng::next_u64() {  // xoshiro256** (Blackman and Vigna)
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

uint64_t Rng::below(uint64_t n) {
  // Rejection of the top partial range (Lemire's bound) keeps it exactly uniform.
  const uint64_t limit = -n % n;  // 2^64 mod n
  for (;;) {
    const uint64_t x = next_u64();
    const unsigned __int128 m = static_cast<unsigned __int128>(x) * n;
    if (static_cast<uint64_t>(m) >= limit) return static_cast<uint64_t>(m >> 64);
  }
}

double Rng::normal() {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace dro::world
