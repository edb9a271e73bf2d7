#include "dro/vision/pil_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dro/core/error.h"

namespace dro::vision {
namespace {

constexpr double kPi = 3.14159265358979323846;  // M_PI, which strict C++17 need not define

// The filters of Resample.c, in double precision.
double box_filter(double x) {
  return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

double bilinear_filter(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_filter(double x) {
  x = std::fabs(x);
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= kPi;
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));  // float constants as in Resample.c
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;  // Resample.c's bicubic (Keys) parameter
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= kPi;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {
  return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

Filter filter_for(Resample r) {
  switch (r) {
    case Resample::kBox:
      return {box_filter, 0.5};
    case Resample::kBilinear:
      return {bilinear_filter, 1.0};
    case Resample::kHamming:
      return {hamming_filter, 1.0};
    case Resample::kBicubic:
      return {bicubic_filter, 2.0};
    case Resample::kLanczos:
      return {lanczos_filter, 3.0};
    case Resample::kNearest:
      break;
  }
  throw UsageError("[resize] NEAREST has no convolution filter");
}

// Per output pixel: the first input index, the number of taps and `ksize` weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<double> weights;  // [out, ksize], normalised to sum 1
};

// Resample.c precompute_coeffs for the whole axis (box 0 .. in_size).
Coeffs precompute_coeffs(int in_size, int out_size, const Filter& filter) {
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);  // Pillow's box is float
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter.support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0.0);
  const double inv_filterscale = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as the C cast
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = filter.fn((x + xmin - center + 0.5) * inv_filterscale);
      k[x] = w;
      ww += w;
    }
    if (ww != 0.0)
      for (int x = 0; x < xmax; ++x) k[x] /= ww;
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

// Resample.c: 32 - 8 - 2 fractional bits leave room for 8-bit results and negative lobes.
constexpr int kPrecisionBits = 32 - 8 - 2;

std::vector<int32_t> fixed_point(const std::vector<double>& w) {
  std::vector<int32_t> out(w.size());
  for (size_t i = 0; i < w.size(); ++i)  // normalize_coeffs_8bpc: round half away from zero
    out[i] = w[i] < 0 ? static_cast<int32_t>(-0.5 + w[i] * (1 << kPrecisionBits))
                      : static_cast<int32_t>(0.5 + w[i] * (1 << kPrecisionBits));
  return out;
}

inline uint8_t clip8(int32_t ss) {
  const int32_t v = ss >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup index
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over input rows [row0, row0 + rows).
io::Image horizontal_8bpc(const io::Image& in, int width, int row0, int rows, const Coeffs& c) {
  const auto kk = fixed_point(c.weights);
  const int ch = in.channels;
  io::Image out(width, rows, ch);
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* line = in.row(yy + row0);
    uint8_t* dst = out.row(yy);
    for (int xx = 0; xx < width; ++xx) {
      const int32_t* k = &kk[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* src = line + static_cast<size_t>(c.first[xx]) * ch;
      for (int b = 0; b < ch; ++b) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < c.count[xx]; ++x) ss += src[x * ch + b] * k[x];
        dst[xx * ch + b] = clip8(ss);
      }
    }
  }
  return out;
}

// Vertical pass; `first` indexes rows of `in` (already shifted by the caller).
io::Image vertical_8bpc(const io::Image& in, int height, const Coeffs& c,
                        const std::vector<int>& first) {
  const auto kk = fixed_point(c.weights);
  const int ch = in.channels, w = in.width;
  io::Image out(w, height, ch);
  for (int yy = 0; yy < height; ++yy) {
    const int32_t* k = &kk[static_cast<size_t>(yy) * c.ksize];
    uint8_t* dst = out.row(yy);
    for (int i = 0; i < w * ch; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < c.count[yy]; ++y) ss += in.row(first[yy] + y)[i] * k[y];
      dst[i] = clip8(ss);
    }
  }
  return out;
}

// 16-bit gray, Resample.c's *_16bpc passes: double sums, ROUND_UP, CLIP16.
inline uint16_t round_clip16(double ss) {
  const int v = static_cast<int>(ss >= 0.0 ? ss + 0.5F : ss - 0.5F);
  return static_cast<uint16_t>(v < 0 ? 0 : v > 65535 ? 65535 : v);
}

