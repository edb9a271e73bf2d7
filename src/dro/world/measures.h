// Measures of the preference world computed from pixels alone, so they apply unchanged to images
// a model generates: segmentation of the object, its colour / shape / size / position / background
// as recognised attributes, the nuisance features the hidden preference looks at, prompt fidelity,
// and diversity across seeds. Nothing here reads how an image was made.
//
// How an image is read: the background grey is the per-channel median of the one-pixel frame;
// pixels farther than a noise-adapted threshold from it form the object mask (largest
// 8-connected part, holes filled); pixel coverage at the mask edge is estimated from contrast, so
// areas and centroids are sub-pixel and do not depend on the object's contrast. The shape is the
// best soft-IoU match among the four shape templates drawn at the measured centroid and area.
#pragma once

#include <array>
#include <vector>

#include "dro/io/image.h"
#include "dro/world/prompt.h"

namespace dro::world {

struct Analysis {
  bool found = false;                 // an object was segmented; the rest is meaningful only then
  double background_value = 0.0;      // grey level of the background, [0, 1]
  double noise = 0.0;                 // background texture level (90th percentile distance)
  double area = 0.0;                  // object coverage, fraction of the image area
  double cx = 0.0, cy = 0.0;          // coverage-weighted centroid, fractions of width / height
  std::array<double, 3> rgb{};        // mean colour of the object core
  double hue = 0.0;                   // HSV hue of `rgb`, degrees
  double saturation = 0.0;            // 90th percentile of HSV saturation over the core
  double value = 0.0;                 // 90th percentile of HSV value over the core
  double outline = 0.0;               // evidence of a dark rim, 0 (none) .. 1 (clear)
  std::array<double, 4> shape_fit{};  // soft IoU with each shape's template (kShapes order)

  // Recognised attributes.
  Shape shape = Shape::kCircle;
  Colour colour = Colour::kRed;
  Size size = Size::kSmall;
  Position position = Position::kCenter;
  Background background = Background::kDark;

  // Half-extent r (fraction of the side) of an object of this area if it were `s`.
  double extent(Shape s) const;
};

// Reads one square image (RGB, grey or RGBA; 8x8 or larger, 32x32 and up recognise best).
// UsageError for other shapes.
Analysis analyse(const io::Image& image);

// Which caption attributes an image shows.
struct Fidelity {
  bool colour = false, shape = false, size = false, position = false, background = false;
  // Fraction of the five caption attributes recognised.
  double score() const;
};
Fidelity fidelity(const Analysis& analysis, const Prompt& prompt);
Fidelity fidelity(const io::Image& image, const Prompt& prompt);

// Mean over all pairs of the root-mean-square pixel difference (RGB in [0, 1]); 0 means all
// images are identical (collapse). Images must share size and channels; fewer than 2 gives 0.
double pixel_diversity(const std::vector<io::Image>& images);

// Mean over all pairs of the distance between nuisance feature vectors (centroid, extent,
// saturation, value, outline, background grey, texture), each scaled by its range in the base
// data so a feature counts by how much of its range it spans; insensitive to pixel-level noise.
double feature_diversity(const std::vector<Analysis>& analyses);

}  // namespace dro::world
