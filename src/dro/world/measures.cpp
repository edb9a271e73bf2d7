#include "dro/world/measures.h"

#include <algorithm>
#include <cmath>

#include "dro/core/error.h"
#include "dro/world/geometry.h"

namespace dro::world {

namespace {

constexpr double kMinThreshold =
    0.12;  // RGB distance from the background that makes a pixel "object"
constexpr double kNoiseFactor = 3.0;     // the threshold rises with the background texture
constexpr double kDarkTolerance = 0.02;  // ignore rim darkness below this (quantisation, texture)
constexpr double kRimDepth = 0.6;        // rim darkness (in units of the darker side's grey) per
                                         // boundary pixel that reads as a clear outline

// Value at quantile q (0..1) of v (copied, nth_element).
double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

double hsv_hue(const std::array<double, 3>& p) {
  const double mx = std::max({p[0], p[1], p[2]}), mn = std::min({p[0], p[1], p[2]});
  const double c = mx - mn;
  if (c <= 1e-12) return 0.0;
  double h;
  if (mx == p[0])
    h = std::fmod((p[1] - p[2]) / c, 6.0);
  else if (mx == p[1])
    h = (p[2] - p[0]) / c + 2.0;
  else
    h = (p[0] - p[1]) / c + 4.0;
  h *= 60.0;
  return h < 0 ? h + 360.0 : h;
}

double hue_distance(double a, double b) {
  const double d = std::fabs(std::fmod(a - b, 360.0));
  return std::min(d, 360.0 - d);
}

}  // namespace

double Analysis::extent(Shape s) const {
  return std::sqrt(area / area_factor(s));
}

Analysis analyse(const io::Image& image) {
  const int W = image.width, H = image.height, C = image.channels;
  if (W < 8 || H != W || (C != 1 && C != 3 && C != 4) ||
      image.pixels.size() != static_cast<size_t>(W) * H * C)
    throw UsageError(
        cat("[world] analyse: expected a square RGB, grey or RGBA image of at least 8x8, got ", W,
            "x", H, "x", C));
  const int N = W * H;
  std::vector<std::array<double, 3>> rgb(N);
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < 3; ++c)
      rgb[i][c] = image.pixels[static_cast<size_t>(i) * C + (C == 1 ? 0 : c)] / 255.0;
  auto value_of = [&](int i) { return std::max({rgb[i][0], rgb[i][1], rgb[i][2]}); };

  Analysis a;
  // Background: per-channel median of the frame.
  std::vector<int> frame;
  for (int x = 0; x < W; ++x) frame.push_back(x), frame.push_back((H - 1) * W + x);
  for (int y = 1; y < H - 1; ++y) frame.push_back(y * W), frame.push_back(y * W + W - 1);
  std::array<double, 3> bg{};
  for (int c = 0; c < 3; ++c) {
    std::vector<double> v;
    for (int i : frame) v.push_back(rgb[i][c]);
    bg[c] = quantile(v, 0.5);
  }
  a.background_value = std::max({bg[0], bg[1], bg[2]});
  a.background = a.background_value < 0.55 ? Background::kDark : Background::kLight;

  std::vector<double> dist(N);
  for (int i = 0; i < N; ++i) {
    const double d0 = rgb[i][0] - bg[0], d1 = rgb[i][1] - bg[1], d2 = rgb[i][2] - bg[2];
    dist[i] = std::sqrt(d0 * d0 + d1 * d1 + d2 * d2);
  }
  {
    std::vector<double> v;
    for (int i : frame) v.push_back(dist[i]);
    a.noise = quantile(v, 0.5);
  }
  const double threshold = std::max(kMinThreshold, kNoiseFactor * a.noise);

