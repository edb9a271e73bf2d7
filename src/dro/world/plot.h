// A tiny rasteriser for report pictures: line charts of logged scalars drawn into an io::Image,
// with a 3x5 pixel font for titles and axis labels. Not a plotting library: linear axes, no
// anti-aliasing.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "dro/io/image.h"

namespace dro::world {

struct Series {
  std::string title;
  std::vector<std::pair<double, double>> points;  // (x, y), x increasing
};

// Panels of `panel_w` x `panel_h` pixels, `columns` per row, each with a frame, the curve, its
// title and the y range; an empty series draws an empty frame.
io::Image plot_panels(const std::vector<Series>& series, int columns = 2, int panel_w = 360, int panel_h = 180);

// One panel holding several series, each in its own colour with a marker per point and its title
// in the legend.
io::Image plot_chart(const std::string& title, const std::vector<Series>& lines, int width = 480, int height = 240);

// Draws `text` (upper-cased; digits, letters and . - + / _ : % = ( ) , space) at (x, y) with
// each font pixel as a `scale` x `scale` block.
void draw_text(io::Image& img, int x, int y, const std::string& text, const uint8_t rgb[3], int scale = 2);

}  // namespace dro::world
