#include "dro/eval/protocol.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "dro/core/error.h"
#include "dro/core/rng.h"

namespace dro::eval {
namespace {

// Linear-interpolated quantile q of sorted values (numpy's default method).
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return NAN;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

// Percentile interval of `stat` over `o.bootstrap` resamples (with replacement) of n units.
template <typename Stat>
std::pair<double, double> bootstrap(size_t n, const ProtocolOptions& o, const std::string& stream, Stat&& stat) {
  if (n == 0 || o.bootstrap <= 0) return {NAN, NAN};
  std::mt19937_64 gen(derive_seed(o.seed, stream));
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  std::vector<size_t> idx(n);
  std::vector<double> stats;
  stats.reserve(static_cast<size_t>(o.bootstrap));
  for (int64_t b = 0; b < o.bootstrap; ++b) {
    for (auto& i : idx) i = pick(gen);
    stats.push_back(stat(idx));
  }
  std::sort(stats.begin(), stats.end());
  const double alpha = (1 - o.confidence) / 2;
  return {quantile(stats, alpha), quantile(stats, 1 - alpha)};
}

// The median image by the selecting metric: the lower median for an even count, ties broken by
// seed order (the images are sorted by seed), so the choice is deterministic.
size_t median_index(const MethodScores& m, const PromptScores& p, const std::string& select_by) {
  for (const auto& im : p.images)
    if (!im.metrics.count(select_by))
      throw UsageError(cat("[eval] ", m.name, ": ", im.image, " has no '", select_by,
                           "' score to select the median image by (--select-by)"));
  std::vector<size_t> order(p.images.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return p.images[a].metrics.at(select_by) < p.images[b].metrics.at(select_by);
  });
  return order[(order.size() - 1) / 2];
}

}  // namespace

Selection parse_selection(const std::string& s) {
  if (s == "median") return Selection::kMedian;
  if (s == "mean") return Selection::kMean;
  if (s == "all") return Selection::kAll;
  throw UsageError(cat("[eval] --select '", s, "' (median, mean, all)"));
}

void check_comparable(const std::vector<MethodScores>& methods, int64_t images_per_prompt) {
  if (methods.empty()) throw UsageError("[eval] no methods");
  const MethodScores& ref = methods.front();
  for (const auto& m : methods) {
    if (m.prompts.size() != ref.prompts.size())
      throw UsageError(cat("[eval] not comparable: ", m.name, " (", m.dir, ") has ", m.prompts.size(), " prompts, ",
                           ref.name, " (", ref.dir, ") has ", ref.prompts.size()));
    for (size_t p = 0; p < m.prompts.size(); ++p) {
      const auto &a = m.prompts[p], &b = ref.prompts[p];
      if (a.id != b.id)
        throw UsageError(cat("[eval] not comparable: prompt folder ", p, " is '", a.id, "' in ", m.name, " and '",
                             b.id, "' in ", ref.name));
      if (a.caption != b.caption)
        throw UsageError(cat("[eval] not comparable: prompt '", a.id, "' reads \"", a.caption, "\" in ", m.name,
                             " and \"", b.caption, "\" in ", ref.name));
      if (images_per_prompt > 0 && static_cast<int64_t>(a.images.size()) != images_per_prompt)
        throw UsageError(cat("[eval] ", m.name, ": prompt '", a.id, "' has ", a.images.size(),
                             " images, --images-per-prompt is ", images_per_prompt));
      if (a.images.size() != b.images.size())
        throw UsageError(cat("[eval] not comparable: prompt '", a.id, "' has ", a.images.size(), " images in ",
                             m.name, " and ", b.images.size(), " in ", ref.name));
      for (size_t i = 0; i < a.images.size(); ++i)
        if (a.images[i].seed != b.images[i].seed)
          throw UsageError(cat("[eval] not comparable: prompt '", a.id, "' image ", i, " has seed ", a.images[i].seed,
                               " in ", m.name, " and ", b.images[i].seed, " in ", ref.name));
    }
  }
}

std::vector<std::map<std::string, double>> representatives(const MethodScores& m, const ProtocolOptions& o) {
  std::vector<std::map<std::string, double>> units;
  for (const auto& p : m.prompts) {
    if (p.images.empty()) throw UsageError(cat("[eval] ", m.name, ": prompt '", p.id, "' has no images"));
    if (o.selection == Selection::kAll) {
      for (const auto& im : p.images) units.push_back(im.metrics);
      continue;
    }
    if (o.selection == Selection::kMean) {
      std::map<std::string, double> mean;
      for (const auto& im : p.images)
        for (const auto& [k, v] : im.metrics) mean[k] += v / static_cast<double>(p.images.size());
      units.push_back(mean);
      continue;
    }
    units.push_back(p.images[median_index(m, p, o.select_by)].metrics);
  }
  return units;
}

