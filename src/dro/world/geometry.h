// Shape outlines as signed distance functions, shared by the renderer (anti-aliased drawing) and
// the shape recogniser (templates). A shape is centred on its area centroid and sized by its
// half-extent r: circle of radius r; square of half-side 0.8 r; diamond with vertices at r;
// equilateral triangle, apex up, inscribed in the circle of radius r.
#pragma once

#include "dro/world/attributes.h"

namespace dro::world {

// Signed distance from (x, y) to the boundary of `shape` (negative inside), in the units of x, y
// and r. y grows downwards (image rows).
double signed_distance(Shape shape, double x, double y, double r);

// Area of the shape divided by r^2.
double area_factor(Shape shape);

// Fraction of a pixel covered by a shape whose boundary lies `distance_px` pixels away (signed
// distance in pixel units): a box-filter approximation that is exact for straight edges.
inline double coverage(double distance_px) {
  const double c = 0.5 - distance_px;
  return c <= 0.0 ? 0.0 : (c >= 1.0 ? 1.0 : c);
}

}  // namespace dro::world
