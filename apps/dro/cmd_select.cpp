// dro select: the official tools/pickapic.py, top-K expert demonstrations by PickScore or HPSv2 (or
// ImageReward) from folders, manifests, pairs or webdataset shards.
#include <algorithm>
#include <iostream>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/dist/process_group.h"
#include "dro/eval/select.h"
#include "dro/eval/eval_report.h"
#include "scorer_flags.h"

namespace dro::app {

Action register_select(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "select",
      "Pick the top-K expert demonstrations, as the official tools/pickapic.py: score every unique "
      "(image, caption) of the inputs with one scorer (human labels ignored), keep the K best and "
      "write them in the training layout OUT/<i>/<i>.png + caption.txt, folder 0 the best. Inputs: a "
      "folder (DIR/<id>/caption.txt + images), a JSONL/CSV manifest (image, caption[, uid]), a pairs "
      "manifest (caption, image_0, image_1[, image_0_uid, image_1_uid], or chosen/rejected), a "
      "webdataset .tar shard (key.jpg|png + key.txt|json) or a folder of shards. Scores are kept in "
      "--score-out, so an interrupted run or another K rescores nothing.");
  struct Opts {
    ScorerFlags scorers;
    std::vector<std::string> inputs;
    std::string scorer = "pickscore", out, score_out;
    int64_t top_k = 500;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input", o->inputs, "folder, .jsonl/.csv manifest, .tar shard or folder of shards; repeatable")
      ->required();
  cmd->add_option("--scorer", o->scorer,
                  "pickscore | hpsv2 (the official choices for the experts) | imagereward")
      ->check(CLI::IsMember({"pickscore", "hpsv2", "imagereward"}))
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "demonstrations to keep")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--out", o->out, "output folder in the training layout")->required();
  cmd->add_option("--score-out", o->score_out, "every score as JSONL (default OUT/scores.jsonl)");
  add_scorer_flags(cmd, o->scorers);
  cmd->add_flag("--quiet", o->quiet, "no progress display");

  return [o]() {
    if (o->scorer == "pickscore") o->scorers.pickscore = true;
    if (o->scorer == "hpsv2") o->scorers.hpsv2 = true;
    if (o->scorer == "imagereward") o->scorers.imagereward = true;
    if (o->scorers.aestheticv1 || o->scorers.aestheticv2 || o->scorers.clip ||
        int(o->scorers.pickscore) + int(o->scorers.hpsv2) + int(o->scorers.imagereward) > 1)
      throw UsageError(
          "[select] one scorer selects the experts: --scorer pickscore, hpsv2 or imagereward");
    const auto requests = scorer_requests(o->scorers, "select");
    const dist::Env env = dist::Env::from_environment();
    auto listing = eval::list_select_items(o->inputs);
    if (env.rank == 0) {
      for (const auto& w : listing.warnings) std::cerr << "warning: " << w << "\n";
      std::cerr << "[select] " << listing.items.size() << " unique (image, caption) pairs from " << listing.references
                << " references in " << o->inputs.size() << " input(s)\n";
    }
    eval::ScoreRunOptions run;
    run.items = listing.items;
    run.out = o->score_out.empty() ? std::filesystem::path(o->out) / "scores.jsonl" : std::filesystem::path(o->score_out);
    run.quiet = o->quiet;
    bool main = false;
    const auto scored = run_scorers(o->scorers, requests, run, &main);
    if (!main) return 0;
    const std::string key = scored.key_order.front();
    const auto rows = eval::read_jsonl(run.out);
    const auto top = eval::top_k(listing.items, rows, key, o->top_k);
    if (top.empty()) throw Error("[select] no image could be scored");
    eval::write_selected(top, o->out);
    // The distribution of every score and the selected ones.
    std::vector<double> all;
    for (const auto& r : rows)
      if (r.contains(key) && r[key].is_number()) all.push_back(r[key].get<double>());
    std::sort(all.begin(), all.end());
    auto q = [&](double p) { return all[static_cast<size_t>(p * static_cast<double>(all.size() - 1) + 0.5)]; };
    double sum = 0;
    for (const auto& s : top) sum += s.score;
    std::cout << "[select] " << key << " over " << all.size() << " images: min " << all.front() << ", 25% " << q(0.25)
              << ", median " << q(0.5) << ", 75% " << q(0.75) << ", max " << all.back() << "\n"
              << "[select] kept " << top.size() << ": best " << top.front().score << ", K-th " << top.back().score
              << ", mean " << sum / static_cast<double>(top.size()) << "\n"
              << "[select] scored " << scored.scored << " image(s), reused " << scored.reused
              << " score(s) from earlier runs; wrote " << o->out << " (scores in " << run.out.string() << ")\n";
    if (static_cast<int64_t>(top.size()) < o->top_k)
      std::cout << "[select] note: only " << top.size() << " images could be scored, fewer than --top-k " << o->top_k << "\n";
    return 0;
  };
}

}  // namespace dro::app
