#include "dro/world/geometry.h"

#include <algorithm>
#include <cmath>

namespace dro::world {

namespace {

constexpr double kSquareHalfSide = 0.8;  // of r, so the square's area is near the circle's
constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kSqrt3 = 1.7320508075688772;

double box(double x, double y, double half) {
  const double dx = std::fabs(x) - half, dy = std::fabs(y) - half;
  const double ox = std::max(dx, 0.0), oy = std::max(dy, 0.0);
  return std::sqrt(ox * ox + oy * oy) + std::min(std::max(dx, dy), 0.0);
}

// Equilateral triangle with half side h, centroid at the origin, apex towards -y.
// (The exact distance of I. Quilez's sdEquilateralTriangle, mirrored for downward y.)
double triangle(double x, double y, double h) {
  double px = std::fabs(x) - h;
  double py = -y + h / kSqrt3;
  if (px + kSqrt3 * py > 0.0) {
    const double nx = (px - kSqrt3 * py) * 0.5, ny = (-kSqrt3 * px - py) * 0.5;
    px = nx;
    py = ny;
  }
  px -= std::clamp(px, -2.0 * h, 0.0);
  const double len = std::sqrt(px * px + py * py);
  return py > 0.0 ? -len : len;
}

}  // namespace

double signed_distance(Shape shape, double x, double y, double r) {
  switch (shape) {
    case Shape::kCircle:
      return std::sqrt(x * x + y * y) - r;
    case Shape::kSquare:
      return box(x, y, kSquareHalfSide * r);
    case Shape::kDiamond:
      return box((x + y) / kSqrt2, (x - y) / kSqrt2, r / kSqrt2);
    case Shape::kTriangle:
      return triangle(x, y, r * kSqrt3 / 2.0);  // circumradius r
  }
  return 0.0;
}

double area_factor(Shape shape) {
  switch (shape) {
    case Shape::kCircle:
      return M_PI;
    case Shape::kSquare:
      return 4.0 * kSquareHalfSide * kSquareHalfSide;
    case Shape::kDiamond:
      return 2.0;
    case Shape::kTriangle:
      return 3.0 * kSqrt3 / 4.0;
  }
  return 1.0;
}

}  // namespace dro::world
