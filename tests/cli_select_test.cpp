// `dro select` on each input kind (folder, JSONL and CSV manifests, pairs, a webdataset shard)
// holding the same images and captions gives the same top K; it resumes from its scores; malformed
// inputs are named by file and entry.
#include <fstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro {
namespace {
namespace fs = std::filesystem;

const std::string kDro = DRO_BINARY;

std::vector<std::string> captions_of(const fs::path& out) {
  std::vector<std::string> c;
  for (int i = 0; fs::exists(out / std::to_string(i) / "caption.txt"); ++i)
    c.push_back(io::read_file(out / std::to_string(i) / "caption.txt"));
  return c;
}

TEST(CliSelect, EveryInputKindGivesTheSameTopK) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "experts", 6);  // 000..005, captions cycling over four
  const std::string flags = " --pickscore-model " + (test::scorer_fixtures() / "clip-vit-h-14-tiny").string() +
                            " --quiet";
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp / "experts")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  auto caption = [&](int i) { return io::read_file(tmp / "experts" / names[i] / "caption.txt"); };
  auto image = [&](int i) { return (tmp / "experts" / names[i] / (names[i] + ".png")).string(); };
  {
    std::ofstream j(tmp / "manifest.jsonl"), c(tmp / "manifest.csv"), p(tmp / "pairs.jsonl"), q(tmp / "paired.jsonl");
    c << "image,caption,uid\n";
    for (int i = 0; i < 6; ++i) {
      j << io::OrderedJson{{"image", image(i)}, {"caption", caption(i)}}.dump() << "\n";
      c << image(i) << ",\"" << caption(i) << "\"," << i << "\n";
    }
    // Pairs share their caption: the same (image, caption) set as `paired.jsonl` lists one by one.
    for (int i = 0; i < 6; i += 2) {
      p << io::OrderedJson{{"caption", caption(i)}, {"image_0", image(i)}, {"image_1", image(i + 1)}, {"label_0", 1}}.dump()
        << "\n";
      for (int k : {i, i + 1}) q << io::OrderedJson{{"image", image(k)}, {"caption", caption(i)}}.dump() << "\n";
    }
    // A repeated pair: de-duplicated by (image, caption).
    p << io::OrderedJson{{"caption", caption(0)}, {"image_0", image(0)}, {"image_1", image(1)}}.dump() << "\n";
  }
  fs::create_directories(tmp / "wds");
  for (int i = 0; i < 6; ++i) {
    fs::copy_file(image(i), tmp / "wds" / cat("s", i, ".png"));
    io::write_file_atomically(tmp / "wds" / cat("s", i, ".txt"), caption(i));
  }
  auto [rt, lt] = test::run_command("tar -cf " + (tmp / "shard.tar").string() + " -C " + (tmp / "wds").string() +
                                    " s0.png s0.txt s1.png s1.txt s2.png s2.txt s3.png s3.txt s4.png s4.txt s5.png s5.txt");
  ASSERT_EQ(rt, 0) << lt;

  std::vector<std::string> reference;
  for (const std::string input : {"experts", "manifest.jsonl", "manifest.csv", "shard.tar"}) {
    const fs::path out = tmp / ("out-" + input);
    auto [rc, log] = test::run_command(kDro + " select --input " + (tmp / input).string() + flags + " --top-k 3 --out " +
                                       out.string());
    ASSERT_EQ(rc, 0) << input << "\n" << log;
    EXPECT_NE(log.find("6 unique (image, caption) pairs"), std::string::npos) << input << "\n" << log;
    const auto got = captions_of(out);
    ASSERT_EQ(got.size(), 3u) << input;
    if (reference.empty()) {
      reference = got;
      continue;
    }
    EXPECT_EQ(got, reference) << input;
    for (int i = 0; i < 3; ++i)
      EXPECT_TRUE(io::read_image(out / std::to_string(i) / (std::to_string(i) + ".png")) ==
                  io::read_image(tmp / "out-experts" / std::to_string(i) / (std::to_string(i) + ".png")))
          << input << " " << i;
  }
  for (const std::string input : {"pairs.jsonl", "paired.jsonl"}) {
    auto [rc, log] = test::run_command(kDro + " select --input " + (tmp / input).string() + flags + " --top-k 3 --out " +
                                       (tmp / ("out-" + input)).string());
    ASSERT_EQ(rc, 0) << input << "\n" << log;
    EXPECT_NE(log.find("6 unique (image, caption) pairs from " + std::string(input == "pairs.jsonl" ? "8" : "6")),
              std::string::npos) << log;
  }
  EXPECT_EQ(captions_of(tmp / "out-pairs.jsonl"), captions_of(tmp / "out-paired.jsonl"));
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(io::read_image(tmp / "out-pairs.jsonl" / std::to_string(i) / (std::to_string(i) + ".png")) ==
                io::read_image(tmp / "out-paired.jsonl" / std::to_string(i) / (std::to_string(i) + ".png")));
  // Two processes (each scores a shard, rank 0 merges): the same selection.
  auto [rl, ll] = test::run_command(kDro + " launch --nproc 2 -- select --input " + (tmp / "experts").string() + flags +
                                    " --top-k 3 --out " + (tmp / "out-2ranks").string());
  ASSERT_EQ(rl, 0) << ll;
  EXPECT_EQ(captions_of(tmp / "out-2ranks"), reference);
  // Another K from the same scores: nothing is scored again.
  auto [rc, log] = test::run_command(kDro + " select --input " + (tmp / "experts").string() + flags +
                                     " --top-k 5 --out " + (tmp / "out-experts").string());
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("kept 5"), std::string::npos) << log;
  EXPECT_NE(log.find("scored 0 image(s), reused 6"), std::string::npos) << log;
  // An interrupted run (half of the scores on disk) scores only the rest.
  const std::string scores = io::read_file(tmp / "out-manifest.jsonl/scores.jsonl");
  size_t cut = 0;
  for (int i = 0; i < 3; ++i) cut = scores.find('\n', cut) + 1;
  io::write_file_atomically(tmp / "out-manifest.jsonl/scores.jsonl", scores.substr(0, cut));
  auto [ri, li] = test::run_command(kDro + " select --input " + (tmp / "manifest.jsonl").string() + flags +
                                    " --top-k 3 --out " + (tmp / "out-manifest.jsonl").string());
  ASSERT_EQ(ri, 0) << li;
  EXPECT_NE(li.find("scored 3 image(s), reused 3"), std::string::npos) << li;
  EXPECT_EQ(captions_of(tmp / "out-manifest.jsonl"), reference);
  const auto five = captions_of(tmp / "out-experts");
  ASSERT_EQ(five.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(five.begin(), five.begin() + 3), reference);
}