  // Mask: the largest 8-connected part above the threshold, with its holes filled.
  std::vector<int> label(N, -1);
  int best_label = -1;
  size_t best_size = 0;
  std::vector<int> stack;
  for (int s = 0, next = 0; s < N; ++s) {
    if (label[s] >= 0 || dist[s] <= threshold) continue;
    size_t count = 0;
    stack.assign(1, s);
    label[s] = next;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      ++count;
      const int x = i % W, y = i / W;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
          const int j = ny * W + nx;
          if (label[j] < 0 && dist[j] > threshold) label[j] = next, stack.push_back(j);
        }
    }
    if (count > best_size) best_size = count, best_label = next;
    ++next;
  }
  if (best_size < 3) return a;  // nothing there
  std::vector<uint8_t> mask(N, 0);
  for (int i = 0; i < N; ++i) mask[i] = label[i] == best_label;
  {
    std::vector<uint8_t> outside(N, 0);  // background reachable from the frame (4-connected)
    stack.clear();
    for (int i : frame)
      if (!mask[i] && !outside[i]) outside[i] = 1, stack.push_back(i);
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      const int x = i % W, y = i / W;
      const int nb[4][2] = {{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}};
      for (const auto& n : nb) {
        if (n[0] < 0 || n[1] < 0 || n[0] >= W || n[1] >= H) continue;
        const int j = n[1] * W + n[0];
        if (!mask[j] && !outside[j]) outside[j] = 1, stack.push_back(j);
      }
    }
    for (int i = 0; i < N; ++i) mask[i] = !outside[i];
  }
  auto in_mask = [&](int x, int y) {
    return x >= 0 && y >= 0 && x < W && y < H && mask[y * W + x];
  };

  // Core: mask pixels whose four neighbours are in the mask (no edge mixing with the background).
  std::vector<uint8_t> core(N, 0);
  int core_count = 0, ring_count = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      if (mask[y * W + x]) {
        core[y * W + x] =
            in_mask(x - 1, y) && in_mask(x + 1, y) && in_mask(x, y - 1) && in_mask(x, y + 1);
        core_count += core[y * W + x];
        ring_count += !core[y * W + x];
      }
  if (core_count == 0) core = mask, core_count = ring_count, ring_count = 0;
  std::vector<double> core_dist;
  for (int i = 0; i < N; ++i)
    if (core[i]) core_dist.push_back(dist[i]);
  const double core_contrast = quantile(core_dist, 0.5);

  // Coverage: 1 in the core; around it, the pixel's contrast relative to the strongest core
  // contrast next to it (a mix of c object and 1 - c background has contrast c times the object's).
  std::vector<double> alpha(N, 0.0);
  double sum = 0, sx = 0, sy = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const int i = y * W + x;
      double al = 0.0;
      if (core[i]) {
        al = 1.0;
      } else {
        bool near = false;
        double ref = 0.0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            if (!in_mask(x + dx, y + dy)) continue;
            near = true;
            const int j = (y + dy) * W + x + dx;
            if (core[j]) ref = std::max(ref, dist[j]);
          }
        if (!near) continue;
        if (ref <= 0.0) ref = core_contrast;
        al = std::clamp((dist[i] - a.noise) / std::max(ref - a.noise, 1e-6), 0.0, 1.0);
      }
      alpha[i] = al;
      sum += al;
      sx += al * (x + 0.5);
      sy += al * (y + 0.5);
    }
  if (sum <= 0.0) return a;
  a.found = true;
  a.area = sum / N;
  a.cx = sx / sum / W;
  a.cy = sy / sum / H;

  // Colour of the core: hue of the mean (mixing with grey keeps the hue), S and V percentiles.
  std::vector<double> sat, val;
  for (int i = 0; i < N; ++i) {
    if (!core[i]) continue;
    for (int c = 0; c < 3; ++c) a.rgb[c] += rgb[i][c];
    const double mx = value_of(i), mn = std::min({rgb[i][0], rgb[i][1], rgb[i][2]});
    sat.push_back(mx > 0 ? (mx - mn) / mx : 0.0);
    val.push_back(mx);
  }
  for (double& c : a.rgb) c /= core_count;
  a.hue = hsv_hue(a.rgb);
  a.saturation = quantile(sat, 0.9);
  a.value = quantile(val, 0.9);
  double best_hue = 1e9;
  for (Colour c : kColours) {
    const double d = hue_distance(a.hue, reference_hue(c));
    if (d < best_hue) best_hue = d, a.colour = c;
  }

  // Outline: pixels darker than both the object and the background can only be a dark rim.
  {
    const double m = std::min(a.value, a.background_value);
    double darkness = 0.0;
    for (int i = 0; i < N; ++i)
      if (mask[i]) darkness += std::max(0.0, m - value_of(i) - kDarkTolerance);
    a.outline =
        m > 0 ? std::clamp(darkness / (std::max(ring_count, 1) * kRimDepth * m), 0.0, 1.0) : 0.0;
  }

  // Shape: soft IoU with each template of the same area and centroid.
  for (size_t s = 0; s < kShapes.size(); ++s) {
    const double r = a.extent(kShapes[s]);
    double inter = 0, uni = 0;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const double t = coverage(
            signed_distance(kShapes[s], (x + 0.5) / W - a.cx, (y + 0.5) / H - a.cy, r) * W);
        const double al = alpha[y * W + x];
        inter += std::min(al, t);
        uni += std::max(al, t);
      }
    a.shape_fit[s] = uni > 0 ? inter / uni : 0.0;
  }
  a.shape = kShapes[std::max_element(a.shape_fit.begin(), a.shape_fit.end()) - a.shape_fit.begin()];

  const double size_threshold =
      0.5 * (extent_range(Size::kSmall).hi + extent_range(Size::kLarge).lo);
  a.size = a.extent(a.shape) < size_threshold ? Size::kSmall : Size::kLarge;

  double best_d = 1e9;
  for (Position p : kPositions) {
    const Point q = anchor(p);
    const double d = std::hypot(a.cx - q.x, a.cy - q.y);
    if (d < best_d) best_d = d, a.position = p;
  }
  return a;
}

