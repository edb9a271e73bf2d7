// PIL resize properties checkable without PIL: identity, constants, box averaging with Pillow's
// intermediate rounding, nearest duplication, and the mode rules of Image.resize. Golden
// comparisons through the processors are in the processor tests.
#include "dro/vision/pil_resize.h"

#include <random>

#include "dro/core/error.h"
#include "test_util.h"

namespace dro::vision {
namespace {

io::Image noise(int w, int h, int c, unsigned seed) {
  std::mt19937 rng(seed);
  io::Image im(w, h, c);
  for (auto& v : im.pixels) v = static_cast<uint8_t>(rng() & 0xFF);
  return im;
}

const Resample kFilters[] = {Resample::kBox, Resample::kBilinear, Resample::kHamming,
                             Resample::kBicubic, Resample::kLanczos};

TEST(VisionResize, SameSizeReturnsThePixels) {
  const io::Image im = noise(13, 9, 3, 1);
  for (Resample f : kFilters) EXPECT_EQ(resample_bands(im, 13, 9, f), im) << resample_name(f);
  EXPECT_EQ(resize_nearest(im, 13, 9), im);
  PilImage p = from_pixels(noise(7, 5, 4, 2));
  EXPECT_EQ(pil_resize(p, 7, 5, Resample::kBicubic).image, p.image);  // no premultiply round trip
}

TEST(VisionResize, ConstantImageStaysConstant) {
  for (int value : {0, 1, 77, 254, 255}) {
    io::Image im(17, 11, 3);
    std::fill(im.pixels.begin(), im.pixels.end(), static_cast<uint8_t>(value));
    for (Resample f : kFilters)
      for (auto [w, h] :
           {std::pair{5, 4}, std::pair{40, 23}, std::pair{17, 30}, std::pair{3, 11}}) {
        const io::Image out = resample_bands(im, w, h, f);
        ASSERT_EQ(out.width, w);
        ASSERT_EQ(out.height, h);
        for (uint8_t v : out.pixels)
          ASSERT_EQ(v, value) << resample_name(f) << " " << w << "x" << h;
      }
  }
}

TEST(VisionResize, BoxHalvingAveragesPairsWithRounding) {
  const io::Image im = noise(10, 8, 2, 3);
  const io::Image out = resample_bands(im, 5, 4, Resample::kBox);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 2; ++c) {
        // weights 1/2 exactly: each pass rounds half up, the horizontal one to 8 bits first
        const int top = (im.at(2 * y, 2 * x, c) + im.at(2 * y, 2 * x + 1, c) + 1) / 2;
        const int bottom = (im.at(2 * y + 1, 2 * x, c) + im.at(2 * y + 1, 2 * x + 1, c) + 1) / 2;
        ASSERT_EQ(out.at(y, x, c), (top + bottom + 1) / 2) << x << "," << y;
        const double mean = (im.at(2 * y, 2 * x, c) + im.at(2 * y, 2 * x + 1, c) +
                             im.at(2 * y + 1, 2 * x, c) + im.at(2 * y + 1, 2 * x + 1, c)) /
                            4.0;
        ASSERT_LE(std::abs(out.at(y, x, c) - mean), 1.0);
      }
}

TEST(VisionResize, HorizontalOnlyAndVerticalOnlyPasses) {
  const io::Image im = noise(12, 6, 1, 4);
  const io::Image h = resample_bands(im, 6, 6, Resample::kBox);
  const io::Image v = resample_bands(im, 12, 3, Resample::kBox);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x)
      ASSERT_EQ(h.at(y, x, 0), (im.at(y, 2 * x, 0) + im.at(y, 2 * x + 1, 0) + 1) / 2);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 12; ++x)
      ASSERT_EQ(v.at(y, x, 0), (im.at(2 * y, x, 0) + im.at(2 * y + 1, x, 0) + 1) / 2);
}

TEST(VisionResize, NearestDuplicatesAndSubsamples) {
  const io::Image im = noise(3, 2, 3, 5);
  const io::Image up = resize_nearest(im, 6, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(up.at(y, x, c), im.at(y / 2, x / 2, c));
  const io::Image big = noise(9, 9, 1, 6);
  const io::Image down = resize_nearest(big, 3, 3);  // centres 1.5, 4.5, 7.5 -> 1, 4, 7
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x) ASSERT_EQ(down.at(y, x, 0), big.at(3 * y + 1, 3 * x + 1, 0));
}

