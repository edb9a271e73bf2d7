// Runs the real `dro score` on the scorer fixtures' tiny models and checks its JSONL against the
// scores the official misc/scores.py computed (golden/expected_scores.jsonl), then resume, bad
// input and the data-parallel path.
#include <fstream>
#include <map>
#include <set>

#include "dist/dist_helpers.h"
#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "test_util.h"

namespace dro {
namespace {

namespace fs = std::filesystem;


std::string model_flags() {
  const fs::path s = test::scorer_fixtures();
  return cat(" --pickscore-model ", s / "clip-vit-h-14-tiny", " --hpsv2-checkpoint ",
             s / "hpsv2-tiny" / "HPS_v2_compressed.pt", " --hpsv2-config ",
             s / "hpsv2-tiny" / "ViT-H-14.json", " --open-clip-tokenizer ",
             s / "clip-vit-h-14-tiny", " --clip-model ", s / "clip-vit-h-14-tiny",
             " --aesthetic-clip-model ", s / "clip-vit-l-14-tiny", " --aestheticv1-head ",
             s / "aesthetic-tiny" / "sa_0_4_vit_l_14_linear.pth", " --aestheticv2-head '",
             (s / "aesthetic-tiny" / "sac+logos+ava1-l14-linearMSE.pth").string(), "'");
}

const char* kAll = " --pickscore --hpsv2 --clip --aestheticv1 --aestheticv2";

std::vector<io::OrderedJson> read_jsonl(const fs::path& p) {
  std::vector<io::OrderedJson> rows;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(io::OrderedJson::parse(line));
  return rows;
}

// (image file name, prompt) -> golden row
std::map<std::pair<std::string, std::string>, io::OrderedJson> golden_rows() {
  std::map<std::pair<std::string, std::string>, io::OrderedJson> out;
  for (const auto& r : read_jsonl(test::scorer_fixtures() / "golden" / "expected_scores.jsonl"))
    out[{fs::path(r["image"].get<std::string>()).filename().string(),
         r["prompt"].get<std::string>()}] = r;
  return out;
}

// The README's limits: |diff| <= atol + 1e-5 |ref|.
double atol_of(const std::string& key) {
  if (key == "pickscore" || key == "hpsv2") return 2e-3;
  if (key == "clip") return 2e-5;
  return 5e-5;
}

TEST(CliScore, EveryScoreMatchesTheOfficialCode) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const fs::path out = tmp / "scores.jsonl";
  auto [rc, log] = test::run_command(cat(DRO_BINARY, " score --dir ", tmp / "set", kAll,
                                         model_flags(), " --batch-size 5 --out ", out, " --quiet"));
  ASSERT_EQ(rc, 0) << log;
  const auto rows = read_jsonl(out);
  const auto golden = golden_rows();
  ASSERT_EQ(rows.size(), golden.size());
  std::map<std::string, double> worst;
  std::set<std::string> seen;
  for (const auto& r : rows) {
    const std::string image = r["image"].get<std::string>();
    const std::string file = fs::path(image).filename().string();
    const auto& g = golden.at({file, r["prompt"].get<std::string>()});
    seen.insert(image);
    EXPECT_EQ(r["dir"], (tmp / "set").string());
    for (const char* key : {"pickscore", "hpsv2", "clip", "aestheticv1", "aestheticv2"}) {
      ASSERT_TRUE(r.contains(key) && r[key].is_number()) << image << " lacks " << key;
      ASSERT_TRUE(r["weights"].contains(key));
      EXPECT_EQ(r["weights"][key].get<std::string>().size(), 64u);
      if (g[key].is_null()) continue;  // the reference fails here (RGBA for the open_clip scores)
      const double ref = g[key].get<double>(), got = r[key].get<double>();
      const double d = std::abs(got - ref);
      worst[key] = std::max(worst[key], d);
      EXPECT_LE(d, atol_of(key) + 1e-5 * std::abs(ref))
          << key << " of " << image << " with prompt '" << r["prompt"].get<std::string>() << "'";
    }
  }
  EXPECT_EQ(seen.size(), rows.size());
  for (const auto& [k, d] : worst)
    std::cout << "[ parity   ] dro score " << k << ": max |diff| = " << d << "\n";

