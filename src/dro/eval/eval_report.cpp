#include "dro/eval/eval_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"

namespace dro::eval {
namespace fs = std::filesystem;

namespace {

bool holds_prompt_folders(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "caption.txt")) return true;
  return false;
}

std::string fmt(double v, int digits = 4) {
  if (!std::isfinite(v)) return "nan";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string pct(double v) { return fmt(100 * v, 2); }

std::string label(const std::string& set, const std::string& metric) {
  return set.empty() || set == "all" ? metric : set + " " + metric;
}

// The evaluation keys in report order: "all" first, then each set.
std::vector<std::string> keys_of(const ReportInput& in) {
  std::vector<std::string> k{"all"};
  if (in.sets.size() > 1)
    for (const auto& s : in.sets) k.push_back(s);
  return k;
}

std::vector<std::string> candidates(const ReportInput& in) {
  std::vector<std::string> out;
  for (const auto& m : in.methods)
    if (std::find(in.baselines.begin(), in.baselines.end(), m) == in.baselines.end()) out.push_back(m);
  return out;
}

std::vector<std::string> rows_for(const ReportInput& in, const std::string& candidate) {
  std::vector<std::string> out;
  for (const auto& m : in.baselines.empty() ? in.methods : in.baselines)
    if (m != candidate) out.push_back(m);
  return out;
}

io::OrderedJson evaluation_json(const Evaluation& e) {
  io::OrderedJson j;
  j["units"] = e.units;
  j["metrics"] = e.metrics;
  for (const auto& m : e.methods)
    for (const auto& k : e.metrics) {
      const auto& s = e.means.at(m).at(k);
      j["means"][m][k] = {{"mean", s.mean}, {"std", s.std}, {"ci_low", s.ci_low}, {"ci_high", s.ci_high}, {"n", s.n}};
    }
  for (const auto& a : e.methods)
    for (const auto& b : e.methods) {
      if (a == b) continue;
      for (const auto& k : e.metrics) {
        const auto& w = e.win_rates.at(a).at(b).at(k);
        j["win_rates"][a][b][k] = {{"rate", w.rate},     {"ci_low", w.ci_low}, {"ci_high", w.ci_high},
                                   {"wins", w.wins},     {"ties", w.ties},     {"losses", w.losses},
                                   {"prompts", w.units}, {"p_value", w.p_value}};
      }
    }
  return j;
}

std::string markdown(const ReportInput& in) {
  std::ostringstream md;
  const auto keys = keys_of(in);
  const auto& all = in.evaluations.at("all");
  md << "# Evaluation\n\nMethods: ";
  for (size_t i = 0; i < in.methods.size(); ++i) md << (i ? ", " : "") << in.methods[i];
  const char* sel = in.protocol.selection == Selection::kMedian ? "the median image by "
                    : in.protocol.selection == Selection::kMean ? "the mean over the images ("
                                                                  : "every image (paired by seed; ";
  md << ". Unit of comparison per prompt: " << sel
     << (in.protocol.selection == Selection::kMedian ? in.protocol.select_by
                                                      : std::string("not selected by a metric)"))
     << ". " << all.units << " units" << (in.sets.size() > 1 ? cat(" over ", in.sets.size(), " test sets") : "")
     << ". Intervals: " << fmt(100 * in.protocol.confidence, 0) << "% bootstrap over prompts (" << in.protocol.bootstrap
     << " resamples); p: two-sided sign test, ties left out.\n";
  for (const auto& c : candidates(in)) {
    md << "\n## Win rate of " << c << " (%)\n\n| against |";
    for (const auto& k : keys)
      for (const auto& m : in.evaluations.at(k).metrics) md << " " << label(k, m) << " |";
    md << "\n|---|";
    for (const auto& k : keys)
      for (size_t i = 0; i < in.evaluations.at(k).metrics.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& b : rows_for(in, c)) {
      md << "| " << b << " |";
      for (const auto& k : keys)
        for (const auto& m : in.evaluations.at(k).metrics) {
          const auto& w = in.evaluations.at(k).win_rates.at(c).at(b).at(m);
          md << " " << pct(w.rate) << " [" << pct(w.ci_low) << ", " << pct(w.ci_high) << "]"
             << (w.ties ? cat(" (", w.ties, " ties)") : "") << (w.p_value < 0.05 ? " *" : "") << " |";
        }
      md << "\n";
    }
  }
  md << "\n## Scores (mean ± std of the units)\n\n| method |";
  for (const auto& k : keys)
    for (const auto& m : in.evaluations.at(k).metrics) md << " " << label(k, m) << " |";
  md << "\n|---|";
  for (const auto& k : keys)
    for (size_t i = 0; i < in.evaluations.at(k).metrics.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& m : in.methods) {
    md << "| " << m << " |";
    for (const auto& k : keys)
      for (const auto& metric : in.evaluations.at(k).metrics) {
        const auto& s = in.evaluations.at(k).means.at(m).at(metric);
        md << " " << fmt(s.mean) << " ± " << fmt(s.std) << " |";
      }
    md << "\n";
  }
  md << "\n`*`: p < 0.05. Files: results.json, means.csv, win_rates.csv, win_rates.svg, distributions.svg, grid.png.\n";
  return md.str();
}

std::string csv_means(const ReportInput& in) {
  std::ostringstream o;
  o << "test_set,method,metric,mean,std,ci_low,ci_high,n\n";
  for (const auto& k : keys_of(in)) {
    const auto& e = in.evaluations.at(k);
    for (const auto& m : e.methods)
      for (const auto& metric : e.metrics) {
        const auto& s = e.means.at(m).at(metric);
        o << k << "," << m << "," << metric << "," << fmt(s.mean, 6) << "," << fmt(s.std, 6) << "," << fmt(s.ci_low, 6)
          << "," << fmt(s.ci_high, 6) << "," << s.n << "\n";
      }
  }
  return o.str();
}

std::string csv_win_rates(const ReportInput& in) {
  std::ostringstream o;
  o << "test_set,method,other,metric,rate,ci_low,ci_high,wins,ties,losses,prompts,p_value\n";
  for (const auto& k : keys_of(in)) {
    const auto& e = in.evaluations.at(k);
    for (const auto& [a, others] : e.win_rates)
      for (const auto& [b, metrics] : others)
        for (const auto& [metric, w] : metrics)
          o << k << "," << a << "," << b << "," << metric << "," << fmt(w.rate, 6) << "," << fmt(w.ci_low, 6) << ","
            << fmt(w.ci_high, 6) << "," << w.wins << "," << w.ties << "," << w.losses << "," << w.units << ","
            << w.p_value << "\n";
  }
  return o.str();
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else if (ch == '"') o += "&quot;";
    else o += ch;
  }
  return o;
}

