#include "dro/world/preference.h"

#include <algorithm>
#include <cmath>

namespace dro::world {

PreferenceTerms preference_terms(const Analysis& a, const Prompt& p) {
  PreferenceTerms t;
  if (!a.found) return t;
  const Range e = extent_range(p.size);
  t.size = std::clamp((a.extent(p.shape) - e.lo) / (e.hi - e.lo), 0.0, 1.0);
  t.saturation = std::clamp(
      (a.saturation - kSaturationRange.lo) / (kSaturationRange.hi - kSaturationRange.lo), 0.0, 1.0);
  const Point q = anchor(p.position);
  const double off = std::hypot(a.cx - q.x, a.cy - q.y);
  t.centring = std::clamp(1.0 - off / (kPositionJitter * std::sqrt(2.0)), 0.0, 1.0);
  t.outline = std::clamp(a.outline, 0.0, 1.0);
  t.quality = (t.size + t.saturation + t.centring + t.outline) / 4.0;
  t.shown = fidelity(a, p);
  const Fidelity& f = t.shown;
  t.mismatches = !f.colour + !f.shape + !f.size + !f.position + !f.background;
  t.score = kMaxPreferenceScore * t.quality * std::pow(kMismatchFactor, t.mismatches);
  return t;
}

double preference_score(const io::Image& image, const Prompt& prompt) {
  return preference_terms(analyse(image), prompt).score;
}

}  // namespace dro::world
