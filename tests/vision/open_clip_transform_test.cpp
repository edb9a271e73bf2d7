// open_clip's ResizeMaxSize transform (HPSv2 / CLIP score) and ImageReward's torchvision
// transform against their golden pixel_values; the recover options for the inputs the reference
// mishandles.
#include "dro/vision/open_clip_transform.h"

#include "golden.h"

namespace dro::vision {
namespace {

TEST(VisionOpenClip, HpsV2PixelValues) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("hpsv2.safetensors");
  OpenClipTransformOptions o;
  o.image_size = 42;
  double worst = 0.0;
  for (const auto& g : test::golden_images()) {
    const PilImage im = decode_image_file(test::scorer_fixtures() / g.file);
    const auto out = open_clip_transform(im, o);
    const torch::Tensor& want = gold.at(g.name + ".pixel_values");
    const double diff = test::max_abs_diff(out.pixel_values, want);
    worst = std::max(worst, diff);
    std::cout << "[vision] hpsv2 " << g.name << ": max |diff| " << diff << "\n";
    if (test::decoded_exactly(g)) {
      EXPECT_TRUE(test::allclose(out.pixel_values, want, 1e-5)) << g.name;
    }
    EXPECT_EQ(out.reference_rgba, g.mode == "RGBA") << g.name;
    EXPECT_FALSE(out.reference_not_square) << g.name;
    if (g.name == "exact_42x42") {
      EXPECT_EQ(out.resize_hw, (std::array<int, 2>{42, 42}));
    }
  }
  std::cout << "[vision] hpsv2 pixel_values: largest |diff| over all images " << worst << "\n";
}

TEST(VisionOpenClip, RecoverOptions) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const PilImage rgba = decode_image_file(test::scorer_fixtures() / "images/rgba_50x50.png");
  OpenClipTransformOptions o;
  o.image_size = 42;
  const auto kept = open_clip_transform(rgba, o);
  EXPECT_EQ(kept.pixel_values.size(0), 4);
  o.drop_alpha = true;
  const auto dropped = open_clip_transform(rgba, o);
  EXPECT_TRUE(dropped.reference_rgba);
  ASSERT_EQ(dropped.pixel_values.size(0), 3);
  // Dropping alpha changes nothing in the colour channels (no compositing, per-channel resize).
  EXPECT_TRUE(test::allclose(dropped.pixel_values, kept.pixel_values.narrow(0, 0, 3), 1e-6));

  // Longest side already 42, not square: the reference neither resizes nor pads.
  io::Image im(30, 42, 3);
  std::fill(im.pixels.begin(), im.pixels.end(), 128);
  OpenClipTransformOptions p;
  p.image_size = 42;
  const auto raw = open_clip_transform(from_pixels(im), p);
  EXPECT_TRUE(raw.reference_not_square);
  EXPECT_EQ(raw.pixel_values.sizes(), (std::vector<int64_t>{3, 42, 30}));
  p.pad_unscaled = true;
  const auto padded = open_clip_transform(from_pixels(im), p);
  EXPECT_TRUE(padded.reference_not_square);
  EXPECT_EQ(padded.pixel_values.sizes(), (std::vector<int64_t>{3, 42, 42}));
  EXPECT_EQ(padded.pad_ltrb, (std::array<int, 4>{6, 0, 6, 0}));
  EXPECT_TRUE(test::allclose(padded.pixel_values.narrow(2, 6, 30), raw.pixel_values, 0.0));
  const float pad_value = (0.0f - float(kClipMean[0])) / float(kClipStd[0]);
  EXPECT_EQ(padded.pixel_values[0][0][0].item<float>(), pad_value);
}

TEST(VisionOpenClip, ResizeMaxSizeGeometry) {
  io::Image im(20, 14, 3);  // scale 2.1: (round(29.4), 42) -> pad 13 rows, odd one at the bottom
  std::fill(im.pixels.begin(), im.pixels.end(), 255);
  OpenClipTransformOptions o;
  o.image_size = 42;
  const auto out = open_clip_transform(from_pixels(im), o);
  EXPECT_EQ(out.resize_hw, (std::array<int, 2>{29, 42}));
  EXPECT_EQ(out.pad_ltrb, (std::array<int, 4>{0, 6, 0, 7}));
  o.resize = OpenClipResize::kShortestCrop;
  const auto crop = open_clip_transform(from_pixels(im), o);
  EXPECT_EQ(crop.resize_hw, (std::array<int, 2>{42, 60}));
  EXPECT_EQ(crop.crop_top_left, (std::array<int, 2>{0, 9}));
  EXPECT_EQ(crop.pixel_values.sizes(), (std::vector<int64_t>{3, 42, 42}));
}

TEST(VisionImageReward, PixelValues) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("imagereward.safetensors");
  double worst = 0.0;
  for (const auto& g : test::golden_images()) {
    const PilImage im = decode_image_file(test::scorer_fixtures() / g.file);
    const auto out = imagereward_transform(im, 48);
    const torch::Tensor& want = gold.at(g.name + ".pixel_values");
    const double diff = test::max_abs_diff(out.pixel_values, want);
    worst = std::max(worst, diff);
    std::cout << "[vision] imagereward " << g.name << ": max |diff| " << diff << "\n";
    if (test::decoded_exactly(g)) {
      EXPECT_TRUE(test::allclose(out.pixel_values, want, 1e-6)) << g.name;
    }
    const auto hw = gold.at(g.name + ".resize_hw");
    const auto tl = gold.at(g.name + ".crop_top_left");
    EXPECT_EQ(out.resize_hw,
              (std::array<int, 2>{int(hw[0].item<int64_t>()), int(hw[1].item<int64_t>())}));
    EXPECT_EQ(out.crop_top_left,
              (std::array<int, 2>{int(tl[0].item<int64_t>()), int(tl[1].item<int64_t>())}));
  }
  std::cout << "[vision] imagereward pixel_values: largest |diff| over all images " << worst
            << "\n";
}

}  // namespace
}  // namespace dro::vision
