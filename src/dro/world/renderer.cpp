#include "dro/world/renderer.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "dro/core/error.h"
#include "dro/world/geometry.h"

namespace dro::world {

namespace {

constexpr int kTextureCells = 4;  // the noise lattice is (cells + 1)^2 random greys

std::array<double, 3> hsv_to_rgb(double hue_deg, double s, double v) {
  double h = std::fmod(hue_deg, 360.0);
  if (h < 0) h += 360.0;
  const double c = v * s;
  const double hp = h / 60.0;
  const double x = c * (1.0 - std::fabs(std::fmod(hp, 2.0) - 1.0));
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(hp) % 6) {
    case 0:
      r = c, g = x;
      break;
    case 1:
      r = x, g = c;
      break;
    case 2:
      g = c, b = x;
      break;
    case 3:
      g = x, b = c;
      break;
    case 4:
      r = x, b = c;
      break;
    default:
      r = c, b = x;
      break;
  }
  const double m = v - c;
  return {r + m, g + m, b + m};
}

inline uint8_t to_byte(double v) {
  return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0));
}

inline double smooth(double t) {
  return t * t * (3.0 - 2.0 * t);
}

}  // namespace

Nuisance sample_nuisance(Rng& rng) {
  Nuisance n;
  n.size = rng.uniform();
  n.saturation = rng.uniform(kSaturationRange.lo, kSaturationRange.hi);
  n.value = rng.uniform(kValueRange.lo, kValueRange.hi);
  n.hue_shift = rng.uniform(-kHueJitter, kHueJitter);
  n.jitter_x = rng.uniform(-kPositionJitter, kPositionJitter);
  n.jitter_y = rng.uniform(-kPositionJitter, kPositionJitter);
  n.outline = rng.bernoulli(0.5);
  n.background = rng.uniform();
  n.texture = rng.uniform(kTextureRange.lo, kTextureRange.hi);
  n.texture_seed = rng.next_u64();
  return n;
}

io::Image render(const Prompt& prompt, const Nuisance& n, int size) {
  if (size < 8 || size > 4096)
    throw UsageError(cat("[world] render: image size must be in [8, 4096], got ", size));
  const double px = 1.0 / size;  // one pixel, in fractions of the side
  const Point a = anchor(prompt.position);
  const double cx = a.x + n.jitter_x, cy = a.y + n.jitter_y;
  const double r = extent_range(prompt.size).at(std::clamp(n.size, 0.0, 1.0));
  const double outline_px = kOutlineWidth * size;
  const auto fill = hsv_to_rgb(reference_hue(prompt.colour) + n.hue_shift,
                               std::clamp(n.saturation, 0.0, 1.0), std::clamp(n.value, 0.0, 1.0));
  const double grey = background_range(prompt.background).at(std::clamp(n.background, 0.0, 1.0));

  std::array<double, (kTextureCells + 1) * (kTextureCells + 1)> lattice{};
  Rng texture_rng(n.texture_seed);
  for (double& v : lattice) v = texture_rng.uniform(-1.0, 1.0);

  io::Image image(size, size, 3);
  for (int y = 0; y < size; ++y) {
    const double v = (y + 0.5) * px;
    const double ty = v * kTextureCells;
    const int iy = std::min(static_cast<int>(ty), kTextureCells - 1);
    const double fy = smooth(ty - iy);
    uint8_t* row = image.row(y);
    for (int x = 0; x < size; ++x) {
      const double u = (x + 0.5) * px;
      const double tx = u * kTextureCells;
      const int ix = std::min(static_cast<int>(tx), kTextureCells - 1);
      const double fx = smooth(tx - ix);
      const double* l0 = &lattice[iy * (kTextureCells + 1) + ix];
      const double* l1 = l0 + (kTextureCells + 1);
      const double noise =
          (l0[0] * (1 - fx) + l0[1] * fx) * (1 - fy) + (l1[0] * (1 - fx) + l1[1] * fx) * fy;
      const double bg = grey + n.texture * noise;

      const double d = signed_distance(prompt.shape, u - cx, v - cy, r) * size;  // pixels
      const double shape_cover = coverage(d);
      const double fill_cover = n.outline ? coverage(d + outline_px) : shape_cover;
      const double rim_cover = shape_cover - fill_cover;
      for (int c = 0; c < 3; ++c)
        row[3 * x + c] =
            to_byte(bg * (1.0 - shape_cover) + kOutlineLevel * rim_cover + fill[c] * fill_cover);
    }
  }
  return image;
}

}  // namespace dro::world
