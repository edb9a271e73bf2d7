// The Hugging Face CLIPImageProcessor against the golden pixel_values of PickScore (laion
// processor, 42 px) and the aesthetic scorers (openai processor, 32 px), the torchvision variant
// where its crop offsets differ, and the config parser.
#include "dro/vision/clip_image_processor.h"

#include <fstream>

#include "dro/core/error.h"
#include "dro/vision/torchvision_transform.h"
#include "golden.h"

namespace dro::vision {
namespace {

std::array<int, 2> pair_of(const torch::Tensor& t) {
  return {static_cast<int>(t[0].item<int64_t>()), static_cast<int>(t[1].item<int64_t>())};
}

void check_processor(const std::string& model, const std::string& golden_file, int size) {
  const auto gold = test::golden(golden_file);
  const auto proc = ClipImageProcessor::from_pretrained(test::scorer_fixtures() / model);
  EXPECT_EQ(proc.config().shortest_edge, size);
  EXPECT_EQ(proc.config().crop_height, size);
  double worst = 0.0;
  for (const auto& g : test::golden_images()) {
    const PilImage im = decode_image_file(test::scorer_fixtures() / g.file);
    const auto out = proc.preprocess(im);
    const torch::Tensor& want = gold.at(g.name + ".pixel_values");
    const double diff = test::max_abs_diff(out.pixel_values, want);
    worst = std::max(worst, diff);
    std::cout << "[vision] " << golden_file << " " << g.name << ": max |diff| " << diff << "\n";
    if (test::decoded_exactly(g)) {
      EXPECT_TRUE(test::allclose(out.pixel_values, want, 1e-6)) << g.name;
    }
    EXPECT_EQ(out.resize_hw, pair_of(gold.at(g.name + ".resize_hw"))) << g.name;
    EXPECT_EQ(out.crop_top_left, pair_of(gold.at(g.name + ".crop_top_left"))) << g.name;
  }
  std::cout << "[vision] " << golden_file << " pixel_values: largest |diff| over all images "
            << worst << "\n";
}

TEST(VisionClipProcessor, PickScorePixelValues) {
  DRO_REQUIRE_SCORER_FIXTURES();
  check_processor("clip-vit-h-14-tiny", "pickscore.safetensors", 42);
}

TEST(VisionClipProcessor, AestheticPixelValues) {
  DRO_REQUIRE_SCORER_FIXTURES();
  check_processor("clip-vit-l-14-tiny", "aesthetic.safetensors", 32);
}

TEST(VisionClipProcessor, TorchvisionCropOffsetsAndPixels) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("pickscore.safetensors");
  double worst = 0.0;
  int compared = 0;
  for (const auto& g : test::golden_images()) {
    const PilImage im = decode_image_file(test::scorer_fixtures() / g.file);
    const auto hw = torchvision_resize_size(im.height(), im.width(), 42);
    EXPECT_EQ(hw, pair_of(gold.at(g.name + ".resize_hw"))) << g.name;
    EXPECT_EQ(torchvision_crop_offsets(hw[0], hw[1], 42, 42),
              pair_of(gold.at(g.name + ".torchvision_crop_top_left")))
        << g.name;
    auto it = gold.find(g.name + ".torchvision_pixel_values");
    if (it == gold.end()) continue;
    const auto out = clip_style_pil_transform(im, 42);
    const double diff = test::max_abs_diff(out.pixel_values, it->second);
    worst = std::max(worst, diff);
    ++compared;
    EXPECT_TRUE(test::allclose(out.pixel_values, it->second, 1e-6)) << g.name;
  }
  EXPECT_EQ(compared, 2);
  std::cout << "[vision] pickscore torchvision_pixel_values: largest |diff| " << worst << "\n";
}

ClipImageProcessorConfig parse(const std::string& text) {
  return ClipImageProcessorConfig::from_json(io::OrderedJson::parse(text),
                                             "cfg/preprocessor_config.json");
}

void expect_usage_error(const std::string& text, const std::string& key) {
  try {
    parse(text);
    FAIL() << "accepted " << text;
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cfg/preprocessor_config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
}

TEST(VisionClipProcessor, ConfigShapesAndDefaults) {
  const auto d = parse("{}");  // CLIPImageProcessor's defaults
  EXPECT_EQ(d.shortest_edge, 224);
  EXPECT_EQ(d.crop_height, 224);
  EXPECT_EQ(d.crop_width, 224);
  EXPECT_EQ(d.resample, Resample::kBicubic);
  EXPECT_TRUE(d.do_convert_rgb && d.do_rescale && d.do_normalize && d.do_resize &&
              d.do_center_crop);
  EXPECT_DOUBLE_EQ(d.rescale_factor, 1.0 / 255.0);

  const auto old =
      parse(R"({"size": 42, "crop_size": 40, "feature_extractor_type": "CLIPFeatureExtractor",
                             "resample": 2, "unknown_key": [1, 2]})");
  EXPECT_EQ(old.shortest_edge, 42);
  EXPECT_EQ(old.crop_height, 40);
  EXPECT_EQ(old.crop_width, 40);
  EXPECT_EQ(old.resample, Resample::kBilinear);

  const auto dicts =
      parse(R"({"size": {"shortest_edge": 224}, "crop_size": {"height": 200, "width": 210},
                               "image_mean": 0.5, "image_std": [0.1, 0.2, 0.3], "do_convert_rgb": false})");
  EXPECT_EQ(dicts.shortest_edge, 224);
  EXPECT_EQ(dicts.crop_height, 200);
  EXPECT_EQ(dicts.crop_width, 210);
  EXPECT_EQ(dicts.image_mean, std::vector<double>{0.5});
  EXPECT_FALSE(dicts.do_convert_rgb);

