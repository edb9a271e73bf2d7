// dro eval: the paper's evaluation protocol over several generated test sets (same prompts and
// seeds): scores through dro score's scorers (reusing an existing scores JSONL), median-image
// representatives, win rates with intervals and sign tests, means, and a report folder.
#include <algorithm>
#include <iostream>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/dist/process_group.h"
#include "dro/eval/eval_report.h"
#include "dro/eval/score_run.h"
#include "dro/io/atomic_file.h"
#include "scorer_flags.h"

namespace dro::app {

Action register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Compare generated test sets as the paper does: score every image (dro score's scorers; rows "
      "already in --scores are reused), take per prompt and method the image with the median "
      "--select-by score, and report win rates (ties count half) with bootstrap intervals and sign "
      "tests, and means ± std, in OUT/results.json, report.md, CSV, SVG charts and an image grid. "
      "A method folder holds prompt folders (DIR/<id>/caption.txt + images) or one sub-folder per "
      "test set (e.g. HPDv2's anime, concept-art, paintings, photo), evaluated each and pooled.");
  struct Opts {
    ScorerFlags scorers;
    std::vector<std::string> methods, baselines;
    std::string out, scores, select = "median", select_by;
    int64_t images_per_prompt = 0, bootstrap = 1000, grid_prompts = 4;
    uint64_t seed = 0;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--method", o->methods, "NAME=DIR: one generated test set; repeatable (at least two)")->required();
  cmd->add_option("--baseline", o->baselines,
                  "a method to compare the others against (the tables' rows); repeatable; default: every "
                  "method against every other");
  cmd->add_option("--out", o->out, "report folder")->required();
  cmd->add_option("--scores", o->scores,
                  "per-image scores JSONL (dro score's format) to reuse and extend (default OUT/scores.jsonl)");
  cmd->add_option("--select", o->select, "unit per prompt: median (the paper's) | mean | all (every image, paired by seed)")
      ->check(CLI::IsMember({"median", "mean", "all"}))
      ->capture_default_str();
  cmd->add_option("--select-by", o->select_by, "score whose median picks the image (default pickscore if scored, "
                  "else the first scorer's key)");
  cmd->add_option("--images-per-prompt", o->images_per_prompt,
                  "images every prompt folder must hold (0: any number, the same everywhere)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--bootstrap", o->bootstrap, "bootstrap resamples of the prompts (0: no intervals)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the bootstrap")->capture_default_str();
  cmd->add_option("--grid-prompts", o->grid_prompts, "prompts in grid.png")->check(CLI::NonNegativeNumber)->capture_default_str();
  add_scorer_flags(cmd, o->scorers);
  cmd->add_flag("--quiet", o->quiet, "no progress display");

  return [o]() {
    eval::ReportInput in;
    std::vector<std::pair<std::string, std::string>> methods;  // name, dir
    for (const auto& spec : o->methods) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
        throw UsageError(cat("[eval] --method '", spec, "': expected NAME=DIR"));
      const std::string name = spec.substr(0, eq);
      for (const auto& [n, d] : methods)
        if (n == name) throw UsageError(cat("[eval] --method ", name, " given twice"));
      methods.emplace_back(name, spec.substr(eq + 1));
      in.methods.push_back(name);
    }
    if (methods.size() < 2) throw UsageError("[eval] give at least two --method NAME=DIR");
    for (const auto& b : o->baselines)
      if (std::find(in.methods.begin(), in.methods.end(), b) == in.methods.end())
        throw UsageError(cat("[eval] --baseline ", b, " is not one of the --method names"));
    if (o->baselines.size() >= methods.size())
      throw UsageError("[eval] every method is a --baseline: nothing to compare against them");
    in.baselines = o->baselines;
    in.sets = eval::test_sets(methods.front().second);
    for (const auto& [name, dir] : methods)
      if (eval::test_sets(dir) != in.sets)
        throw UsageError(cat("[eval] not comparable: ", name, " (", dir, ") holds other test sets than ",
                             methods.front().first, " (", methods.front().second, ")"));

    const auto requests = scorer_requests(o->scorers, "eval");
    eval::ScoreRunOptions run;
    for (const auto& [name, dir] : methods)
      for (const auto& s : in.sets) run.dirs.push_back(eval::test_set_dir(dir, s));
    run.out = o->scores.empty() ? std::filesystem::path(o->out) / "scores.jsonl" : std::filesystem::path(o->scores);
    run.quiet = o->quiet;
    bool main = false;
    const auto scored = run_scorers(o->scorers, requests, run, &main);
    if (!main) return 0;

    in.protocol.selection = eval::parse_selection(o->select);
    const auto& keys = scored.key_order;
    in.protocol.select_by = !o->select_by.empty() ? o->select_by
                            : std::find(keys.begin(), keys.end(), "pickscore") != keys.end() ? std::string("pickscore")
                                                                                               : keys.front();
    if (std::find(keys.begin(), keys.end(), in.protocol.select_by) == keys.end())
      throw UsageError(cat("[eval] --select-by ", in.protocol.select_by, " is not a score of this run (add its scorer flag)"));
    in.protocol.bootstrap = o->bootstrap;
    in.protocol.seed = o->seed;
    in.grid_prompts = o->grid_prompts;
    const auto rows = eval::read_jsonl(run.out);
    std::map<std::string, std::vector<std::pair<std::string, eval::MethodScores>>> per_method;
    for (const auto& s : in.sets) {
      std::vector<eval::MethodScores> ms;
      for (const auto& [name, dir] : methods) {
        ms.push_back(eval::method_scores(name, eval::test_set_dir(dir, s), rows, keys));
        per_method[name].emplace_back(s, ms.back());
      }
      eval::check_comparable(ms, o->images_per_prompt);
      if (in.sets.size() > 1) {
        in.evaluations[s] = eval::evaluate(ms, in.protocol, keys);
        in.scores[s] = ms;
      }
    }
    std::vector<eval::MethodScores> all;
    for (const auto& [name, dir] : methods) all.push_back(eval::pooled(name, per_method[name]));
    in.evaluations["all"] = eval::evaluate(all, in.protocol, keys);
    in.scores["all"] = all;
    const auto files = eval::write_report(in, o->out);
    std::cout << io::read_file(std::filesystem::path(o->out) / "report.md") << "\nwrote";
    for (const auto& f : files) std::cout << " " << f.string();
    std::cout << "\n";
    return 0;
  };
}

}  // namespace dro::app
