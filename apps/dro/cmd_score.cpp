// dro score: the official score.py (PickScore, HPSv2, Aesthetic v1/v2, CLIP score, ImageReward) on
// test sets in the official layout, every image, from local model files.
#include <iostream>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/dist/process_group.h"
#include "dro/eval/score_run.h"
#include "scorer_flags.h"

namespace dro::app {

Action register_score(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Score generated images with the paper's preference scorers (PickScore, HPSv2, Aesthetic "
      "v1/v2, CLIP score, ImageReward), as the official score.py does, from local model files. "
      "Reads "
      "DIR/<prompt>/<image>.png + caption.txt (the layout dro sample writes), scores every image "
      "and writes one JSON object per image to --out, with a mean/std summary beside it.");
  struct Opts {
    ScorerFlags scorers;
    std::vector<std::string> dirs;
    std::string out;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--dir", o->dirs, "test-set folder DIR/<prompt>/{caption.txt, *.png}; repeatable")
      ->required();
  cmd->add_option("--out", o->out,
                  "JSONL of per-image scores (default: DIR/scores.jsonl for one --dir); "
                  "rows already scored with the same weights are kept");
  add_scorer_flags(cmd, o->scorers);
  cmd->add_flag("--quiet", o->quiet, "no progress display");

  return [o]() {
    const auto requests = scorer_requests(o->scorers, "score");
    eval::ScoreRunOptions run;
    run.dirs = o->dirs;
    if (!o->out.empty())
      run.out = o->out;
    else if (o->dirs.size() == 1)
      run.out = std::filesystem::path(o->dirs[0]) / "scores.jsonl";
    else
      throw UsageError("[score] --out is required with several --dir");
    run.quiet = o->quiet;
    bool main = false;
    const auto result = run_scorers(o->scorers, requests, run, &main);
    if (main) {
      std::cout << eval::format_summary(result);
      std::cout << "scored " << result.scored << " value(s), kept " << result.reused
                << " from earlier runs"
                << (result.bad_images ? cat(", skipped ", result.bad_images, " bad image(s)") : "")
                << "\nwrote " << run.out.string() << ", " << result.summary_md.string() << ", "
                << result.summary_json.string() << "\n";
    }
    return 0;
  };
}

}  // namespace dro::app
