#include "dro/world/evaluation.h"

#include <algorithm>
#include <cmath>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/world/measures.h"
#include "dro/world/preference.h"

namespace dro::world {
namespace fs = std::filesystem;

namespace {
std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}
}  // namespace

std::vector<PromptImages> read_image_folder(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw UsageError(cat("[world] ", dir.string(), " is not a folder"));
  std::vector<fs::path> subs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "caption.txt")) subs.push_back(e.path());
  std::sort(subs.begin(), subs.end());
  std::vector<PromptImages> out;
  for (const auto& s : subs) {
    PromptImages p;
    p.id = s.filename().string();
    p.prompt = Prompt::parse(trim(io::read_file(s / "caption.txt")));
    std::vector<fs::path> pngs;
    for (const auto& e : fs::directory_iterator(s))
      if (e.path().extension() == ".png") pngs.push_back(e.path());
    std::sort(pngs.begin(), pngs.end());
    for (const auto& f : pngs) {
      p.names.push_back(f.stem().string());
      p.images.push_back(io::read_image(f, 3));
    }
    if (!p.images.empty()) out.push_back(std::move(p));
  }
  if (out.empty())
    throw UsageError(cat("[world] ", dir.string(), " holds no <idx>/caption.txt + <seed>.png folders ",
                         "(the layout dro sample writes)"));
  return out;
}

PromptScore score_prompt(const PromptImages& p) {
  PromptScore s;
  s.id = p.id;
  s.prompt = p.prompt;
  std::vector<Analysis> analyses;
  for (const auto& img : p.images) {
    const Analysis a = analyse(img);
    const PreferenceTerms t = preference_terms(a, p.prompt);
    const Fidelity& f = t.shown;  // all false when no object was found, as fidelity() gives
    s.preference.push_back(t.score);
    s.fidelity.push_back(f.score());
    const std::array<bool, 5> shown = {f.colour, f.shape, f.size, f.position, f.background};
    const std::array<double, 5> terms = {t.size, t.saturation, t.centring, t.outline, t.quality};
    for (size_t k = 0; k < shown.size(); ++k) {
      s.attribute_rate[k] += shown[k] ? 1.0 : 0.0;
      s.quality_terms[k] += terms[k];
    }
    if (a.found) analyses.push_back(a);
  }
  const double n = static_cast<double>(p.images.size());
  for (size_t k = 0; k < s.attribute_rate.size() && n > 0; ++k) {
    s.attribute_rate[k] /= n;
    s.quality_terms[k] /= n;
  }
  for (double v : s.preference) s.mean_preference += v / n;
  for (double v : s.fidelity) s.mean_fidelity += v / n;
  s.pixel_diversity = pixel_diversity(p.images);
  s.feature_diversity = feature_diversity(analyses);
  return s;
}

std::vector<PromptScore> score_prompts(const std::vector<PromptImages>& prompts) {
  std::vector<PromptScore> out;
  for (const auto& p : prompts) out.push_back(score_prompt(p));
  return out;
}

io::OrderedJson Interval::to_json() const {
  io::OrderedJson j;
  j["mean"] = mean;
  j["ci_low"] = ci_low;
  j["ci_high"] = ci_high;
  return j;
}

Interval mean_interval(const std::vector<double>& v) {
  Interval r;
  if (v.empty()) return r;
  const double n = static_cast<double>(v.size());
  for (double x : v) r.mean += x / n;
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  const double se = v.size() > 1 ? std::sqrt(ss / (n - 1) / n) : 0.0;
  r.ci_low = r.mean - 1.96 * se;
  r.ci_high = r.mean + 1.96 * se;
  return r;
}

io::OrderedJson ModelSummary::to_json() const {
  io::OrderedJson j;
  j["prompts"] = prompts;
  j["images"] = images;
  j["preference"] = preference.to_json();
  j["fidelity"] = fidelity.to_json();
  j["diversity"] = diversity.to_json();
  j["feature_diversity"] = feature_diversity.to_json();
  for (size_t k = 0; k < attribute_rate.size(); ++k) j["attribute_rate"][kAttributeNames[k]] = attribute_rate[k];
  for (size_t k = 0; k < quality_terms.size(); ++k) j["quality_terms"][kQualityTermNames[k]] = quality_terms[k];
  j["win_rate_vs_base"] = win_rate_vs_base < 0 ? io::OrderedJson(nullptr) : io::OrderedJson(win_rate_vs_base);
  if (has_base) {
    j["preference_gain_vs_base"] = preference_gain_vs_base.to_json();
    j["fidelity_change_vs_base"] = fidelity_change_vs_base.to_json();
  }
  return j;
}

ModelSummary summarise(const std::vector<PromptScore>& scores, const std::vector<PromptScore>* base) {
  ModelSummary m;
  m.prompts = scores.size();
  std::vector<double> pref, fid, div, fdiv;
  for (const auto& s : scores) {
    m.images += s.preference.size();
    pref.push_back(s.mean_preference);
    fid.push_back(s.mean_fidelity);
    div.push_back(s.pixel_diversity);
    fdiv.push_back(s.feature_diversity);
    for (size_t k = 0; k < m.attribute_rate.size(); ++k) {
      m.attribute_rate[k] += s.attribute_rate[k] / static_cast<double>(scores.size());
      m.quality_terms[k] += s.quality_terms[k] / static_cast<double>(scores.size());
    }
  }
  m.preference = mean_interval(pref);
  m.fidelity = mean_interval(fid);
  m.diversity = mean_interval(div);
  m.feature_diversity = mean_interval(fdiv);
  if (base) {
    if (base->size() != scores.size())
      throw UsageError(cat("[world] win rate: ", scores.size(), " prompts against ", base->size(), " for the base"));
    double wins = 0;
    std::vector<double> dpref, dfid;
    for (size_t i = 0; i < scores.size(); ++i) {
      dpref.push_back(scores[i].mean_preference - (*base)[i].mean_preference);
      dfid.push_back(scores[i].mean_fidelity - (*base)[i].mean_fidelity);
      if ((*base)[i].prompt != scores[i].prompt)
        throw UsageError(cat("[world] win rate: prompt ", i, " differs from the base's"));
      const double a = scores[i].mean_preference, b = (*base)[i].mean_preference;
      wins += a > b ? 1.0 : (a == b ? 0.5 : 0.0);
    }
    m.win_rate_vs_base = scores.empty() ? 0.0 : wins / static_cast<double>(scores.size());
    m.has_base = true;
    m.preference_gain_vs_base = mean_interval(dpref);
    m.fidelity_change_vs_base = mean_interval(dfid);
  }
  return m;
}

}  // namespace dro::world
