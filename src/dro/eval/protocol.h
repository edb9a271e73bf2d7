// The paper's evaluation protocol on per-image scores: one representative per prompt and method
// (the image with the median score of the selecting metric among the prompt's N images, or the
// mean over them, or every image), win rates of each method over another per metric (ties count
// half), means and standard deviations, 95% intervals by bootstrap over prompts and a paired sign
// test. Pure computation: reading the scores and writing reports live in eval_report.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dro::eval {

struct ImageScore {
  std::string image;  // path relative to the method's folder, e.g. "012/7.png"
  std::string seed;   // the file stem (the seed dro sample and inference.py name images by)
  std::map<std::string, double> metrics;
};

struct PromptScores {
  std::string id;       // the prompt folder name
  std::string caption;  // caption.txt
  std::vector<ImageScore> images;  // sorted by seed
};

struct MethodScores {
  std::string name, dir;
  std::vector<PromptScores> prompts;  // sorted by id
};

enum class Selection { kMedian, kMean, kAll };
Selection parse_selection(const std::string& s);  // "median" | "mean" | "all"

struct ProtocolOptions {
  Selection selection = Selection::kMedian;
  std::string select_by = "pickscore";  // the metric choosing the median image
  int64_t bootstrap = 1000;             // resamples of the prompts for the intervals
  uint64_t seed = 0;                    // of the bootstrap
  double confidence = 0.95;
};

// UsageError naming the first difference when the methods are not comparable: other prompt ids or
// captions, other seeds, or a prompt with other than `images_per_prompt` images (0: any number,
// the same for every method and prompt).
void check_comparable(const std::vector<MethodScores>& methods, int64_t images_per_prompt);

// The method's units of comparison, in prompt order: per prompt its representative (median /
// mean), or per image (all). units[k][metric].
std::vector<std::map<std::string, double>> representatives(const MethodScores& m, const ProtocolOptions& o);

// The image of each prompt that represents the method in pictures: its median image by select_by
// (whatever the selection used for the numbers).
std::vector<std::string> representative_images(const MethodScores& m, const ProtocolOptions& o);

struct MeanStd {
  double mean = 0, std = 0;  // std over the units, population (ddof = 0, numpy's default)
  double ci_low = 0, ci_high = 0;  // bootstrap percentile interval of the mean
  int64_t n = 0;
};

struct WinRate {
  double rate = 0;  // (wins + ties / 2) / units
  double ci_low = 0, ci_high = 0;
  int64_t wins = 0, losses = 0, ties = 0, units = 0;
  double p_value = 1;  // two-sided exact sign test, ties left out
};

MeanStd mean_std(const std::vector<double>& values, const ProtocolOptions& o);
// A's units against B's, paired by position.
WinRate win_rate(const std::vector<double>& a, const std::vector<double>& b, const ProtocolOptions& o);
// Two-sided exact binomial test of `wins` against `losses` at p = 1/2.
double sign_test_p_value(int64_t wins, int64_t losses);

// Everything for a set of methods: means[method][metric], win_rates[a][b][metric] for every
// ordered pair of different methods, over the metrics every method has.
struct Evaluation {
  std::vector<std::string> methods, metrics;
  std::map<std::string, std::map<std::string, MeanStd>> means;
  std::map<std::string, std::map<std::string, std::map<std::string, WinRate>>> win_rates;
  int64_t units = 0;
};
// `metric_order`: the metrics' order in the result (default: sorted by name).
Evaluation evaluate(const std::vector<MethodScores>& methods, const ProtocolOptions& o,
                    const std::vector<std::string>& metric_order = {});

}  // namespace dro::eval
