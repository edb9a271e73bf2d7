// The procedural renderer: one anti-aliased object on a grey background, drawn from a prompt (the
// caption-visible attributes) and a Nuisance (everything the caption does not say). The base data
// draws nuisances uniformly, so a model trained on it has no preference among them; the hidden
// preference (preference.h) is defined on exactly these nuisance directions.
#pragma once

#include <cstdint>

#include "dro/io/image.h"
#include "dro/world/prompt.h"
#include "dro/world/random.h"

namespace dro::world {

struct Nuisance {
  double size = 0.5;        // where the half-extent sits inside the size class, [0, 1]
  double saturation = 0.7;  // HSV saturation of the object, kSaturationRange
  double value = 0.8;       // HSV value of the object, kValueRange
  double hue_shift = 0.0;   // degrees from the colour's reference hue, +-kHueJitter
  double jitter_x = 0.0;    // offset of the centre from the anchor, +-kPositionJitter
  double jitter_y = 0.0;
  bool outline = false;       // a near-black rim of width kOutlineWidth inside the boundary
  double background = 0.5;    // where the grey sits inside the background class, [0, 1]
  double texture = 0.0;       // amplitude of smooth grey noise on the background, kTextureRange
  uint64_t texture_seed = 0;  // the noise pattern
};

// The base distribution: every field uniform over its range, outline with probability 1/2.
Nuisance sample_nuisance(Rng& rng);

// Renders a `size` x `size` RGB image. Deterministic: the same arguments give the same bytes.
// Anti-aliasing uses the analytic pixel coverage of the shape's signed distance; the object may
// be clipped by the frame only at the extreme corners of the jitter range.
io::Image render(const Prompt& prompt, const Nuisance& nuisance, int size = 32);

}  // namespace dro::world