// Horizontal bars: one per (candidate, baseline, metric) of the pooled evaluation, with the
// interval as a whisker and the 50% line.
std::string svg_win_rates(const ReportInput& in) {
  const auto& e = in.evaluations.at("all");
  struct Bar {
    std::string text;
    WinRate w;
  };
  std::vector<Bar> bars;
  for (const auto& c : candidates(in))
    for (const auto& b : rows_for(in, c))
      for (const auto& m : e.metrics) bars.push_back({c + " vs " + b + ": " + m, e.win_rates.at(c).at(b).at(m)});
  const int left = 320, width = 400, row = 22, top = 30;
  const int height = top + row * static_cast<int>(bars.size()) + 30;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 80 << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"10\" y=\"18\" font-weight=\"bold\">Win rate (%) with " << fmt(100 * in.protocol.confidence, 0)
    << "% intervals</text>\n";
  auto x = [&](double r) { return left + r * width; };
  for (size_t i = 0; i < bars.size(); ++i) {
    const int y = top + row * static_cast<int>(i);
    const auto& w = bars[i].w;
    s << "<text x=\"" << left - 6 << "\" y=\"" << y + 14 << "\" text-anchor=\"end\">" << xml_escape(bars[i].text)
      << "</text>\n<rect x=\"" << left << "\" y=\"" << y + 3 << "\" width=\"" << fmt(w.rate * width, 1)
      << "\" height=\"14\" fill=\"" << (w.rate >= 0.5 ? "#4c78a8" : "#e45756") << "\"/>\n<line x1=\""
      << fmt(x(w.ci_low), 1) << "\" x2=\"" << fmt(x(w.ci_high), 1) << "\" y1=\"" << y + 10 << "\" y2=\"" << y + 10
      << "\" stroke=\"black\"/>\n<text x=\"" << left + width + 6 << "\" y=\"" << y + 14 << "\">" << pct(w.rate)
      << "</text>\n";
  }
  s << "<line x1=\"" << x(0.5) << "\" x2=\"" << x(0.5) << "\" y1=\"" << top << "\" y2=\"" << height - 25
    << "\" stroke=\"gray\" stroke-dasharray=\"4 3\"/>\n";
  for (double t : {0.0, 0.25, 0.5, 0.75, 1.0})
    s << "<text x=\"" << x(t) << "\" y=\"" << height - 10 << "\" text-anchor=\"middle\">" << fmt(100 * t, 0) << "</text>\n";
  s << "</svg>\n";
  return s.str();
}

