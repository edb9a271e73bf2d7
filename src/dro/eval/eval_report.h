// `dro eval`'s inputs and outputs: method folders in the official layout (one test set, or one per
// sub-folder such as HPDv2's four styles), their `dro score` rows turned into MethodScores, and the
// report: results.json, report.md (the paper's table shapes), means.csv / win_rates.csv, a
// win-rate chart and score distributions (SVG), and a grid of representative images (PNG).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "dro/eval/protocol.h"
#include "dro/io/json.h"

namespace dro::eval {

// The test sets of a method folder: {""} when DIR itself holds prompt folders (DIR/<id>/caption.txt),
// else every sub-folder that does, sorted (e.g. anime, concept-art, paintings, photo). UsageError
// naming the folder when there is neither.
std::vector<std::string> test_sets(const std::filesystem::path& dir);
// The folder of test set `set` in `dir`.
std::string test_set_dir(const std::string& dir, const std::string& set);

std::vector<io::OrderedJson> read_jsonl(const std::filesystem::path& file);
// The rows of `dir` (rows' "dir" equal to it) as MethodScores with the given metric keys.
MethodScores method_scores(const std::string& name, const std::string& dir, const std::vector<io::OrderedJson>& rows,
                           const std::vector<std::string>& keys);
// Several test sets as one: prompts of every set, ids prefixed by "<set>/".
MethodScores pooled(const std::string& name, const std::vector<std::pair<std::string, MethodScores>>& sets);

struct ReportInput {
  std::vector<std::string> methods;    // in the order given
  std::vector<std::string> baselines;  // rows of the win-rate tables; empty: every other method
  std::vector<std::string> sets;       // test-set names ("" for a single one)
  // evaluations["all"] pools every set; with several sets, evaluations[set] for each too.
  std::map<std::string, Evaluation> evaluations;
  std::map<std::string, std::vector<MethodScores>> scores;  // per evaluation key
  ProtocolOptions protocol;
  int64_t grid_prompts = 4;
};

// Writes everything into `out` (created); returns the files written.
std::vector<std::filesystem::path> write_report(const ReportInput& in, const std::filesystem::path& out);
// results.json as an object (for tests and the demo).
io::OrderedJson results_json(const ReportInput& in);

}  // namespace dro::eval
