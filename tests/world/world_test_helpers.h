// Shared by the world tests: a middle-of-the-range render setting to vary one nuisance at a time.
#pragma once

#include "dro/world/renderer.h"

namespace dro::world {

// Half size within the class, mid saturation, a small offset, no outline, light texture.
inline Nuisance plain_nuisance() {
  Nuisance n;
  n.size = 0.5;
  n.saturation = 0.675;
  n.jitter_x = n.jitter_y = 0.03;
  n.outline = false;
  n.texture = 0.02;
  return n;
}

}  // namespace dro::world
