#include "dro/world/plot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>

namespace dro::world {

namespace {

// 3x5 glyphs, one row per 3 bits (top row in the high bits).
const std::map<char, uint16_t>& font() {
  static const std::map<char, uint16_t> f = {
      {'0', 0b111101101101111}, {'1', 0b010110010010111}, {'2', 0b111001111100111},
      {'3', 0b111001111001111}, {'4', 0b101101111001001}, {'5', 0b111100111001111},
      {'6', 0b111100111101111}, {'7', 0b111001010010010}, {'8', 0b111101111101111},
      {'9', 0b111101111001111}, {'A', 0b010101111101101}, {'B', 0b110101110101110},
      {'C', 0b011100100100011}, {'D', 0b110101101101110}, {'E', 0b111100110100111},
      {'F', 0b111100110100100}, {'G', 0b011100101101011}, {'H', 0b101101111101101},
      {'I', 0b111010010010111}, {'J', 0b001001001101010}, {'K', 0b101101110101101},
      {'L', 0b100100100100111}, {'M', 0b101111111101101}, {'N', 0b110101101101101},
      {'O', 0b010101101101010}, {'P', 0b110101110100100}, {'Q', 0b010101101110011},
      {'R', 0b110101110101101}, {'S', 0b011100010001110}, {'T', 0b111010010010010},
      {'U', 0b101101101101111}, {'V', 0b101101101101010}, {'W', 0b101101111111101},
      {'X', 0b101101010101101}, {'Y', 0b101101010010010}, {'Z', 0b111001010100111},
      {'.', 0b000000000000010}, {'-', 0b000000111000000}, {'+', 0b000010111010000},
      {'/', 0b001001010100100}, {'_', 0b000000000000111}, {':', 0b000010000010000},
      {'%', 0b101001010100101}, {'=', 0b000111000111000}, {'(', 0b010100100100010},
      {')', 0b010001001001010}, {',', 0b000000000010100}, {' ', 0}};
  return f;
}

void put(io::Image& img, int x, int y, const uint8_t rgb[3]) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  for (int c = 0; c < 3; ++c) img.at(y, x, c) = rgb[c];
}

void line(io::Image& img, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
  // Bresenham.
  const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put(img, x0, y0, rgb);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

std::string fmt(double v) {
  char b[32];
  if (v != 0 && (std::fabs(v) < 1e-2 || std::fabs(v) >= 1e4))
    std::snprintf(b, sizeof(b), "%.2e", v);
  else
    std::snprintf(b, sizeof(b), "%.3g", v);
  return b;
}

}  // namespace

void draw_text(io::Image& img, int x, int y, const std::string& text, const uint8_t rgb[3], int scale) {
  for (char ch : text) {
    const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    auto it = font().find(u);
    const uint16_t g = it == font().end() ? 0b111101101101111 : it->second;
    for (int r = 0; r < 5; ++r)
      for (int c = 0; c < 3; ++c)
        if (g >> (14 - (r * 3 + c)) & 1)
          for (int a = 0; a < scale; ++a)
            for (int b = 0; b < scale; ++b) put(img, x + c * scale + b, y + r * scale + a, rgb);
    x += 4 * scale;
  }
}

namespace {

// One panel at (ox, oy): frame, title, the y range over every series, each series in its colour
// with a dot per point, and the series' titles as a legend when there are several.
void draw_panel(io::Image& img, int ox, int oy, int panel_w, int panel_h, const std::string& title,
                const std::vector<Series>& lines) {
  static const uint8_t palette[][3] = {{31, 96, 196}, {214, 96, 31}, {40, 150, 60}, {150, 40, 160}, {120, 120, 120}};
  const uint8_t black[3] = {0, 0, 0}, grey[3] = {170, 170, 170};
  const int left = ox + 70, right = ox + panel_w - 12, top = oy + 26, bottom = oy + panel_h - 24;
  draw_text(img, ox + 10, oy + 8, title, black, 2);
  line(img, left, top, right, top, grey);
  line(img, left, bottom, right, bottom, black);
  line(img, left, top, left, bottom, black);
  line(img, right, top, right, bottom, grey);
  std::vector<std::vector<std::pair<double, double>>> all;
  double x0 = HUGE_VAL, x1 = -HUGE_VAL, y0 = HUGE_VAL, y1 = -HUGE_VAL;
  for (const auto& s : lines) {
    all.emplace_back();
    for (const auto& p : s.points)
      if (std::isfinite(p.first) && std::isfinite(p.second)) {
        all.back().push_back(p);
        x0 = std::min(x0, p.first), x1 = std::max(x1, p.first);
        y0 = std::min(y0, p.second), y1 = std::max(y1, p.second);
      }
  }
  if (!std::isfinite(x0)) return;
  const double x_last = x1;
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : std::fabs(y0) * 0.1);
  draw_text(img, ox + 4, top, fmt(y1), black, 1);
  draw_text(img, ox + 4, bottom - 5, fmt(y0), black, 1);
  draw_text(img, left, bottom + 6, fmt(x0), black, 1);
  const std::string xr = fmt(x_last);
  draw_text(img, right - 4 * static_cast<int>(xr.size()), bottom + 6, xr, black, 1);
  auto px = [&](double x) { return left + static_cast<int>(std::lround((x - x0) / (x1 - x0) * (right - left))); };
  auto py = [&](double y) { return bottom - static_cast<int>(std::lround((y - y0) / (y1 - y0) * (bottom - top))); };
  if (y0 < 0 && y1 > 0) line(img, left, py(0), right, py(0), grey);
  for (size_t i = 0; i < all.size(); ++i) {
    const uint8_t* colour = palette[i % 5];
    const auto& pts = all[i];
    for (size_t k = 0; k < pts.size(); ++k) {
      if (k > 0) line(img, px(pts[k - 1].first), py(pts[k - 1].second), px(pts[k].first), py(pts[k].second), colour);
      if (lines.size() > 1)  // markers where several series share the panel
        for (int d = -1; d <= 1; ++d) line(img, px(pts[k].first) - 1, py(pts[k].second) + d, px(pts[k].first) + 1,
                                           py(pts[k].second) + d, colour);
      else if (k == 0)
        put(img, px(pts[0].first), py(pts[0].second), colour);
    }
    if (lines.size() > 1) draw_text(img, left + 8, top + 6 + 10 * static_cast<int>(i), lines[i].title, colour, 1);
  }
}

}  // namespace

io::Image plot_panels(const std::vector<Series>& series, int columns, int panel_w, int panel_h) {
  const int n = static_cast<int>(series.size());
  const int rows = std::max(1, (n + columns - 1) / columns);
  io::Image img(panel_w * columns, panel_h * rows, 3);
  std::fill(img.pixels.begin(), img.pixels.end(), 255);
  for (int i = 0; i < n; ++i)
    draw_panel(img, (i % columns) * panel_w, (i / columns) * panel_h, panel_w, panel_h, series[i].title, {series[i]});
  return img;
}

io::Image plot_chart(const std::string& title, const std::vector<Series>& lines, int width, int height) {
  io::Image img(width, height, 3);
  std::fill(img.pixels.begin(), img.pixels.end(), 255);
  draw_panel(img, 0, 0, width, height, title, lines);
  return img;
}

}  // namespace dro::world
