#include "dro/world/attributes.h"

namespace dro::world {

namespace {

template <typename E, size_t N>
std::optional<E> parse_word(std::string_view word, const std::array<E, N>& values) {
  for (E v : values)
    if (name(v) == word) return v;
  return std::nullopt;
}

}  // namespace

std::string_view name(Shape v) {
  switch (v) {
    case Shape::kCircle:
      return "circle";
    case Shape::kSquare:
      return "square";
    case Shape::kTriangle:
      return "triangle";
    case Shape::kDiamond:
      return "diamond";
  }
  return "?";
}

std::string_view name(Colour v) {
  switch (v) {
    case Colour::kRed:
      return "red";
    case Colour::kOrange:
      return "orange";
    case Colour::kYellow:
      return "yellow";
    case Colour::kGreen:
      return "green";
    case Colour::kBlue:
      return "blue";
    case Colour::kPurple:
      return "purple";
  }
  return "?";
}

std::string_view name(Size v) {
  return v == Size::kSmall ? "small" : "large";
}

std::string_view name(Position v) {
  switch (v) {
    case Position::kLeft:
      return "left";
    case Position::kRight:
      return "right";
    case Position::kTop:
      return "top";
    case Position::kBottom:
      return "bottom";
    case Position::kCenter:
      return "center";
  }
  return "?";
}

std::string_view name(Background v) {
  return v == Background::kDark ? "dark" : "light";
}

std::optional<Shape> parse_shape(std::string_view w) {
  return parse_word(w, kShapes);
}
std::optional<Colour> parse_colour(std::string_view w) {
  return parse_word(w, kColours);
}
std::optional<Size> parse_size(std::string_view w) {
  return parse_word(w, kSizes);
}
std::optional<Position> parse_position(std::string_view w) {
  return parse_word(w, kPositions);
}
std::optional<Background> parse_background(std::string_view w) {
  return parse_word(w, kBackgrounds);
}

double reference_hue(Colour c) {
  // Spaced so that the closest pair (red/orange, orange/yellow) is 25-30 degrees apart, which
  // keeps the nearest-hue decision exact under the +-5 degree hue jitter.
  switch (c) {
    case Colour::kRed:
      return 0.0;
    case Colour::kOrange:
      return 28.0;
    case Colour::kYellow:
      return 55.0;
    case Colour::kGreen:
      return 125.0;
    case Colour::kBlue:
      return 220.0;
    case Colour::kPurple:
      return 285.0;
  }
  return 0.0;
}

Range extent_range(Size s) {
  return s == Size::kSmall ? Range{0.12, 0.16} : Range{0.21, 0.27};
}

Point anchor(Position p) {
  switch (p) {
    case Position::kLeft:
      return {0.31, 0.5};
    case Position::kRight:
      return {0.69, 0.5};
    case Position::kTop:
      return {0.5, 0.31};
    case Position::kBottom:
      return {0.5, 0.69};
    case Position::kCenter:
      return {0.5, 0.5};
  }
  return {0.5, 0.5};
}

Range background_range(Background b) {
  return b == Background::kDark ? Range{0.20, 0.32} : Range{0.78, 0.90};
}

}  // namespace dro::world