// Per metric a row of box plots (min, quartiles, median, max of the units), one per method.
std::string svg_distributions(const ReportInput& in) {
  const auto& e = in.evaluations.at("all");
  const auto& scores = in.scores.at("all");
  const int box_w = 60, gap = 30, panel_h = 180, left = 60, top = 30;
  const int width = left + static_cast<int>(scores.size()) * (box_w + gap) + 40;
  const int height = top + static_cast<int>(e.metrics.size()) * (panel_h + 40);
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t k = 0; k < e.metrics.size(); ++k) {
    const std::string& metric = e.metrics[k];
    std::vector<std::vector<double>> values;
    double lo = HUGE_VAL, hi = -HUGE_VAL;
    for (const auto& m : scores) {
      std::vector<double> v;
      for (const auto& u : representatives(m, in.protocol)) v.push_back(u.at(metric));
      std::sort(v.begin(), v.end());
      if (!v.empty()) lo = std::min(lo, v.front()), hi = std::max(hi, v.back());
      values.push_back(std::move(v));
    }
    if (!(hi > lo)) hi = lo + 1;
    const int y0 = top + static_cast<int>(k) * (panel_h + 40);
    auto y = [&](double v) { return y0 + panel_h - (v - lo) / (hi - lo) * panel_h; };
    s << "<text x=\"10\" y=\"" << y0 - 8 << "\" font-weight=\"bold\">" << xml_escape(metric) << "</text>\n"
      << "<text x=\"" << left - 6 << "\" y=\"" << y(hi) + 4 << "\" text-anchor=\"end\">" << fmt(hi, 3) << "</text>\n"
      << "<text x=\"" << left - 6 << "\" y=\"" << y(lo) + 4 << "\" text-anchor=\"end\">" << fmt(lo, 3) << "</text>\n";
    for (size_t i = 0; i < values.size(); ++i) {
      const auto& v = values[i];
      if (v.empty()) continue;
      auto q = [&](double p) {
        const double pos = p * static_cast<double>(v.size() - 1);
        const auto a = static_cast<size_t>(pos);
        const auto b = std::min(a + 1, v.size() - 1);
        return v[a] + (pos - static_cast<double>(a)) * (v[b] - v[a]);
      };
      const int x0 = left + static_cast<int>(i) * (box_w + gap);
      const double cx = x0 + box_w / 2.0;
      s << "<line x1=\"" << cx << "\" x2=\"" << cx << "\" y1=\"" << fmt(y(v.front()), 1) << "\" y2=\""
        << fmt(y(v.back()), 1) << "\" stroke=\"black\"/>\n<rect x=\"" << x0 << "\" y=\"" << fmt(y(q(0.75)), 1)
        << "\" width=\"" << box_w << "\" height=\"" << fmt(std::max(1.0, y(q(0.25)) - y(q(0.75))), 1)
        << "\" fill=\"#9ecae9\" stroke=\"black\"/>\n<line x1=\"" << x0 << "\" x2=\"" << x0 + box_w << "\" y1=\""
        << fmt(y(q(0.5)), 1) << "\" y2=\"" << fmt(y(q(0.5)), 1) << "\" stroke=\"black\" stroke-width=\"2\"/>\n<text x=\""
        << cx << "\" y=\"" << y0 + panel_h + 16 << "\" text-anchor=\"middle\">" << xml_escape(scores[i].name)
        << "</text>\n";
    }
  }
  s << "</svg>\n";
  return s.str();
}

// The first prompts' representative images, one row per prompt, one column per method.
io::Image grid(const ReportInput& in) {
  const auto& scores = in.scores.at("all");
  std::vector<std::vector<std::string>> reps;
  for (const auto& m : scores) reps.push_back(representative_images(m, in.protocol));
  const size_t prompts = std::min<size_t>(static_cast<size_t>(std::max<int64_t>(in.grid_prompts, 0)),
                                          scores.empty() ? 0 : scores.front().prompts.size());
  std::vector<io::Image> cells;
  for (size_t p = 0; p < prompts; ++p)
    for (size_t m = 0; m < scores.size(); ++m) {
      io::Image im = io::read_image(fs::path(scores[m].dir) / reps[m][p], 3);
      cells.push_back(io::resize(im, 128, 128));
    }
  return cells.empty() ? io::Image(1, 1, 3) : io::make_grid(cells, static_cast<int>(scores.size()));
}

}  // namespace

std::vector<std::string> test_sets(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw UsageError(cat("[eval] ", dir.string(), " is not a folder"));
  if (holds_prompt_folders(dir)) return {""};
  std::vector<std::string> sets;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && holds_prompt_folders(e.path())) sets.push_back(e.path().filename().string());
  std::sort(sets.begin(), sets.end());
  if (sets.empty())
    throw UsageError(cat("[eval] ", dir.string(), ": no prompt folders (DIR/<id>/caption.txt) in it or in its "
                         "sub-folders (one per test set, e.g. HPDv2's styles)"));
  return sets;
}

