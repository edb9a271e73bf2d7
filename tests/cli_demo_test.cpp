// Runs the real `dro demo --quick` end to end on a freshly initialised (untrained) base model with
// a reduced budget, and `dro world build/eval`: checks the report's files and that results.json
// is well formed. Whether DRO wins is measured by the demo itself, not asserted here.
#include <array>
#include <cmath>
#include <cstdio>

#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/io/json.h"
#include "dro/world/base_model.h"
#include "test_util.h"

namespace dro {
namespace {
namespace fs = std::filesystem;

std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  int rc = pclose(p);
  return {WEXITSTATUS(rc), out};
}

const std::string kDro = DRO_BINARY;

void expect_interval(const io::OrderedJson& m, const std::string& key) {
  ASSERT_TRUE(m.contains(key)) << key;
  for (const char* f : {"mean", "ci_low", "ci_high"}) {
    ASSERT_TRUE(m[key].contains(f) && m[key][f].is_number()) << key << "." << f;
    EXPECT_TRUE(std::isfinite(m[key][f].get<double>())) << key << "." << f;
  }
  EXPECT_LE(m[key]["ci_low"].get<double>(), m[key]["mean"].get<double>() + 1e-12) << key;
  EXPECT_GE(m[key]["ci_high"].get<double>(), m[key]["mean"].get<double>() - 1e-12) << key;
}

TEST(CliDemo, QuickRunWritesAWellFormedReport) {
  test::TempDir tmp;
  world::BaseModelConfig mc;
  mc.block_out_channels = {8, 16, 16};
  mc.text_hidden = 16;
  mc.text_heads = 2;
  mc.attention_heads = 2;
  world::write_base_model(tmp / "model", mc);
  const fs::path out = tmp / "report";
  auto [rc, log] = run(kDro + " demo --quick --quiet --model " + (tmp / "model").string() + " --out " +
                       out.string() + " --steps 3 --eval-prompts 3 --eval-seeds 2 --eval-steps 3");
  ASSERT_EQ(rc, 0) << log;
  for (const char* f : {"results.json", "summary.md", "samples.png", "curves.png", "train/metrics.jsonl"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_GT(io::read_image(out / "samples.png").width, 0);
  EXPECT_GT(io::read_image(out / "curves.png").width, 0);
  const auto r = io::read_json(out / "results.json");
  ASSERT_TRUE(r.contains("models") && r.contains("settings"));
  for (const char* model : {"base", "dro"}) {
    ASSERT_TRUE(r["models"].contains(model)) << model;
    const auto& m = r["models"][model];
    expect_interval(m, "preference");
    expect_interval(m, "fidelity");
    expect_interval(m, "diversity");
    ASSERT_TRUE(m.contains("win_rate_vs_base"));
    // The breakdown: a share in [0, 1] per caption attribute and per hidden quality term.
    for (const char* part : {"attribute_rate", "quality_terms"}) {
      ASSERT_TRUE(m.contains(part) && m[part].size() == 5) << model << "." << part;
      for (const auto& [k, v] : m[part].items())
        EXPECT_TRUE(v.get<double>() >= 0 && v.get<double>() <= 1) << model << "." << part << "." << k;
    }
  }
  EXPECT_TRUE(r["models"]["base"]["win_rate_vs_base"].is_null());
  const double w = r["models"]["dro"]["win_rate_vs_base"].get<double>();
  EXPECT_TRUE(w >= 0 && w <= 1) << w;
  // The paired gain: mean of per-prompt differences = difference of the means (same prompts).
  expect_interval(r["models"]["dro"], "preference_gain_vs_base");
  expect_interval(r["models"]["dro"], "fidelity_change_vs_base");
  EXPECT_NEAR(r["models"]["dro"]["preference_gain_vs_base"]["mean"].get<double>(),
              r["models"]["dro"]["preference"]["mean"].get<double>() -
                  r["models"]["base"]["preference"]["mean"].get<double>(),
              1e-9);
  EXPECT_FALSE(r["models"]["base"].contains("preference_gain_vs_base"));
  EXPECT_EQ(r["settings"]["train"]["random_flip"], false);
  EXPECT_EQ(r["settings"]["eval"]["prompts"], 3);
  // The paper's protocol through dro eval's code, the world's judges as scorers.
  const auto& pw = r["paper_protocol"]["win_rates"]["dro"]["base"]["preference"];
  EXPECT_EQ(pw["prompts"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(pw["rate"].get<double>(), (pw["wins"].get<double>() + 0.5 * pw["ties"].get<double>()) / 3);
  EXPECT_EQ(r["paper_protocol"]["select_by"], "preference");
  for (const char* f : {"eval/results.json", "eval/report.md", "eval/win_rates.svg", "eval/grid.png"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_NE(io::read_file(out / "summary.md").find("The paper's protocol"), std::string::npos);
  // The generated images are in the official layout and `dro world eval` scores them.
  auto [rc2, log2] = run(kDro + " world eval --images " + (out / "samples" / "dro").string());
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("preference"), std::string::npos) << log2;
}

TEST(CliDemo, MissingModelIsAClearError) {
  test::TempDir tmp;
  auto [rc, log] = run(kDro + " demo --quick --model " + (tmp / "nope").string() + " --out " + (tmp / "r").string());
  EXPECT_EQ(rc, 2) << log;
  EXPECT_NE(log.find("base model not found"), std::string::npos) << log;
}

}  // namespace
}  // namespace dro
