// The hidden preference of the simulated users. It is computed from pixels and the prompt only
// (via measures.h), so it scores generated images exactly as it scores rendered ones; no training
// code reads it: users reveal it only through which image they keep (feedback.h).
//
// Definition. Four quality terms in [0, 1], each a nuisance the caption does not mention:
//   size        the object's half-extent (from its area, for the prompt's shape) placed in the
//               prompt's size class: 0 at the class minimum, 1 at the maximum (clamped);
//   saturation  0 at the lowest base saturation (0.35), 1 at full saturation;
//   centring    1 with the centroid on the anchor of the prompt's position, falling linearly to
//               0 at the corner of the base jitter square (0.06 * sqrt 2 of the side);
//   outline     the evidence of a dark rim (0 none, 1 clear).
// quality = mean of the four; score = 10 * quality * 0.2^m, where m counts the caption attributes
// (colour, shape, size, position, background) the image does not show. So an image that does not
// match its prompt scores low whatever it looks like, and larger, more saturated, better centred,
// outlined objects are preferred. Uniform renders average about 5, the best renders about 10.
#pragma once

#include "dro/io/image.h"
#include "dro/world/measures.h"
#include "dro/world/prompt.h"

namespace dro::world {

inline constexpr double kMaxPreferenceScore = 10.0;
inline constexpr double kMismatchFactor = 0.2;

struct PreferenceTerms {
  double size = 0, saturation = 0, centring = 0, outline = 0;
  double quality = 0;  // mean of the four terms
  Fidelity shown;      // which caption attributes the image shows
  int mismatches = 5;  // caption attributes not shown (5 when no object is found)
  double score = 0;    // kMaxPreferenceScore * quality * kMismatchFactor^mismatches
};

PreferenceTerms preference_terms(const Analysis& analysis, const Prompt& prompt);

// The hidden score of one image for one prompt, in [0, 10].
double preference_score(const io::Image& image, const Prompt& prompt);

}  // namespace dro::world