std::string test_set_dir(const std::string& dir, const std::string& set) {
  return set.empty() ? dir : (fs::path(dir) / set).string();
}

std::vector<io::OrderedJson> read_jsonl(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw IoError(cat("[eval] cannot read ", file.string()));
  std::vector<io::OrderedJson> rows;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      rows.push_back(io::OrderedJson::parse(line));
    } catch (const std::exception& e) {
      throw IoError(cat("[eval] ", file.string(), " line ", n, ": not JSON (", e.what(), ")"));
    }
  }
  return rows;
}

MethodScores method_scores(const std::string& name, const std::string& dir, const std::vector<io::OrderedJson>& rows,
                           const std::vector<std::string>& keys) {
  MethodScores m{name, dir, {}};
  std::map<std::string, PromptScores> by_prompt;
  for (const auto& r : rows) {
    if (r.value("dir", std::string()) != dir) continue;
    const std::string image = r.value("image", std::string());
    const auto slash = image.find('/');
    if (slash == std::string::npos) throw IoError(cat("[eval] score row of ", dir, ": image '", image, "' has no prompt folder"));
    PromptScores& p = by_prompt[image.substr(0, slash)];
    p.id = image.substr(0, slash);
    p.caption = r.value("prompt", std::string());
    ImageScore s{image, fs::path(image).stem().string(), {}};
    for (const auto& k : keys) {
      if (!r.contains(k) || !r[k].is_number())
        throw IoError(cat("[eval] score row of ", dir, "/", image, " has no number '", k, "'"));
      s.metrics[k] = r[k].get<double>();
    }
    p.images.push_back(std::move(s));
  }
  for (auto& [id, p] : by_prompt) {
    // Seeds in numeric order where they are numbers (dro sample and inference.py name images by seed).
    std::sort(p.images.begin(), p.images.end(), [](const ImageScore& a, const ImageScore& b) {
      const bool na = !a.seed.empty() && std::all_of(a.seed.begin(), a.seed.end(), ::isdigit);
      const bool nb = !b.seed.empty() && std::all_of(b.seed.begin(), b.seed.end(), ::isdigit);
      if (na && nb && a.seed.size() != b.seed.size()) return a.seed.size() < b.seed.size();
      return a.seed < b.seed;
    });
    m.prompts.push_back(std::move(p));
  }
  if (m.prompts.empty()) throw UsageError(cat("[eval] no scores for ", dir, " (", name, ")"));
  return m;
}

MethodScores pooled(const std::string& name, const std::vector<std::pair<std::string, MethodScores>>& sets) {
  if (sets.size() == 1) return sets.front().second;
  MethodScores out{name, "", {}};
  for (const auto& [set, m] : sets)
    for (auto p : m.prompts) {
      p.id = set + "/" + p.id;
      for (auto& im : p.images) im.image = set + "/" + im.image;
      out.prompts.push_back(std::move(p));
    }
  // The images are relative to the method folder above the sets.
  out.dir = fs::path(sets.front().second.dir).parent_path().string();
  return out;
}

io::OrderedJson results_json(const ReportInput& in) {
  io::OrderedJson j = evaluation_json(in.evaluations.at("all"));
  j["methods"] = in.methods;
  j["baselines"] = in.baselines;
  j["selection"] = in.protocol.selection == Selection::kMedian ? "median"
                   : in.protocol.selection == Selection::kMean ? "mean"
                                                                 : "all";
  j["select_by"] = in.protocol.select_by;
  j["bootstrap"] = in.protocol.bootstrap;
  j["confidence"] = in.protocol.confidence;
  j["seed"] = in.protocol.seed;
  if (in.sets.size() > 1)
    for (const auto& s : in.sets) j["test_sets"][s] = evaluation_json(in.evaluations.at(s));
  return j;
}

std::vector<fs::path> write_report(const ReportInput& in, const fs::path& out) {
  fs::create_directories(out);
  std::vector<fs::path> files;
  auto put = [&](const std::string& name, const std::string& text) {
    io::write_file_atomically(out / name, text);
    files.push_back(out / name);
  };
  put("results.json", results_json(in).dump(2) + "\n");
  put("report.md", markdown(in));
  put("means.csv", csv_means(in));
  put("win_rates.csv", csv_win_rates(in));
  put("win_rates.svg", svg_win_rates(in));
  put("distributions.svg", svg_distributions(in));
  io::write_png(out / "grid.png", grid(in));
  files.push_back(out / "grid.png");
  return files;
}

}  // namespace dro::eval