  // The reference fails on RGBA for HPSv2 / CLIP score; dro drops the alpha and says so.
  EXPECT_NE(log.find("RGBA image"), std::string::npos) << log;
  // Summary beside the JSONL: mean and std per scorer.
  const auto summary = io::read_json(tmp / "scores.summary.json");
  const auto& s = summary["summary"][(tmp / "set").string()];
  EXPECT_EQ(s["pickscore"]["count"], 72);
  double mean = 0;
  for (const auto& r : rows) mean += r["aestheticv2"].get<double>() / rows.size();
  EXPECT_NEAR(s["aestheticv2"]["mean"].get<double>(), mean, 1e-9);
  EXPECT_GT(s["aestheticv2"]["std"].get<double>(), 0);
  EXPECT_TRUE(fs::exists(tmp / "scores.summary.md"));
  EXPECT_EQ(summary["scorers"].size(), 5u);
}

TEST(CliScore, ResumesKeepsRowsAndRescoresChangedWeights) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const fs::path out = tmp / "s.jsonl";
  const std::string base =
      cat(DRO_BINARY, " score --dir ", tmp / "set", model_flags(), " --out ", out, " --quiet");
  auto [rc1, log1] = test::run_command(base + " --aestheticv1");
  ASSERT_EQ(rc1, 0) << log1;
  const std::string first = io::read_file(out);
  auto [rc2, log2] = test::run_command(base + " --aestheticv1");
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("scored 0 value(s), kept 72"), std::string::npos) << log2;
  EXPECT_EQ(io::read_file(out), first);
  // A second scorer adds its key to the same rows.
  auto [rc3, log3] = test::run_command(base + " --aestheticv2");
  ASSERT_EQ(rc3, 0) << log3;
  const auto rows = read_jsonl(out);
  ASSERT_EQ(rows.size(), 72u);
  for (const auto& r : rows) EXPECT_TRUE(r.contains("aestheticv1") && r.contains("aestheticv2"));
  // An interrupted run's part file is picked up: its rows count as done.
  {
    auto r = rows[0];
    r["aestheticv1"] = 123.0;
    std::ofstream part(out.string() + ".part-0.jsonl");
    part << r.dump() << "\n{\"dir\": \"torn";
  }
  auto [rc4, log4] = test::run_command(base + " --aestheticv1");
  ASSERT_EQ(rc4, 0) << log4;
  EXPECT_NE(log4.find("unreadable line"), std::string::npos) << log4;
  EXPECT_EQ(read_jsonl(out)[0]["aestheticv1"].get<double>(), 123.0);
  EXPECT_FALSE(fs::exists(out.string() + ".part-0.jsonl"));
}