std::vector<uint16_t> resample_16bpc(const std::vector<uint16_t>& in, int in_w, int in_h, int width,
                                     int height, const Filter& f) {
  const bool need_h = width != in_w, need_v = height != in_h;
  Coeffs cv = precompute_coeffs(in_h, height, f);
  const int ybox_first = cv.first[0];
  const int ybox_last = cv.first[height - 1] + cv.count[height - 1];
  std::vector<uint16_t> cur = in;
  int cur_w = in_w;
  std::vector<int> first_v = cv.first;
  if (need_h) {
    Coeffs ch = precompute_coeffs(in_w, width, f);
    const int rows = ybox_last - ybox_first;
    std::vector<uint16_t> tmp(static_cast<size_t>(width) * rows);
    for (int yy = 0; yy < rows; ++yy) {
      const uint16_t* line = &in[static_cast<size_t>(yy + ybox_first) * in_w];
      for (int xx = 0; xx < width; ++xx) {
        const double* k = &ch.weights[static_cast<size_t>(xx) * ch.ksize];
        double ss = 0.0;
        for (int x = 0; x < ch.count[xx]; ++x) ss += line[x + ch.first[xx]] * k[x];
        tmp[static_cast<size_t>(yy) * width + xx] = round_clip16(ss);
      }
    }
    for (auto& v : first_v) v -= ybox_first;
    cur = std::move(tmp);
    cur_w = width;
  }
  if (!need_v) return cur;
  std::vector<uint16_t> out(static_cast<size_t>(cur_w) * height);
  for (int yy = 0; yy < height; ++yy) {
    const double* k = &cv.weights[static_cast<size_t>(yy) * cv.ksize];
    for (int xx = 0; xx < cur_w; ++xx) {
      double ss = 0.0;
      for (int y = 0; y < cv.count[yy]; ++y)
        ss += cur[static_cast<size_t>(first_v[yy] + y) * cur_w + xx] * k[y];
      out[static_cast<size_t>(yy) * cur_w + xx] = round_clip16(ss);
    }
  }
  return out;
}

void check_size(int width, int height, const char* op) {
  if (width <= 0 || height <= 0)
    throw UsageError(
        cat("[resize] ", op, ": height and width must be > 0, got ", width, "x", height));
}

void check_image(const io::Image& im, const char* op) {
  if (im.width <= 0 || im.height <= 0 || im.channels < 1 || im.channels > 4 ||
      im.pixels.size() != static_cast<size_t>(im.width) * im.height * im.channels)
    throw UsageError(cat("[resize] ", op, ": inconsistent image ", im.width, "x", im.height, "x",
                         im.channels, " with ", im.pixels.size(), " bytes"));
}

// Geometry.c ImagingScaleAffine: source index of each output column / row, -1 outside.
std::vector<int> nearest_table(int in_size, int out_size) {
  const double a = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;  // _resize
  std::vector<int> idx(out_size);
  double pos = a * 0.5;
  for (int i = 0; i < out_size; ++i) {
    const int v = pos < 0.0 ? -1 : static_cast<int>(pos);
    idx[i] = v < in_size ? v : -1;
    pos += a;  // accumulated, as Pillow does
  }
  return idx;
}

}  // namespace

Resample resample_from_code(int code, const std::string& where) {
  if (code < 0 || code > 5)
    throw UsageError(cat("[resize] ", where,
                         ": resample must be a PIL filter code 0..5 (0 nearest, 1 lanczos, "
                         "2 bilinear, 3 bicubic, 4 box, 5 hamming), got ",
                         code));
  return static_cast<Resample>(code);
}

const char* resample_name(Resample filter) {
  switch (filter) {
    case Resample::kNearest:
      return "nearest";
    case Resample::kLanczos:
      return "lanczos";
    case Resample::kBilinear:
      return "bilinear";
    case Resample::kBicubic:
      return "bicubic";
    case Resample::kBox:
      return "box";
    case Resample::kHamming:
      return "hamming";
  }
  return "?";
}

io::Image resample_bands(const io::Image& in, int width, int height, Resample filter) {
  check_image(in, "resample");
  check_size(width, height, "resample");
  const Filter f = filter_for(filter);
  const bool need_h = width != in.width, need_v = height != in.height;
  if (!need_h && !need_v) return in;
  Coeffs cv = precompute_coeffs(in.height, height, f);
  // ImagingResampleInner: the horizontal pass only covers the rows the vertical pass reads
  const int ybox_first = cv.first[0];
  const int ybox_last = cv.first[height - 1] + cv.count[height - 1];
  std::vector<int> first_v = cv.first;
  if (!need_h) return vertical_8bpc(in, height, cv, first_v);
  Coeffs chz = precompute_coeffs(in.width, width, f);
  io::Image tmp = horizontal_8bpc(in, width, ybox_first, ybox_last - ybox_first, chz);
  if (!need_v) return tmp;
  for (auto& v : first_v) v -= ybox_first;
  return vertical_8bpc(tmp, height, cv, first_v);
}

io::Image resize_nearest(const io::Image& in, int width, int height) {
  check_image(in, "resize_nearest");
  check_size(width, height, "resize_nearest");
  if (width == in.width && height == in.height) return in;
  const auto xs = nearest_table(in.width, width);
  const auto ys = nearest_table(in.height, height);
  const int ch = in.channels;
  io::Image out(width, height, ch);  // zero where the source is outside (fill=1)
  for (int y = 0; y < height; ++y) {
    if (ys[y] < 0) continue;
    const uint8_t* src = in.row(ys[y]);
    uint8_t* dst = out.row(y);
    for (int x = 0; x < width; ++x)
      if (xs[x] >= 0) std::memcpy(dst + x * ch, src + xs[x] * ch, ch);
  }
  return out;
}