TEST(CliSelect, MalformedInputsAreNamed) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  const std::string flags = " --pickscore-model " + (test::scorer_fixtures() / "clip-vit-h-14-tiny").string() +
                            " --quiet --out " + (tmp / "out").string();
  test::write_experts(tmp / "experts", 2);
  {
    std::ofstream j(tmp / "m.jsonl");
    j << io::OrderedJson{{"image", (tmp / "experts/000/000.png").string()}, {"caption", "x"}}.dump() << "\n";
    j << io::OrderedJson{{"image", (tmp / "experts/001/001.png").string()}}.dump() << "\n";
  }
  auto [rc, log] = test::run_command(kDro + " select --input " + (tmp / "m.jsonl").string() + flags);
  EXPECT_NE(rc, 0);
  EXPECT_NE(log.find("m.jsonl entry 2: no 'caption'"), std::string::npos) << log;
  io::write_file_atomically(tmp / "bad.tar", std::string(512, 'x'));
  auto [rc2, log2] = test::run_command(kDro + " select --input " + (tmp / "bad.tar").string() + flags);
  EXPECT_NE(rc2, 0);
  EXPECT_NE(log2.find("bad.tar: bad tar header"), std::string::npos) << log2;
  auto [rc3, log3] = test::run_command(kDro + " select --input " + (tmp / "nothing.tar").string() + flags);
  EXPECT_NE(rc3, 0);
  EXPECT_NE(log3.find("no such file"), std::string::npos) << log3;
}

}  // namespace
}  // namespace dro
