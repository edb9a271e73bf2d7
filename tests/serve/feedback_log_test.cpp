// The feedback log and its export, and the study's results, without HTTP: records survive as
// written, a torn last line is skipped and never glued to the next record, and the export's three
// layouts read back through the trainer's own readers.
#include <fstream>

#include "dro/core/error.h"
#include "dro/data/expert_dataset.h"
#include "dro/data/preference_data.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/serve/feedback_log.h"
#include "dro/serve/study.h"
#include "test_util.h"

namespace dro::serve {
namespace {
namespace fs = std::filesystem;

TEST(ServeIds, AreRandomHexAndNothingElsePasses) {
  const std::string a = new_id(), b = new_id();
  EXPECT_TRUE(is_id(a));
  EXPECT_NE(a, b);
  for (const char* bad : {"", "../../etc/passwd", "0123456789abcdef0123456789abcdeF",
                          "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0",
                          "0123456789abcdef/123456789abcdef"})
    EXPECT_FALSE(is_id(bad)) << bad;
}

TEST(ServeLog, AppendsAndSkipsATornLastLine) {
  test::TempDir tmp;
  const fs::path f = tmp / "log.jsonl";
  {
    AppendLog log(f);
    log.append({{"n", 1}});
    log.append({{"n", 2}});
  }
  // A crash in the middle of a write leaves a line without its newline.
  { std::ofstream(f, std::ios::app) << "{\"n\": 3, \"trunc"; }
  {
    AppendLog log(f);  // ends the torn line, so the next record is a line of its own
    log.append({{"n", 4}});
  }
  const auto c = read_log(f);
  ASSERT_EQ(c.records.size(), 3u);
  EXPECT_EQ(c.records[0]["n"], 1);
  EXPECT_EQ(c.records[1]["n"], 2);
  EXPECT_EQ(c.records[2]["n"], 4);
  EXPECT_EQ(c.bad_lines, 1);
  EXPECT_TRUE(read_log(tmp / "missing.jsonl").records.empty());
}

TEST(ServeLog, EventsRoundTripAndAreChecked) {
  FeedbackEvent e;
  e.event = "keep";
  e.session = "s1";
  e.prompt = "a red circle";
  e.shown = {{new_id(), "base", 3}, {new_id(), "dro", 3}};
  e.kept = e.shown[1].id;
  const auto back = FeedbackEvent::from_json(e.to_json(), "test");
  EXPECT_EQ(back.kept, e.kept);
  ASSERT_EQ(back.shown.size(), 2u);
  EXPECT_EQ(back.shown[1].model, "dro");
  auto j = e.to_json();
  j["kept"] = new_id();
  EXPECT_THROW(FeedbackEvent::from_json(j, "test"), UsageError);  // not among those shown
  j = e.to_json();
  j["shown"][0]["id"] = "../x";
  EXPECT_THROW(FeedbackEvent::from_json(j, "test"), UsageError);
  j = e.to_json();
  j["event"] = "like";
  EXPECT_THROW(FeedbackEvent::from_json(j, "test"), UsageError);
}

std::string png_of(int grey) {
  io::Image im(8, 8, 3);
  std::fill(im.pixels.begin(), im.pixels.end(), static_cast<uint8_t>(grey));
  return io::encode_png(im);
}

TEST(ServeExport, WritesTheThreeLayoutsTheTrainerReads) {
  test::TempDir tmp;
  FeedbackStore store(tmp / "fb");
  // Round 1: 3 shown, the second kept. Round 2: 2 shown, none kept. Round 3: one downloaded.
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(new_id());
    store.save_image(ids.back(), png_of(40 * i));
  }
  FeedbackEvent keep{"keep", "s", "a red circle", {{ids[0], "base", 0}, {ids[1], "dro", 0}, {ids[2], "base", 1}},
                     ids[1], "", {}, 0};
  FeedbackEvent skip{"skip", "s", "a blue square", {{ids[3], "base", 5}, {ids[4], "dro", 5}}, "", "", {}, 0};
  FeedbackEvent dl{"download", "t", "a green star", {{ids[5], "base", 9}}, "", ids[5], {}, 0};
  store.record(keep);
  store.record(skip);
  store.record(dl);
  // An event naming an image that was never saved is refused before anything is written.
  FeedbackEvent orphan = skip;
  orphan.shown = {{new_id(), "base", 0}};
  EXPECT_THROW(store.record(orphan), IoError);

