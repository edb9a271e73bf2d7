// Runs the real `dro score --imagereward` on the scorer fixtures' tiny ImageReward and checks its
// JSONL against the official compute_score's values (golden/expected_scores.jsonl), with the model
// paths given as flags and as a --models file; then the errors for missing files.
#include <fstream>
#include <map>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "test_util.h"

namespace dro {
namespace {

namespace fs = std::filesystem;


std::vector<io::OrderedJson> read_jsonl(const fs::path& p) {
  std::vector<io::OrderedJson> rows;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(io::OrderedJson::parse(line));
  return rows;
}

// (image file name, prompt) -> the official ImageReward score
std::map<std::pair<std::string, std::string>, double> golden_scores() {
  std::map<std::pair<std::string, std::string>, double> out;
  for (const auto& r : read_jsonl(test::scorer_fixtures() / "golden" / "expected_scores.jsonl"))
    out[{fs::path(r["image"].get<std::string>()).filename().string(),
         r["prompt"].get<std::string>()}] = r["imagereward"].get<double>();
  return out;
}

std::string imagereward_flags() {
  const fs::path s = test::scorer_fixtures();
  return cat(" --imagereward-checkpoint ", s / "imagereward-tiny" / "ImageReward.pt",
             " --imagereward-med-config ", s / "imagereward-tiny" / "med_config.json",
             " --imagereward-vit-config ", s / "imagereward-tiny" / "vit_config.json",
             " --bert-tokenizer ", s / "bert-base-uncased");
}

// The README's limit for ImageReward: |diff| <= 5e-5 + 1e-5 |ref|. Returns the largest |diff|.
double check_rows(const fs::path& out, const fs::path& dir) {
  const auto rows = read_jsonl(out);
  const auto golden = golden_scores();
  EXPECT_EQ(rows.size(), golden.size());
  double worst = 0.0;
  for (const auto& r : rows) {
    const std::string image = r["image"].get<std::string>();
    EXPECT_EQ(r["dir"], dir.string());
    if (!r.contains("imagereward") || !r["imagereward"].is_number()) {
      ADD_FAILURE() << image << " lacks imagereward: " << r.dump();
      continue;
    }
    EXPECT_EQ(r["weights"]["imagereward"].get<std::string>().size(), 64u);
    const double ref =
        golden.at({fs::path(image).filename().string(), r["prompt"].get<std::string>()});
    const double got = r["imagereward"].get<double>();
    worst = std::max(worst, std::abs(got - ref));
    EXPECT_LE(std::abs(got - ref), 5e-5 + 1e-5 * std::abs(ref))
        << image << " with prompt '" << r["prompt"].get<std::string>() << "'";
  }
  return worst;
}

TEST(CliScoreImageReward, MatchesTheOfficialCode) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const fs::path out = tmp / "scores.jsonl";
  auto [rc, log] =
      test::run_command(cat(DRO_BINARY, " score --imagereward --dir ", tmp / "set",
                            imagereward_flags(), " --batch-size 7 --out ", out, " --quiet"));
  ASSERT_EQ(rc, 0) << log;
  const double worst = check_rows(out, tmp / "set");
  std::cout << "[ parity   ] dro score imagereward: max |diff| = " << worst << "\n";
  const auto summary = io::read_json(tmp / "scores.summary.json");
  EXPECT_EQ(summary["summary"][(tmp / "set").string()]["imagereward"]["count"], 72);
  ASSERT_EQ(summary["scorers"].size(), 1u);
  EXPECT_EQ(summary["scorers"][0]["key"], "imagereward");
  EXPECT_EQ(summary["scorers"][0]["weights"].size(), 3u);
}

TEST(CliScoreImageReward, ModelsFileKeys) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const fs::path s = test::scorer_fixtures();
  io::write_json(tmp / "models.json",
                 {{"imagereward_checkpoint", (s / "imagereward-tiny" / "ImageReward.pt").string()},
                  {"imagereward-vit-config", (s / "imagereward-tiny" / "vit_config.json").string()},
                  {"bert_tokenizer", (s / "bert-base-uncased").string()}});
  // med_config.json is found beside the checkpoint, as in the hub repo.
  const fs::path out = tmp / "s.jsonl";
  auto [rc, log] =
      test::run_command(cat(DRO_BINARY, " score --imagereward --dir ", tmp / "set", " --models ",
                            tmp / "models.json", " --out ", out, " --quiet"));
  ASSERT_EQ(rc, 0) << log;
  check_rows(out, tmp / "set");
}

TEST(CliScoreImageReward, MissingFilesNameTheFlag) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  test::write_scorer_test_set(tmp / "set");
  const fs::path s = test::scorer_fixtures();
  auto [rc1, log1] =
      test::run_command(cat(DRO_BINARY, " score --imagereward --dir ", tmp / "set", " --quiet"));
  EXPECT_NE(rc1, 0);
  EXPECT_NE(log1.find("--imagereward-checkpoint"), std::string::npos) << log1;
  auto [rc2, log2] =
      test::run_command(cat(DRO_BINARY, " score --imagereward --dir ", tmp / "set",
                            " --imagereward-checkpoint ", s / "imagereward-tiny" / "ImageReward.pt",
                            " --bert-tokenizer ", tmp / "nowhere", " --quiet"));
  EXPECT_NE(rc2, 0);
  EXPECT_NE(log2.find("--bert-tokenizer"), std::string::npos) << log2;
  // The official ViT-L/16 (no --imagereward-vit-config) does not fit the tiny checkpoint: the
  // error names the keys and the flag.
  auto [rc3, log3] =
      test::run_command(cat(DRO_BINARY, " score --imagereward --dir ", tmp / "set",
                            " --imagereward-checkpoint ", s / "imagereward-tiny" / "ImageReward.pt",
                            " --bert-tokenizer ", s / "bert-base-uncased", " --quiet"));
  EXPECT_NE(rc3, 0);
  EXPECT_NE(log3.find("blip.visual_encoder.cls_token"), std::string::npos) << log3;
  EXPECT_NE(log3.find("--imagereward-vit-config"), std::string::npos) << log3;
}

}  // namespace
}  // namespace dro
