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

// An untrained base model small enough for seconds-long demo runs.
void write_tiny_base(const fs::path& dir) {
  world::BaseModelConfig mc;
  mc.block_out_channels = {8, 16, 16};
  mc.text_hidden = 16;
  mc.text_heads = 2;
  mc.attention_heads = 2;
  world::write_base_model(dir, mc);
}

TEST(CliDemo, QuickRunWritesAWellFormedReport) {
  test::TempDir tmp;
  write_tiny_base(tmp / "model");
  const fs::path out = tmp / "report";
  auto [rc, log] = run(kDro + " demo --quick --quiet --model " + (tmp / "model").string() + " --out " +
                       out.string() + " --steps 3 --eval-prompts 3 --eval-seeds 2 --eval-steps 3");
  ASSERT_EQ(rc, 0) << log;
  for (const char* f : {"results.json", "summary.md", "samples.png", "curves.png", "train/dro/metrics.jsonl",
                        "train/sft/metrics.jsonl", "train/dpo/metrics.jsonl", "train/kto/metrics.jsonl"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_FALSE(fs::exists(out / "ablation.png"));
  // One row per model of 3 prompts.
  const auto grid = io::read_image(out / "samples.png");
  EXPECT_GE(grid.height, 5 * 96);  // 32 px images shown at 3x
  EXPECT_LT(grid.height, 6 * 96);
  EXPECT_GT(io::read_image(out / "curves.png").width, 0);
  const auto r = io::read_json(out / "results.json");
  ASSERT_TRUE(r.contains("models") && r.contains("settings"));
  for (const char* model : {"base", "sft", "dpo", "kto", "dro"}) {
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
  EXPECT_EQ(r["models"]["dro"]["training"]["random_flip"], false);
  // Each baseline trained with its objective on its data, the same steps and batch.
  for (const char* model : {"sft", "dpo", "kto", "dro"}) {
    const auto& t = r["models"][model]["training"];
    EXPECT_EQ(t["objective"], model);
    EXPECT_EQ(t["num_steps"], 3);
    EXPECT_EQ(t["batch_size"], r["models"]["dro"]["training"]["batch_size"]);
  }
  EXPECT_NE(r["models"]["dpo"]["training"]["train_dataset"].get<std::string>().find("pairs.jsonl"), std::string::npos);
  EXPECT_NE(r["models"]["kto"]["training"]["train_dataset"].get<std::string>().find("labels.jsonl"), std::string::npos);
  // DRO's win rate over every other model, per prompt: (wins + ties / 2) / prompts inside its interval.
  for (const char* other : {"base", "sft", "dpo", "kto"}) {
    const auto& w = r["models"]["dro"]["win_rates"][other];
    const double rate = w["rate"].get<double>();
    EXPECT_DOUBLE_EQ(rate, (w["wins"].get<double>() + 0.5 * w["ties"].get<double>()) / 3) << other;
    EXPECT_EQ(w["wins"].get<int64_t>() + w["losses"].get<int64_t>() + w["ties"].get<int64_t>(), 3) << other;
    EXPECT_LE(w["ci_low"].get<double>(), rate) << other;
    EXPECT_GE(w["ci_high"].get<double>(), rate) << other;
  }
  // The same as the per-prompt means in results.json say.
  int wins = 0;
  for (const auto& row : r["per_prompt"]) wins += row["dro_preference"].get<double>() > row["sft_preference"].get<double>();
  EXPECT_EQ(r["models"]["dro"]["win_rates"]["sft"]["wins"].get<int>(), wins);
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

// The SFT-vs-DRO ablation over expert-set sizes, with experts drawn from the kept images alone.
TEST(CliDemo, AblationAndKeepOnlyExperts) {
  test::TempDir tmp;
  write_tiny_base(tmp / "model");
  const fs::path out = tmp / "report";
  auto [rc, log] = run(kDro + " demo --quick --quiet --model " + (tmp / "model").string() + " --out " +
                       out.string() + " --steps 2 --eval-prompts 2 --eval-seeds 2 --eval-steps 2 --models dro " +
                       "--models sft,dro --ablation 40,500,10 --expert-ranking keep-only");
  ASSERT_EQ(rc, 0) << log;
  const auto r = io::read_json(out / "results.json");
  EXPECT_TRUE(r["models"].contains("base") && r["models"].contains("dro"));
  EXPECT_TRUE(r["models"].contains("sft"));
  EXPECT_FALSE(r["models"].contains("dpo"));
  EXPECT_EQ(r["settings"]["world"]["expert_ranking"], "keep-only");
  ASSERT_EQ(r["ablation"].size(), 3u);
  EXPECT_EQ(r["ablation"][0]["k"], 10);  // sorted
  EXPECT_EQ(r["ablation"][1]["k"], 40);
  // K = the expert set's size is the main run's SFT and DRO.
  EXPECT_EQ(r["ablation"][2]["k"], 500);
  EXPECT_EQ(r["ablation"][2]["from_main_run"], true);
  EXPECT_EQ(r["ablation"][2]["dro"]["preference"], r["models"]["dro"]["preference"]);
  EXPECT_EQ(r["ablation"][2]["sft"]["preference"], r["models"]["sft"]["preference"]);
  EXPECT_FALSE(fs::exists(out / "ablation/k500"));
  for (const auto& e : r["ablation"]) {
    EXPECT_EQ(e["experts"], e["k"]);
    expect_interval(e["sft"], "preference");
    expect_interval(e["dro"], "preference");
    EXPECT_TRUE(e["dro_win_rate_vs_sft"].contains("rate"));
  }
  EXPECT_GT(io::read_image(out / "ablation.png").width, 0);
  EXPECT_NE(io::read_file(out / "summary.md").find("## Ablation"), std::string::npos);
  // world.json records how the experts were chosen.
  EXPECT_EQ(io::read_json(out / "world/world.json")["config"]["expert_ranking"], "keep-only");
}

TEST(CliDemo, MissingModelIsAClearError) {
  test::TempDir tmp;
  auto [rc, log] = run(kDro + " demo --quick --model " + (tmp / "nope").string() + " --out " + (tmp / "r").string());
  EXPECT_EQ(rc, 2) << log;
  EXPECT_NE(log.find("base model not found"), std::string::npos) << log;
}

}  // namespace
}  // namespace dro