std::vector<std::string> representative_images(const MethodScores& m, const ProtocolOptions& o) {
  std::vector<std::string> out;
  for (const auto& p : m.prompts) out.push_back(p.images.at(median_index(m, p, o.select_by)).image);
  return out;
}

MeanStd mean_std(const std::vector<double>& v, const ProtocolOptions& o) {
  MeanStd r;
  r.n = static_cast<int64_t>(v.size());
  if (v.empty()) return r;
  auto mean_of = [&](const std::vector<size_t>& idx) {
    double s = 0;
    for (size_t i : idx) s += v[i];
    return s / static_cast<double>(idx.size());
  };
  r.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double sq = 0;
  for (double x : v) sq += (x - r.mean) * (x - r.mean);
  r.std = std::sqrt(sq / static_cast<double>(v.size()));
  std::tie(r.ci_low, r.ci_high) = bootstrap(v.size(), o, "mean", mean_of);
  return r;
}

double sign_test_p_value(int64_t wins, int64_t losses) {
  const int64_t n = wins + losses;
  if (n == 0) return 1.0;
  const int64_t k = std::min(wins, losses);
  // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (n reaches thousands).
  double tail = 0;
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) + log_half_n);
  return std::min(1.0, 2 * tail);
}

WinRate win_rate(const std::vector<double>& a, const std::vector<double>& b, const ProtocolOptions& o) {
  if (a.size() != b.size()) throw std::invalid_argument("win_rate: unpaired units");
  WinRate r;
  r.units = static_cast<int64_t>(a.size());
  std::vector<double> outcome(a.size());  // 1 win, 0.5 tie, 0 loss
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] > b[i]) {
      ++r.wins;
      outcome[i] = 1;
    } else if (a[i] < b[i]) {
      ++r.losses;
      outcome[i] = 0;
    } else {
      ++r.ties;
      outcome[i] = 0.5;
    }
  }
  if (a.empty()) return r;
  r.rate = (static_cast<double>(r.wins) + 0.5 * static_cast<double>(r.ties)) / static_cast<double>(r.units);
  std::tie(r.ci_low, r.ci_high) = bootstrap(a.size(), o, "win-rate", [&](const std::vector<size_t>& idx) {
    double s = 0;
    for (size_t i : idx) s += outcome[i];
    return s / static_cast<double>(idx.size());
  });
  r.p_value = sign_test_p_value(r.wins, r.losses);
  return r;
}

Evaluation evaluate(const std::vector<MethodScores>& methods, const ProtocolOptions& o,
                    const std::vector<std::string>& metric_order) {
  Evaluation e;
  std::map<std::string, std::vector<std::map<std::string, double>>> units;
  for (const auto& m : methods) {
    e.methods.push_back(m.name);
    units[m.name] = representatives(m, o);
  }
  // Metrics every unit of every method has, in the order asked for, else by name.
  std::vector<std::string> order = metric_order;
  std::set<std::string> seen(order.begin(), order.end());
  for (const auto& m : methods)
    for (const auto& u : units[m.name])
      for (const auto& [k, v] : u)
        if (seen.insert(k).second) order.push_back(k);
  for (const auto& k : order) {
    bool everywhere = true;
    for (const auto& [name, us] : units)
      for (const auto& u : us) everywhere = everywhere && u.count(k);
    if (everywhere) e.metrics.push_back(k);
  }
  auto column = [&](const std::string& method, const std::string& metric) {
    std::vector<double> v;
    for (const auto& u : units[method]) v.push_back(u.at(metric));
    return v;
  };
  e.units = methods.empty() ? 0 : static_cast<int64_t>(units[methods.front().name].size());
  for (const auto& m : e.methods)
    for (const auto& k : e.metrics) e.means[m][k] = mean_std(column(m, k), o);
  for (const auto& a : e.methods)
    for (const auto& b : e.methods)
      if (a != b)
        for (const auto& k : e.metrics) e.win_rates[a][b][k] = win_rate(column(a, k), column(b, k), o);
  return e;
}

}  // namespace dro::eval