io::Image premultiply_alpha(const io::Image& in) {
  if (in.channels != 2 && in.channels != 4)
    throw UsageError(
        cat("[resize] premultiply_alpha: 2 or 4 channels expected, got ", in.channels));
  io::Image out = in;
  const int ch = in.channels;
  for (size_t i = 0; i < out.pixels.size(); i += ch) {
    const unsigned a = out.pixels[i + ch - 1];
    for (int c = 0; c < ch - 1; ++c) {  // Convert.c rgbA2rgba / lA2la: MULDIV255
      const unsigned t = out.pixels[i + c] * a + 128;
      out.pixels[i + c] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
    }
  }
  return out;
}

io::Image unpremultiply_alpha(const io::Image& in) {
  if (in.channels != 2 && in.channels != 4)
    throw UsageError(
        cat("[resize] unpremultiply_alpha: 2 or 4 channels expected, got ", in.channels));
  io::Image out = in;
  const int ch = in.channels;
  for (size_t i = 0; i < out.pixels.size(); i += ch) {
    const unsigned a = out.pixels[i + ch - 1];
    if (a == 0 || a == 255) continue;  // Convert.c rgba2rgbA / la2lA
    for (int c = 0; c < ch - 1; ++c) {
      const unsigned v = (255u * out.pixels[i + c]) / a;
      out.pixels[i + c] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
  }
  return out;
}

PilImage pil_resize(const PilImage& in, int width, int height, Resample filter) {
  check_size(width, height, "pil_resize");
  if (width == in.width() && height == in.height()) return in;        // Image.resize returns a copy
  if (in.mode == "1" || in.mode == "P") filter = Resample::kNearest;  // Image.resize
  PilImage out;
  out.mode = in.mode;
  out.has_transparency = in.has_transparency;
  out.palette = in.palette;
  if (in.mode == "P") {
    if (in.indices.empty()) {
      out.image = resize_nearest(in.image, width, height);
      return out;
    }
    io::Image idx(in.width(), in.height(), 1);
    idx.pixels = in.indices;
    idx = resize_nearest(idx, width, height);
    out.indices = idx.pixels;
    out.image = io::Image(width, height, 3);
    for (size_t i = 0; i < out.indices.size(); ++i) {
      const uint8_t v = out.indices[i];
      if (v < in.palette.size()) std::memcpy(&out.image.pixels[3 * i], in.palette[v].data(), 3);
    }
    return out;
  }
  if (in.mode == "I;16") {
    std::vector<uint16_t> px;
    if (filter == Resample::kNearest) {
      // ImagingGenericTransform (I;16 is a "special" type): x_in = a * (x + 0.5), not accumulated
      const double ax = static_cast<double>(static_cast<float>(in.width())) / width;
      const double ay = static_cast<double>(static_cast<float>(in.height())) / height;
      px.assign(static_cast<size_t>(width) * height, 0);
      for (int y = 0; y < height; ++y) {
        const double fy = ay * (y + 0.5);
        const int sy = fy < 0.0 ? -1 : static_cast<int>(fy);
        if (sy < 0 || sy >= in.height()) continue;
        for (int x = 0; x < width; ++x) {
          const double fx = ax * (x + 0.5);
          const int sx = fx < 0.0 ? -1 : static_cast<int>(fx);
          if (sx >= 0 && sx < in.width())
            px[static_cast<size_t>(y) * width + x] =
                in.pixels16[static_cast<size_t>(sy) * in.width() + sx];
        }
      }
    } else {
      px = resample_16bpc(in.pixels16, in.width(), in.height(), width, height, filter_for(filter));
    }
    out.pixels16 = std::move(px);
    out.image = io::Image(width, height, 1);
    for (size_t i = 0; i < out.pixels16.size(); ++i)
      out.image.pixels[i] = out.pixels16[i] > 255 ? 255 : static_cast<uint8_t>(out.pixels16[i]);
    return out;
  }
  if (in.mode != "L" && in.mode != "LA" && in.mode != "RGB" && in.mode != "RGBA" &&
      in.mode != "CMYK" && in.mode != "1")
    throw UsageError(cat("[resize] pil_resize: unsupported mode '", in.mode, "'"));
  if (filter == Resample::kNearest) {
    out.image = resize_nearest(in.image, width, height);
  } else if (in.mode == "RGBA" || in.mode == "LA") {
    // Image.resize: RGBA -> RGBa, resize, RGBa -> RGBA (LA likewise through La)
    out.image =
        unpremultiply_alpha(resample_bands(premultiply_alpha(in.image), width, height, filter));
  } else {
    out.image = resample_bands(in.image, width, height, filter);
  }
  return out;
}

}  // namespace dro::vision