  const fs::path out = tmp / "export";
  const ExportSummary s = export_feedback(tmp / "fb", out);
  EXPECT_EQ(s.events, 3);
  EXPECT_EQ(s.pairs, 2);  // kept vs the two others
  EXPECT_EQ(s.desirable, 2);
  EXPECT_EQ(s.undesirable, 4);
  EXPECT_EQ(s.expert, 2);

  const auto pairs = data::read_pairs(out / "pairs.jsonl");
  ASSERT_EQ(pairs.pairs.size(), 2u);
  EXPECT_EQ(pairs.pairs[0].caption, "a red circle");
  EXPECT_EQ(io::read_file(pairs.pairs[0].chosen), png_of(40));
  const auto labels = data::read_labels(out / "labels.jsonl");
  ASSERT_EQ(labels.images.size(), 6u);
  EXPECT_EQ(labels.desirable(), 2);
  const auto expert = data::ExpertDataset::scan(out / "expert");
  ASSERT_EQ(expert.size(), 2);
  EXPECT_EQ(expert.prompt(0), "a red circle");
  EXPECT_EQ(expert.prompt(1), "a green star");
  EXPECT_TRUE(fs::exists(out / "summary.json"));
  // The feedback folder is read, never changed; an existing export is not overwritten by default.
  EXPECT_THROW(export_feedback(tmp / "fb", out), UsageError);
  EXPECT_NO_THROW(export_feedback(tmp / "fb", out, true));
  EXPECT_THROW(export_feedback(tmp / "nothing", tmp / "e2"), UsageError);
}

TEST(ServeStudy, VotesAreDurableAndResultsCountThem) {
  test::TempDir tmp;
  const fs::path f = tmp / "study.jsonl";
  {
    StudyLog study(f);
    // 8 trials: dro wins 6 (left or right), base 2.
    for (int i = 0; i < 8; ++i) {
      Trial t{new_id(), i < 4 ? "p1" : "p2", i % 2 ? "dro" : "base", i % 2 ? "base" : "dro", new_id(), new_id(),
              static_cast<uint64_t>(i)};
      study.open_trial(t);
      const bool dro_wins = i < 6;
      const bool dro_left = t.left == "dro";
      study.vote(t.id, dro_wins == dro_left ? "left" : "right", "s");
    }
    EXPECT_THROW(study.vote(new_id(), "left", "s"), UsageError);  // unknown trial
    Trial t{new_id(), "p", "a", "b", new_id(), new_id(), 0};
    study.open_trial(t);
    EXPECT_THROW(study.vote(t.id, "up", "s"), UsageError);
    study.vote(t.id, "left", "s");
    EXPECT_THROW(study.vote(t.id, "left", "s"), UsageError);  // one vote per trial
  }
  StudyLog again(f);  // votes are read back at start
  auto votes = again.votes();
  ASSERT_EQ(votes.size(), 9u);
  const auto r = study_results(votes);
  EXPECT_EQ(r["votes"], 9);
  ASSERT_EQ(r["pairs"].size(), 2u);
  const auto& p = r["pairs"][1];  // (base, dro) sorts after (a, b)
  EXPECT_EQ(p["a"], "base");
  EXPECT_EQ(p["b"], "dro");
  EXPECT_EQ(p["votes"], 8);
  EXPECT_EQ(p["b_wins"], 6);
  EXPECT_DOUBLE_EQ(p["win_rate"].get<double>(), 0.25);
  EXPECT_LE(p["ci_low"].get<double>(), 0.25);
  EXPECT_GE(p["ci_high"].get<double>(), 0.25);
  EXPECT_NEAR(p["p_value"].get<double>(), 0.2890625, 1e-9);  // two-sided sign test, 2 of 8
  ASSERT_EQ(p["per_prompt"].size(), 2u);
  EXPECT_EQ(p["per_prompt"][0]["prompt"], "p1");
  EXPECT_EQ(p["per_prompt"][0]["votes"], 4);
  EXPECT_EQ(p["per_prompt"][0]["a_wins"], 0);
  EXPECT_EQ(p["per_prompt"][1]["a_wins"], 2);
}

}  // namespace
}  // namespace dro::serve