  const auto exact = parse(R"({"size": {"height": 30, "width": 50}, "crop_size": [20, 25]})");
  EXPECT_EQ(exact.shortest_edge, 0);
  EXPECT_EQ(exact.size_height, 30);
  EXPECT_EQ(exact.size_width, 50);
  EXPECT_EQ(exact.crop_height, 20);
  EXPECT_EQ(exact.crop_width, 25);
  EXPECT_EQ(ClipImageProcessor(exact).resize_size(100, 7), (std::array<int, 2>{30, 50}));
}

TEST(VisionClipProcessor, BadConfigValuesNameFileAndKey) {
  expect_usage_error(R"({"size": -3})", "size");
  expect_usage_error(R"({"size": {"longest_edge": 10}})", "size");
  expect_usage_error(R"({"size": {"height": 10}})", "size");
  expect_usage_error(R"({"crop_size": {"shortest_edge": 10}})", "crop_size");
  expect_usage_error(R"({"resample": 9})", "resample");
  expect_usage_error(R"({"resample": "bicubic"})", "resample");
  expect_usage_error(R"({"do_resize": "yes"})", "do_resize");
  expect_usage_error(R"({"image_mean": [0.5, "a"]})", "image_mean");
  expect_usage_error(R"({"image_std": [0.5, 0, 1]})", "image_std");
  expect_usage_error(R"({"rescale_factor": "1/255"})", "rescale_factor");
}

TEST(VisionClipProcessor, ResizeRuleTruncatesAndCropPadsSmallImages) {
  ClipImageProcessorConfig c;
  c.shortest_edge = 42;
  c.crop_height = c.crop_width = 42;
  const ClipImageProcessor p(c);
  EXPECT_EQ(p.resize_size(39, 87), (std::array<int, 2>{42, 93}));  // int(42 * 87 / 39) = int(93.69)
  EXPECT_EQ(p.resize_size(61, 35), (std::array<int, 2>{73, 42}));

  // Without resizing, a 30 x 20 image is centred at ceil((42 - H) / 2) on zeros.
  c.do_resize = false;
  c.do_normalize = false;
  io::Image im(20, 30, 3);
  std::fill(im.pixels.begin(), im.pixels.end(), 255);
  const auto out = ClipImageProcessor(c).preprocess(from_pixels(im));
  EXPECT_EQ(out.crop_top_left, (std::array<int, 2>{-6, -11}));
  const auto& pv = out.pixel_values;
  EXPECT_EQ(pv[0][5][11].item<float>(), 0.0f);
  EXPECT_EQ(pv[0][6][11].item<float>(), 1.0f);
  EXPECT_EQ(pv[0][35][30].item<float>(), 1.0f);
  EXPECT_EQ(pv[0][36][30].item<float>(), 0.0f);
  EXPECT_EQ(pv[0][6][31].item<float>(), 0.0f);
  EXPECT_EQ(pv.sum().item<float>(), 3.0f * 20 * 30);
}

TEST(VisionClipProcessor, RescaleEqualsFloatDivision) {
  // float32(float64(x) * (1 / 255)) == float32(x) / 255 for every byte (README, "Preprocessing")
  for (int v = 0; v < 256; ++v)
    ASSERT_EQ(static_cast<float>(static_cast<double>(v) * (1.0 / 255.0)),
              static_cast<float>(v) / 255.0f)
        << v;
}

}  // namespace
}  // namespace dro::vision
