// The attributes of the preference world and the constants that give them a look. Caption-visible
// attributes (shape, colour, size, position, background) are enums with their caption words;
// the numeric ranges below are shared by the renderer (which draws them) and the measures (which
// read them back from pixels), so the two cannot drift apart. Lengths are fractions of the image
// side, colours are HSV with hue in degrees and S, V, grey levels in [0, 1].
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace dro::world {

enum class Shape { kCircle, kSquare, kTriangle, kDiamond };
enum class Colour { kRed, kOrange, kYellow, kGreen, kBlue, kPurple };
enum class Size { kSmall, kLarge };
enum class Position { kLeft, kRight, kTop, kBottom, kCenter };
enum class Background { kDark, kLight };

inline constexpr std::array<Shape, 4> kShapes = {Shape::kCircle, Shape::kSquare, Shape::kTriangle,
                                                 Shape::kDiamond};
inline constexpr std::array<Colour, 6> kColours = {
    Colour::kRed, Colour::kOrange, Colour::kYellow, Colour::kGreen, Colour::kBlue, Colour::kPurple};
inline constexpr std::array<Size, 2> kSizes = {Size::kSmall, Size::kLarge};
inline constexpr std::array<Position, 5> kPositions = {
    Position::kLeft, Position::kRight, Position::kTop, Position::kBottom, Position::kCenter};
inline constexpr std::array<Background, 2> kBackgrounds = {Background::kDark, Background::kLight};

// Caption words ("circle", "red", "large", "left", "dark").
std::string_view name(Shape v);
std::string_view name(Colour v);
std::string_view name(Size v);
std::string_view name(Position v);
std::string_view name(Background v);

// Inverse of name(); nullopt for an unknown word (exact, lower-case).
std::optional<Shape> parse_shape(std::string_view word);
std::optional<Colour> parse_colour(std::string_view word);
std::optional<Size> parse_size(std::string_view word);
std::optional<Position> parse_position(std::string_view word);
std::optional<Background> parse_background(std::string_view word);

struct Range {
  double lo = 0, hi = 0;
  double at(double t) const { return lo + (hi - lo) * t; }  // t in [0, 1]
};

struct Point {
  double x = 0, y = 0;  // fractions of width / height; y grows downwards
};

// Reference hue of a colour word, degrees.
double reference_hue(Colour c);
// Half-extent r of the object for a size class (every shape fits in a circle of radius r,
// except the square whose corners reach 1.13 r).
Range extent_range(Size s);
// The object centre a position word asks for.
Point anchor(Position p);
// Grey level of the background for a background word.
Range background_range(Background b);

// Nuisance ranges: not in the caption, uniform in the base data (see renderer.h).
inline constexpr Range kSaturationRange{0.35, 1.0};
inline constexpr Range kValueRange{0.6, 1.0};
inline constexpr double kHueJitter = 5.0;         // degrees, +- around the reference hue
inline constexpr double kPositionJitter = 0.06;   // +- on each axis around the anchor
inline constexpr Range kTextureRange{0.0, 0.05};  // amplitude of the background grey noise
inline constexpr double kOutlineWidth = 0.045;    // ~1.4 pixels at 32x32
inline constexpr double kOutlineLevel = 0.03;     // near-black outline grey

}  // namespace dro::world