TEST(VisionResize, RgbaIsResizedPremultiplied) {
  // Left half opaque grey, right half transparent but holding bright red: the red must not
  // bleed into the opaque side, and transparent output pixels come out black.
  io::Image im(8, 4, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) {
      uint8_t* p = &im.at(y, x, 0);
      if (x < 4)
        p[0] = p[1] = p[2] = 100, p[3] = 255;
      else
        p[0] = 255, p[1] = p[2] = 0, p[3] = 0;
    }
  const PilImage out = pil_resize(from_pixels(im), 4, 2, Resample::kBicubic);
  for (int y = 0; y < 2; ++y) {
    const uint8_t* l = out.image.row(y);
    EXPECT_EQ(l[0], l[1]);  // grey stays grey: no red from the transparent pixels
    EXPECT_EQ(l[1], l[2]);
    const uint8_t* r = out.image.row(y) + 3 * 4;
    EXPECT_EQ(r[3], 0);
    EXPECT_EQ(r[0], 0);
  }
  // The same pixels resized as plain bands do pick up the red.
  const io::Image plain = resample_bands(im, 4, 2, Resample::kBicubic);
  EXPECT_GT(plain.at(0, 3, 0), 200);
}

TEST(VisionResize, PremultiplyRoundingAsConvertC) {
  io::Image im(3, 1, 4);
  im.pixels = {200, 100, 7, 128, 50, 60, 70, 255, 9, 9, 9, 0};
  const io::Image pre = premultiply_alpha(im);
  // MULDIV255: (c * a + 128 + ((c * a + 128) >> 8)) >> 8
  EXPECT_EQ(pre.pixels, (std::vector<uint8_t>{100, 50, 4, 128, 50, 60, 70, 255, 0, 0, 0, 0}));
  const io::Image back = unpremultiply_alpha(pre);
  // 255 * c / a truncated: 100 -> 199, 50 -> 99, 4 -> 7
  EXPECT_EQ(back.pixels, (std::vector<uint8_t>{199, 99, 7, 128, 50, 60, 70, 255, 0, 0, 0, 0}));
}

TEST(VisionResize, PaletteAndBilevelAlwaysNearest) {
  PilImage p;
  p.mode = "P";
  p.palette = {{10, 20, 30, 255}, {200, 210, 220, 255}};
  p.image = io::Image(4, 1, 3);
  p.indices = {0, 1, 1, 0};
  for (int i = 0; i < 4; ++i)
    std::memcpy(&p.image.pixels[3 * i], p.palette[p.indices[i]].data(), 3);
  const PilImage out = pil_resize(p, 2, 1, Resample::kBicubic);
  EXPECT_EQ(out.mode, "P");
  EXPECT_EQ(out.indices, (std::vector<uint8_t>{1, 0}));  // source centres 1 and 3
  EXPECT_EQ(out.image.pixels, (std::vector<uint8_t>{200, 210, 220, 10, 20, 30}));
}

TEST(VisionResize, SixteenBitGrayUsesDoublePrecision) {
  PilImage g;
  g.mode = "I;16";
  g.pixels16 = {1000, 3000, 5000, 7000};
  g.image = io::Image(4, 1, 1);
  const PilImage out = pil_resize(g, 2, 1, Resample::kBox);
  EXPECT_EQ(out.pixels16, (std::vector<uint16_t>{2000, 6000}));
  EXPECT_EQ(out.image.pixels, (std::vector<uint8_t>{255, 255}));
}

TEST(VisionResize, BadArgumentsAreUsageErrors) {
  const io::Image im = noise(4, 4, 3, 7);
  EXPECT_THROW(resample_bands(im, 0, 4, Resample::kBicubic), UsageError);
  EXPECT_THROW(resample_bands(im, 2, 2, Resample::kNearest), UsageError);
  EXPECT_THROW(resample_from_code(6, "x.json"), UsageError);
  EXPECT_EQ(resample_from_code(3, "x.json"), Resample::kBicubic);
}

}  // namespace
}  // namespace dro::vision
