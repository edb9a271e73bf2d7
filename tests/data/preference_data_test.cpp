// The preference baselines' manifests: dro world's pairs/labels, Pick-a-Pic rows (ties dropped),
// the Diffusion-KTO CSV, and entry-named errors.
#include <gtest/gtest.h>

#include "dro/core/error.h"
#include "dro/data/expert_dataset.h"
#include "dro/data/preference_data.h"
#include "dro/io/image.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"

namespace dro::data {
namespace {
namespace fs = std::filesystem;

void touch(const fs::path& p) { io::write_file_atomically(p, "x"); }

template <typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected an error with: " << part;
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(PreferenceData, PairsFromWorldAndPickAPicRows) {
  test::TempDir tmp;
  for (const char* f : {"a.png", "b.png", "c.png"}) touch(tmp / f);
  io::write_file_atomically(tmp / "pairs.jsonl",
                            R"({"session": 1, "caption": "a cat", "chosen": "a.png", "rejected": "b.png"})" "\n");
  auto world = read_pairs(tmp / "pairs.jsonl");
  ASSERT_EQ(world.pairs.size(), 1u);
  EXPECT_EQ(world.pairs[0].chosen, tmp / "a.png");
  EXPECT_EQ(world.pairs[0].rejected, tmp / "b.png");
  io::write_file_atomically(tmp / "pickapic.csv",
                            "caption,image_0,image_1,label_0\n"
                            "\"a cat, sitting\",a.png,b.png,1\n"
                            "a dog,a.png,c.png,0\n"
                            "a cow,b.png,c.png,0.5\n");
  auto pap = read_pairs(tmp / "pickapic.csv");
  ASSERT_EQ(pap.pairs.size(), 2u);
  EXPECT_EQ(pap.ties_dropped, 1);
  EXPECT_EQ(pap.pairs[0].caption, "a cat, sitting");
  EXPECT_EQ(pap.pairs[0].chosen, tmp / "a.png");
  EXPECT_EQ(pap.pairs[1].chosen, tmp / "c.png");  // label_0 = 0: image_1 preferred
  EXPECT_EQ(pap.pairs[1].rejected, tmp / "a.png");
  io::write_file_atomically(tmp / "bad.jsonl", R"({"caption": "x", "chosen": "a.png", "rejected": "z.png"})" "\n");
  expect_error([&] { read_pairs(tmp / "bad.jsonl"); }, "bad.jsonl entry 1: rejected");
  io::write_file_atomically(tmp / "bad2.csv", "caption,image_0,image_1,label_0\nx,a.png,b.png,2\n");
  expect_error([&] { read_pairs(tmp / "bad2.csv"); }, "label_0 \"2\"");
}

TEST(PreferenceData, LabelsFromWorldAndTheKtoCsv) {
  test::TempDir tmp;
  for (const char* f : {"a.png", "b.png"}) touch(tmp / f);
  io::write_file_atomically(tmp / "labels.jsonl",
                            R"({"caption": "a cat", "image": "a.png", "label": 1})" "\n"
                            R"({"caption": "a cat", "image": "b.png", "label": 0})" "\n");
  auto world = read_labels(tmp / "labels.jsonl");
  ASSERT_EQ(world.images.size(), 2u);
  EXPECT_EQ(world.desirable(), 1);
  EXPECT_FALSE(world.images[1].desirable);
  io::write_file_atomically(tmp / "kto.csv",
                            "file_path,caption,label\n"
                            "a.png,a cat,exclusive_win\n"
                            "b.png,a cat,exclusive_lose\n"
                            "b.png,a dog,tie\n");
  auto kto = read_labels(tmp / "kto.csv");
  ASSERT_EQ(kto.images.size(), 2u);
  EXPECT_EQ(kto.dropped, 1);
  EXPECT_TRUE(kto.images[0].desirable);
  EXPECT_FALSE(kto.images[1].desirable);
  io::write_file_atomically(tmp / "bad.jsonl", R"({"caption": "a cat", "image": "a.png", "label": "maybe"})" "\n");
  expect_error([&] { read_labels(tmp / "bad.jsonl"); }, "bad.jsonl entry 1: label \"maybe\"");
  io::write_file_atomically(tmp / "torn.jsonl", R"({"caption": "a cat", "image": "a.png", )" "\n");
  expect_error([&] { read_labels(tmp / "torn.jsonl"); }, "torn.jsonl line 1: not a JSON object");
}

// A pair's two images get the same flip and crop draws; labels travel with the images.
TEST(PreferenceDataset, PairsShareTheirTransformAndLabelsTravel) {
  test::TempDir tmp;
  auto gen = at::detail::createCPUGenerator(3);
  const auto a = torch::rand({3, 20, 28}, gen), b = torch::rand({3, 20, 28}, gen);
  io::write_png(tmp / "a.png", io::from_tensor(a, io::PixelRange::kZeroOne));
  io::write_png(tmp / "b.png", io::from_tensor(b, io::PixelRange::kZeroOne));
  PairData pairs;
  pairs.pairs.push_back({"a cat", tmp / "a.png", tmp / "a.png"});
  pairs.pairs.push_back({"a dog", tmp / "a.png", tmp / "b.png"});
  const auto d = ExpertDataset::from_pairs(pairs, "pairs.jsonl");
  ASSERT_TRUE(d.paired());
  const TransformOptions t{16, true, true};
  for (double flip : {0.2, 0.8})
    for (double cx : {0.0, 0.6, 0.99}) {
      const auto same = d.load(0, t, flip, cx, 0.5);
      EXPECT_TRUE(torch::equal(same.image, same.rejected)) << flip << " " << cx;
      // The second image gets the first one's flip and crop: equal to b loaded alone that way.
      const auto pair = d.load(1, t, flip, cx, 0.5);
      PairData alone;
      alone.pairs.push_back({"a dog", tmp / "b.png", tmp / "a.png"});
      EXPECT_TRUE(torch::equal(pair.rejected, ExpertDataset::from_pairs(alone, "x").load(0, t, flip, cx, 0.5).image));
    }
  LabelData labels;
  labels.images = {{"a cat", tmp / "a.png", true}, {"a dog", tmp / "b.png", false}};
  const auto l = ExpertDataset::from_labels(labels, "labels.jsonl");
  EXPECT_FALSE(l.paired());
  EXPECT_EQ(l.label(0), 1.f);
  EXPECT_EQ(l.label(1), -1.f);
  EXPECT_FALSE(l.load(1, t, 0.5, 0.5, 0.5).rejected.defined());
  EXPECT_EQ(l.load(1, t, 0.5, 0.5, 0.5).label, -1.f);
}

// With a desirable ratio, each drawn image is desirable with that probability whatever the data
// holds; without it, as often as the data holds them.
TEST(PreferenceDataset, DesirableRatioSetsTheShareDrawn) {
  test::TempDir tmp;
  io::write_png(tmp / "a.png", io::Image(12, 12, 3));
  LabelData labels;
  for (int i = 0; i < 40; ++i) labels.images.push_back({"a cat", tmp / "a.png", i < 4});  // 10% desirable
  const auto d = ExpertDataset::from_labels(labels, "labels.jsonl");
  auto share = [&](double ratio) {
    ExpertLoader loader(&d, TransformOptions{8, false, false}, 7, 1, 0, 1, ratio);
    const auto b = loader.next(400);  // ten epochs
    return (b.labels > 0).to(torch::kFloat).mean().item<double>();
  };
  EXPECT_NEAR(share(0), 0.1, 1e-6);
  const double r = share(0.5);
  std::cout << "desirable share drawn at ratio 0.5: " << r << "\n";
  EXPECT_NEAR(r, 0.5, 0.08);  // 400 draws: sd 0.025
  EXPECT_NEAR(share(0.9), 0.9, 0.05);
}

}  // namespace
}  // namespace dro::data