double Fidelity::score() const {
  return (int(colour) + int(shape) + int(size) + int(position) + int(background)) / 5.0;
}

Fidelity fidelity(const Analysis& a, const Prompt& p) {
  Fidelity f;
  if (!a.found) return f;
  f.colour = a.colour == p.colour;
  f.shape = a.shape == p.shape;
  f.size = a.size == p.size;
  f.position = a.position == p.position;
  f.background = a.background == p.background;
  return f;
}

Fidelity fidelity(const io::Image& image, const Prompt& prompt) {
  return fidelity(analyse(image), prompt);
}

double pixel_diversity(const std::vector<io::Image>& images) {
  if (images.size() < 2) return 0.0;
  for (const auto& im : images)
    if (im.width != images[0].width || im.height != images[0].height ||
        im.channels != images[0].channels || im.pixels.size() != images[0].pixels.size())
      throw UsageError("[world] pixel_diversity: images differ in size or channels");
  double total = 0.0;
  size_t pairs = 0;
  for (size_t i = 0; i < images.size(); ++i)
    for (size_t j = i + 1; j < images.size(); ++j, ++pairs) {
      double ss = 0.0;
      const auto& a = images[i].pixels;
      const auto& b = images[j].pixels;
      for (size_t k = 0; k < a.size(); ++k) {
        const double d = (static_cast<int>(a[k]) - static_cast<int>(b[k])) / 255.0;
        ss += d * d;
      }
      total += std::sqrt(ss / a.size());
    }
  return total / pairs;
}

double feature_diversity(const std::vector<Analysis>& analyses) {
  if (analyses.size() < 2) return 0.0;
  auto features = [](const Analysis& a) {
    const Range e = extent_range(a.size);
    const Range g = background_range(a.background);
    return std::array<double, 8>{a.cx / (2 * kPositionJitter),
                                 a.cy / (2 * kPositionJitter),
                                 a.extent(a.shape) / (e.hi - e.lo),
                                 a.saturation / (kSaturationRange.hi - kSaturationRange.lo),
                                 a.value / (kValueRange.hi - kValueRange.lo),
                                 a.outline,
                                 a.background_value / (g.hi - g.lo),
                                 a.noise / (kTextureRange.hi - kTextureRange.lo)};
  };
  double total = 0.0;
  size_t pairs = 0;
  for (size_t i = 0; i < analyses.size(); ++i)
    for (size_t j = i + 1; j < analyses.size(); ++j, ++pairs) {
      const auto fi = features(analyses[i]), fj = features(analyses[j]);
      double ss = 0.0;
      for (size_t k = 0; k < fi.size(); ++k) ss += (fi[k] - fj[k]) * (fi[k] - fj[k]);
      total += std::sqrt(ss);
    }
  return total / pairs;
}

}  // namespace dro::world