TEST(CliScore, BadInputIsAClearError) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const std::string aes =
      cat(DRO_BINARY, " score --aestheticv1 --dir ", tmp / "set", model_flags(), " --quiet");
  // A corrupt image stops the run naming the file, or is skipped and counted.
  io::write_file_atomically(tmp / "set" / "p0" / "zz_broken.png", "\x89PNG\r\n\x1a\n not really");
  auto [rc1, log1] = test::run_command(aes);
  EXPECT_NE(rc1, 0);
  EXPECT_NE(log1.find("zz_broken.png"), std::string::npos) << log1;
  auto [rc2, log2] = test::run_command(aes + " --skip-bad-images");
  EXPECT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("skipped 1 bad image"), std::string::npos) << log2;
  EXPECT_EQ(read_jsonl(tmp / "set" / "scores.jsonl").size(), 72u);
  // An empty prompt folder.
  fs::create_directories(tmp / "set" / "p9");
  io::write_file_atomically(tmp / "set" / "p9" / "caption.txt", "nothing here");
  auto [rc3, log3] = test::run_command(aes);
  EXPECT_NE(rc3, 0);
  EXPECT_NE(log3.find("p9"), std::string::npos) << log3;
  fs::remove_all(tmp / "set" / "p9");
  fs::remove(tmp / "set" / "p0" / "zz_broken.png");
  // Missing and wrong model paths name the flag.
  auto [rc4, log4] =
      test::run_command(cat(DRO_BINARY, " score --pickscore --dir ", tmp / "set", " --quiet"));
  EXPECT_NE(rc4, 0);
  EXPECT_NE(log4.find("--pickscore-model"), std::string::npos) << log4;
  auto [rc5, log5] = test::run_command(cat(DRO_BINARY, " score --clip --dir ", tmp / "set",
                                           " --clip-model /nonexistent/clip --quiet"));
  EXPECT_NE(rc5, 0);
  EXPECT_NE(log5.find("/nonexistent/clip"), std::string::npos) << log5;
  // A checkpoint of the wrong model names the keys.
  auto [rc6, log6] = test::run_command(
      cat(DRO_BINARY, " score --hpsv2 --dir ", tmp / "set", " --hpsv2-checkpoint ",
          test::scorer_fixtures() / "aesthetic-tiny" / "sa_0_4_vit_l_14_linear.pth",
          " --hpsv2-config ", test::scorer_fixtures() / "hpsv2-tiny" / "ViT-H-14.json",
          " --open-clip-tokenizer ", test::scorer_fixtures() / "clip-vit-h-14-tiny"));
  EXPECT_NE(rc6, 0);
  EXPECT_NE(log6.find("unexpected 2: 'bias' 'weight'"), std::string::npos) << log6;
  // No scorer chosen.
  auto [rc7, log7] = test::run_command(cat(DRO_BINARY, " score --dir ", tmp / "set"));
  EXPECT_NE(rc7, 0);
  EXPECT_NE(log7.find("at least one"), std::string::npos) << log7;
}

TEST(CliScore, ModelsFileGivesThePaths) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const fs::path s = test::scorer_fixtures();
  io::write_file_atomically(
      tmp / "models.toml",
      cat("[models]\naesthetic_clip_model = \"", (s / "clip-vit-l-14-tiny").string(),
          "\"\naestheticv2-head = '",
          (s / "aesthetic-tiny" / "sac+logos+ava1-l14-linearMSE.pth").string(), "'\n"));
  auto [rc, log] =
      test::run_command(cat(DRO_BINARY, " score --aestheticv2 --dir ", tmp / "set", " --models ",
                            tmp / "models.toml", " --out ", tmp / "a.jsonl", " --quiet"));
  ASSERT_EQ(rc, 0) << log;
  EXPECT_EQ(read_jsonl(tmp / "a.jsonl").size(), 72u);
  io::write_file_atomically(tmp / "bad.json", "{\"pickscore_modle\": \"x\"}");
  auto [rc2, log2] = test::run_command(
      cat(DRO_BINARY, " score --pickscore --dir ", tmp / "set", " --models ", tmp / "bad.json"));
  EXPECT_NE(rc2, 0);
  EXPECT_NE(log2.find("pickscore_modle"), std::string::npos) << log2;
}

TEST(CliScore, TwoRanksGiveTheSameScores) {
  DRO_REQUIRE_SCORER_FIXTURES();
  DRO_REQUIRE_GLOO();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const std::string flags = cat(" score --dir ", tmp / "set", " --pickscore --aestheticv1",
                                model_flags(), " --quiet --batch-size 7");
  auto [rc1, log1] = test::run_command(cat(DRO_BINARY, flags, " --out ", tmp / "one.jsonl"));
  ASSERT_EQ(rc1, 0) << log1;
  auto [rc2, log2] = test::run_command(
      cat(DRO_BINARY, " launch --nproc 2 --master-port 0 --", flags, " --out ", tmp / "two.jsonl"));
  ASSERT_EQ(rc2, 0) << log2;
  const auto a = read_jsonl(tmp / "one.jsonl"), b = read_jsonl(tmp / "two.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["image"], b[i]["image"]);
    EXPECT_NEAR(a[i]["pickscore"].get<double>(), b[i]["pickscore"].get<double>(), 1e-4);
    EXPECT_NEAR(a[i]["aestheticv1"].get<double>(), b[i]["aestheticv1"].get<double>(), 1e-6);
  }
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().string().find(".part-"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace dro
