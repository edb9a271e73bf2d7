#include "dro/world/demo.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "dro/core/error.h"
#include "dro/core/progress.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/pipeline/stable_diffusion.h"
#include "dro/train/trainer.h"
#include "dro/world/dataset_writer.h"
#include "dro/eval/eval_report.h"
#include "dro/world/evaluation.h"
#include "dro/world/plot.h"

namespace dro::world {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Settings {
  int64_t train_steps, batch_size, buffer_batch_size, buffer_size, buffer_steps, buffer_sample_steps;
  double learning_rate, margin, ema_decay, prompt_dropout;
  int64_t eval_prompts, eval_seeds, eval_steps;
  double guidance;
  std::string eval_scheduler = "ddim";
  uint64_t eval_seed_base;
  // The baselines' knobs, the best of a small grid on world seed 2 (README, "The demo"); same
  // steps and batch as DRO.
  double sft_learning_rate = 7e-5, dpo_learning_rate = 1e-6, kto_learning_rate = 1e-6;
  double beta_dpo = 1000, beta_kto = 250;
};

Settings preset(const DemoOptions& o) {
  Settings s;
  // The buffer holds one refill (buffer_size = buffer_batch_size): a smaller one would drop
  // trajectories as soon as they are sampled.
  if (o.quick) {
    s = {20, 8, 8, 8, 8, 1, 2e-4, 1e-3, 0.9, 0.1, 12, 2, 10, 3.0, "ddim", 0};
    s.sft_learning_rate = 2e-4;  // as DRO's; the preference baselines keep their full-run rates
  } else {
    s = {200, 8, 8, 8, 10, 1, 7e-5, 1e-3, 0.98, 0.1, 48, 4, 20, 3.0, "ddim", 0};
  }
  if (o.train_steps > 0) s.train_steps = o.train_steps;
  if (o.eval_prompts > 0) s.eval_prompts = o.eval_prompts;
  if (o.eval_seeds > 0) s.eval_seeds = o.eval_seeds;
  if (o.eval_steps > 0) s.eval_steps = o.eval_steps;
  if (o.learning_rate > 0) s.learning_rate = o.learning_rate;
  if (o.margin >= 0) s.margin = o.margin;
  if (o.guidance > 0) s.guidance = o.guidance;
  if (o.sft_learning_rate > 0) s.sft_learning_rate = o.sft_learning_rate;
  if (o.dpo_learning_rate > 0) s.dpo_learning_rate = o.dpo_learning_rate;
  if (o.kto_learning_rate > 0) s.kto_learning_rate = o.kto_learning_rate;
  if (o.beta_dpo > 0) s.beta_dpo = o.beta_dpo;
  if (o.beta_kto > 0) s.beta_kto = o.beta_kto;
  s.eval_seed_base = 1000 + o.seed;
  return s;
}

// Generates every (prompt, seed) image into dir/<idx>/<seed>.png (+ caption.txt).
void generate_set(const fs::path& model, const fs::path& unet, const std::vector<Prompt>& prompts,
                  const Settings& s, const fs::path& dir, const std::string& label, bool quiet) {
  pipeline::LoadSpec spec;
  spec.model = model;
  spec.unet = unet;
  auto sd = pipeline::StableDiffusion::load(spec);
  pipeline::GenerateOptions g;
  g.scheduler = s.eval_scheduler;
  g.steps = s.eval_steps;
  g.guidance_scale = s.guidance;
  const int64_t P = static_cast<int64_t>(prompts.size());
  const int digits = static_cast<int>(std::to_string(std::max<int64_t>(P - 1, 0)).size());
  struct Job {
    int64_t n;
    uint64_t seed;
  };
  std::vector<Job> jobs;
  for (int64_t n = 0; n < P; ++n)
    for (int64_t i = 0; i < s.eval_seeds; ++i) jobs.push_back({n, s.eval_seed_base + static_cast<uint64_t>(n + i * P)});
  const size_t batch = 32;
  Progress progress(label, static_cast<int64_t>((jobs.size() + batch - 1) / batch) * s.eval_steps, quiet);
  auto dir_of = [&](int64_t n) {
    std::ostringstream id;
    id << std::setw(digits) << std::setfill('0') << n;
    return dir / id.str();
  };
  for (int64_t n = 0; n < P; ++n) {
    fs::create_directories(dir_of(n));
    io::write_file_atomically(dir_of(n) / "caption.txt", prompts[n].caption());
  }
  for (size_t b = 0; b < jobs.size(); b += batch) {
    std::vector<pipeline::ImageRequest> reqs;
    const size_t e = std::min(jobs.size(), b + batch);
    for (size_t k = b; k < e; ++k) reqs.push_back({prompts[jobs[k].n].caption(), "", jobs[k].seed, {}});
    auto res = pipeline::generate(sd, reqs, g, {}, &progress);
    for (size_t k = b; k < e; ++k)
      io::write_png(dir_of(jobs[k].n) / (std::to_string(jobs[k].seed) + ".png"),
                    io::from_tensor(res.images[k - b], io::PixelRange::kZeroOne));
  }
  progress.finish();
}

std::vector<Series> read_curves(const fs::path& metrics) {
  std::map<std::string, Series> by_key;
  std::vector<std::string> order;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = io::OrderedJson::parse(line);
    const double x = j.value("step", 0.0);
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string k = it.key();
      if (k == "step" || k == "opt_step" || k == "buffer_size" || !it.value().is_number()) continue;
      if (!by_key.count(k)) order.push_back(k), by_key[k].title = k;
      by_key[k].points.emplace_back(x, it.value().get<double>());
    }
  }
  std::vector<Series> out;
  for (const auto& k : order) out.push_back(by_key[k]);
  return out;
}

io::Image upscale(const io::Image& im, int f) {
  io::Image out(im.width * f, im.height * f, im.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < im.channels; ++c) out.at(y, x, c) = im.at(y / f, x / f, c);
  return out;
}

// "mean [ci_low, ci_high]" with 3 decimals.
std::string interval_text(const Interval& i) {
  std::ostringstream t;
  t << std::fixed << std::setprecision(3) << i.mean << " [" << i.ci_low << ", " << i.ci_high << "]";
  return t.str();
}

std::string row(const std::string& name, const ModelSummary& m) {
  std::ostringstream w;
  w << std::fixed << std::setprecision(3) << m.win_rate_vs_base;
  return cat("| ", name, " | ", interval_text(m.preference), " | ", interval_text(m.fidelity), " | ",
             interval_text(m.diversity), " | ", (m.win_rate_vs_base < 0 ? std::string("-") : w.str()), " |\n");
}

// A model's images as dro eval's MethodScores: the world's hidden preference and fidelity of
// every image, named by seed.
eval::MethodScores world_method(const std::string& name, const fs::path& dir, const std::vector<PromptImages>& images,
                                const std::vector<PromptScore>& scores) {
  eval::MethodScores m{name, dir.string(), {}};
  for (size_t p = 0; p < images.size(); ++p) {
    eval::PromptScores ps{images[p].id, images[p].prompt.caption(), {}};
    for (size_t i = 0; i < images[p].names.size(); ++i)
      ps.images.push_back({images[p].id + "/" + images[p].names[i] + ".png", images[p].names[i],
                           {{"preference", scores[p].preference[i]}, {"fidelity", scores[p].fidelity[i]}}});
    m.prompts.push_back(std::move(ps));
  }
  return m;
}

// One evaluated model of the demo.
struct Evaluated {
  std::string name;  // base, sft, dpo, kto, dro
  fs::path samples;
  std::vector<PromptImages> images;
  std::vector<PromptScore> scores;
  ModelSummary summary;
  io::OrderedJson training;  // what it was trained with (null for the base)
};

// Per-prompt mean preferences of a model, in prompt order.
std::vector<double> prompt_means(const Evaluated& m) {
  std::vector<double> v;
  for (const auto& p : m.scores) v.push_back(p.mean_preference);
  return v;
}

// The win rate of `a` over `b` per prompt (mean hidden preference over the same seeds; ties
// count half), with a bootstrap interval over prompts and the sign test.
eval::WinRate prompt_win_rate(const Evaluated& a, const Evaluated& b, uint64_t seed) {
  eval::ProtocolOptions po;
  po.seed = seed;
  return eval::win_rate(prompt_means(a), prompt_means(b), po);
}

io::OrderedJson win_json(const eval::WinRate& w) {
  return {{"rate", w.rate},   {"ci_low", w.ci_low}, {"ci_high", w.ci_high}, {"wins", w.wins},
          {"losses", w.losses}, {"ties", w.ties},   {"p_value", w.p_value}};
}

std::string win_text(const eval::WinRate& w) {
  std::ostringstream t;
  t << std::fixed << std::setprecision(3) << w.rate << " [" << w.ci_low << ", " << w.ci_high << "] (" << w.wins
    << "-" << w.losses << "-" << w.ties << ", p = " << std::setprecision(3) << w.p_value << ")";
  return t.str();
}

// The paper's protocol through dro eval's code, with the world's judges as the scorers: per prompt
// the median image by hidden preference, win rates with bootstrap intervals.
eval::ReportInput paper_protocol(const std::vector<Evaluated>& models) {
  eval::ReportInput in;
  in.sets = {""};
  in.protocol.select_by = "preference";
  std::vector<eval::MethodScores> ms;
  for (const auto& m : models) {
    in.methods.push_back(m.name);
    if (m.name != "dro") in.baselines.push_back(m.name);
    ms.push_back(world_method(m.name, m.samples, m.images, m.scores));
  }
  eval::check_comparable(ms, 0);
  in.evaluations["all"] = eval::evaluate(ms, in.protocol, {"preference", "fidelity"});
  in.scores["all"] = ms;
  return in;
}

// Where the scores move: the share of images showing each caption attribute and the mean of each
// hidden quality term, per model.
std::string breakdown_table(const std::vector<Evaluated>& models) {
  std::ostringstream t;
  t << std::fixed << std::setprecision(3) << "| |";
  for (const auto& m : models) t << " " << m.name << " |";
  t << "\n|---|";
  for (size_t i = 0; i < models.size(); ++i) t << "---|";
  t << "\n";
  for (size_t k = 0; k < kAttributeNames.size(); ++k) {
    t << "| shows the " << kAttributeNames[k] << " |";
    for (const auto& m : models) t << " " << m.summary.attribute_rate[k] << " |";
    t << "\n";
  }
  for (size_t k = 0; k < kQualityTermNames.size(); ++k) {
    t << "| hidden term: " << kQualityTermNames[k] << " |";
    for (const auto& m : models) t << " " << m.summary.quality_terms[k] << " |";
    t << "\n";
  }
  return t.str();
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Up to 8 prompts, each model's first seed: one labelled row per model.
io::Image sample_grid(const std::vector<Evaluated>& models) {
  std::vector<io::Image> cells;
  const size_t k = std::min<size_t>(8, models.front().images.size());
  for (const auto& m : models)
    for (size_t i = 0; i < k; ++i) cells.push_back(upscale(m.images[i].images[0], 3));
  io::Image grid = io::make_grid(cells, static_cast<int>(k), 4);
  const int label = 40;
  io::Image labelled(grid.width + label, grid.height, 3);
  std::fill(labelled.pixels.begin(), labelled.pixels.end(), 255);
  for (int y = 0; y < grid.height; ++y)
    for (int x = 0; x < grid.width; ++x)
      for (int c = 0; c < 3; ++c) labelled.at(y, x + label, c) = grid.at(y, x, c);
  const uint8_t black[3] = {0, 0, 0};
  const int row_h = grid.height / static_cast<int>(models.size());
  for (size_t r = 0; r < models.size(); ++r)
    draw_text(labelled, 4, static_cast<int>(r) * row_h + row_h / 2 - 5, upper(models[r].name), black, 2);
  return labelled;
}

}  // namespace

fs::path find_default_base_model(const fs::path& executable) {
  std::vector<fs::path> candidates;
#ifdef DRO_SOURCE_DIR
  candidates.push_back(fs::path(DRO_SOURCE_DIR) / "assets" / "world-base");
#endif
  std::error_code ec;
  candidates.push_back(fs::current_path(ec) / "assets" / "world-base");
  fs::path dir = fs::weakly_canonical(executable, ec).parent_path();
  for (int up = 0; up < 4 && !dir.empty(); ++up, dir = dir.parent_path())
    candidates.push_back(dir / "assets" / "world-base");
  for (const auto& c : candidates)
    if (fs::exists(c / "model_index.json")) return c;
  return {};
}

namespace {

// The training run of every fine-tuned model: the same base, steps, batch, EMA, prompt dropout and
// seed; each objective on its own data with its own knob.
train::TrainConfig train_config(const DemoOptions& o, const Settings& s, const fs::path& world, const std::string& name,
                                const fs::path& logdir) {
  train::TrainConfig tc;
  tc.pretrained_model_name_or_path = o.model.string();
  tc.logdir = logdir.string();
  tc.seed = static_cast<int64_t>(o.seed);
  tc.resolution = 32;
  tc.random_flip = false;  // flips contradict "left" / "right" captions
  tc.random_drop_prompt_probability = s.prompt_dropout;
  tc.dataloader_num_workers = 1;
  tc.objective = name;
  tc.batch_size = s.batch_size;
  tc.num_steps = s.train_steps;
  tc.gradient_accumulation_steps = 1;
  tc.mixed_precision = "no";
  tc.use_ema = true;
  tc.ema_decay = s.ema_decay;
  tc.checkpointing_steps = s.train_steps;
  tc.quiet = o.quiet;
  tc.device = "cpu";
  if (name == "dro") {
    tc.train_dataset = (world / "expert").string();
    tc.learning_rate = s.learning_rate;
    tc.margin = s.margin;
    tc.buffer_size = s.buffer_size;
    tc.buffer_batch_size = s.buffer_batch_size;
    tc.buffer_num_inference_steps = s.buffer_steps;
    tc.buffer_sample_steps = s.buffer_sample_steps;
    tc.buffer_update_steps = 1;
  } else if (name == "sft") {
    tc.train_dataset = (world / "expert").string();
    tc.learning_rate = s.sft_learning_rate;
  } else if (name == "dpo") {
    tc.train_dataset = (world / "feedback" / "pairs.jsonl").string();
    tc.learning_rate = s.dpo_learning_rate;
    tc.beta_dpo = s.beta_dpo;
  } else if (name == "kto") {
    tc.train_dataset = (world / "feedback" / "labels.jsonl").string();
    tc.learning_rate = s.kto_learning_rate;
    tc.beta_kto = s.beta_kto;
  } else {
    throw UsageError(cat("[demo] unknown model '", name, "' (base, sft, dpo, kto, dro)"));
  }
  return tc;
}

std::string describe(const train::TrainConfig& tc) {
  std::ostringstream d;
  d << std::defaultfloat << tc.objective << " on " << fs::path(tc.train_dataset).filename().string() << ": lr "
    << tc.learning_rate;
  if (tc.objective == "dro") d << ", margin " << tc.margin << ", buffer of " << tc.buffer_num_inference_steps << " DPM-Solver++ steps";
  if (tc.objective == "dpo") d << ", beta " << tc.beta_dpo;
  if (tc.objective == "kto") d << ", beta " << tc.beta_kto;
  return d.str();
}

// Trains `name` (unless base) into `train_root`/<name>, generates the prompts into
// `samples_root`/<name> and scores them.
Evaluated train_and_evaluate(const DemoOptions& o, const Settings& s, const fs::path& world, const std::string& name,
                             const fs::path& train_root, const fs::path& samples_root,
                             const std::vector<Prompt>& prompts, const std::string& step) {
  Evaluated m;
  m.name = name;
  fs::path unet;
  if (name != "base") {
    const auto tc = train_config(o, s, world, name, train_root / name);
    std::cerr << "[demo] " << step << " " << name << ": " << describe(tc) << ", " << s.train_steps << " steps, batch "
              << s.batch_size << "\n";
    train::Trainer(tc).run();
    unet = train_root / name / cat("ckpt-", s.train_steps) / "unet";
    m.training = tc.to_json();
  }
  m.samples = samples_root / name;
  generate_set(o.model, unet, prompts, s, m.samples, name, o.quiet);
  m.images = read_image_folder(m.samples);
  m.scores = score_prompts(m.images);
  return m;
}

std::vector<int64_t> ablation_sizes(const DemoOptions& o) {
  std::vector<int64_t> k = o.ablation;
  std::sort(k.begin(), k.end());
  k.erase(std::unique(k.begin(), k.end()), k.end());
  for (int64_t v : k)
    if (v < 1) throw UsageError(cat("[demo] --ablation: expert-set sizes must be >= 1, got ", v));
  return k;
}

}  // namespace

io::OrderedJson run_demo(const DemoOptions& o) {
  const auto t_start = Clock::now();
  if (o.model.empty() || !fs::exists(o.model / "model_index.json"))
    throw UsageError(cat("[demo] base model not found at '", o.model.string(),
                         "': pass --model DIR (a folder with model_index.json), or rebuild it with "
                         "'dro world build' + 'dro world pretrain' (see assets/world-base/README.md)"));
  std::vector<std::string> names = {"base"};
  for (const auto& n : o.models.empty() ? std::vector<std::string>{"sft", "dpo", "kto", "dro"} : o.models) {
    if (n == "base") continue;
    if (n != "sft" && n != "dpo" && n != "kto" && n != "dro")
      throw UsageError(cat("[demo] --models: unknown model '", n, "' (sft, dpo, kto, dro; base is always in)"));
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  const auto sizes = ablation_sizes(o);
  const Settings s = preset(o);
  const fs::path out = o.out;
  fs::create_directories(out);
  for (const char* sub : {"world", "train", "samples", "ablation", "eval"}) fs::remove_all(out / sub);
  io::OrderedJson timings;

  // (a) The world: held-out prompts, expert images, feedback.
  auto t0 = Clock::now();
  WorldConfig wc;
  wc.seed = o.seed;
  wc.base_images_per_prompt = 1;  // base/ is pretraining data; the demo does not read it
  wc.expert_ranking = o.expert_ranking;
  std::cerr << "[demo] 1/4 building the preference world (seed " << o.seed << ", experts ranked by "
            << (o.expert_ranking == "keep-only" ? "nothing: kept images at random" : "a noisy reward model") << ")\n";
  const WorldSummary ws = write_world(out / "world", wc);
  timings["world_s"] = since(t0);
  std::cerr << "[demo]   " << ws.train_prompts << " train / " << ws.heldout_prompts << " held-out prompts; "
            << ws.expert.count << " expert images, hidden preference " << std::fixed << std::setprecision(2)
            << ws.expert.mean << " (uniform renders " << ws.base.mean << ", kept " << ws.kept.mean << ", not kept "
            << ws.not_kept.mean << ")\n";
  auto heldout = read_prompt_list(out / "world" / "prompts" / "heldout.txt");
  if (static_cast<int64_t>(heldout.size()) > s.eval_prompts) heldout.resize(s.eval_prompts);

  // (b) Every model: trained with the same steps and batch, evaluated on the same prompts and seeds.
  t0 = Clock::now();
  std::cerr << std::defaultfloat << "[demo] 2/4 training and generating " << heldout.size() << " held-out prompts x "
            << s.eval_seeds << " seeds per model (" << s.eval_scheduler << " " << s.eval_steps << " steps, guidance "
            << s.guidance << ")\n";
  std::vector<Evaluated> models;
  for (size_t i = 0; i < names.size(); ++i)
    models.push_back(train_and_evaluate(o, s, out / "world", names[i], out / "train", out / "samples", heldout,
                                        cat("  model ", i + 1, "/", names.size())));
  timings["models_s"] = since(t0);
  for (size_t i = 1; i < models.size(); ++i) models[i].summary = summarise(models[i].scores, &models[0].scores);
  models[0].summary = summarise(models[0].scores);
  auto find_model = [&](const std::string& name) -> const Evaluated* {
    for (const auto& m : models)
      if (m.name == name) return &m;
    return nullptr;
  };
  const Evaluated* dro = find_model("dro");
  // DRO's per-prompt win rate over every other model, once for the report, summary and console.
  std::vector<std::pair<std::string, eval::WinRate>> dro_wins;
  if (dro)
    for (const auto& m : models)
      if (m.name != "dro") dro_wins.emplace_back(m.name, prompt_win_rate(*dro, m, o.seed));

  // (c) The ablation: SFT and DRO on expert sets of K images (the paper's Figure 3).
  io::OrderedJson ablation = io::OrderedJson::array();
  std::vector<Series> ablation_lines(2);
  ablation_lines[0].title = "sft";
  ablation_lines[1].title = "dro";
  if (!sizes.empty()) {
    t0 = Clock::now();
    std::cerr << "[demo] 3/4 ablation: SFT and DRO on expert sets of";
    for (auto k : sizes) std::cerr << " " << k;
    std::cerr << " images\n";
    for (size_t i = 0; i < sizes.size(); ++i) {
      const int64_t k = sizes[i];
      io::OrderedJson e;
      e["k"] = k;
      std::vector<Evaluated> pair;
      if (k == static_cast<int64_t>(ws.expert.count) && find_model("sft") && dro) {
        // The main run's expert set: its SFT and DRO models are this point.
        pair = {*find_model("sft"), *dro};
        e["experts"] = ws.expert.count;
        e["expert_preference"] = ws.expert.mean;
        e["from_main_run"] = true;
      } else {
        const fs::path dir = out / "ablation" / cat("k", k);
        WorldConfig kc = wc;
        kc.top_n = static_cast<int>(k);
        const WorldSummary kws = write_world(dir / "world", kc);
        e["experts"] = kws.expert.count;
        e["expert_preference"] = kws.expert.mean;
        for (const char* name : {"sft", "dro"}) {
          pair.push_back(train_and_evaluate(o, s, dir / "world", name, dir / "train", dir / "samples", heldout,
                                            cat("  K = ", k, " (", i + 1, "/", sizes.size(), ")")));
          pair.back().summary = summarise(pair.back().scores, &models[0].scores);
          fs::remove_all(pair.back().samples);  // the scores are kept; the images are not needed
        }
      }
      for (const auto& m : pair)
        e[m.name] = {{"preference", m.summary.preference.to_json()}, {"fidelity", m.summary.fidelity.to_json()}};
      e["dro_win_rate_vs_sft"] = win_json(prompt_win_rate(pair[1], pair[0], o.seed));
      ablation_lines[0].points.emplace_back(static_cast<double>(k), pair[0].summary.preference.mean);
      ablation_lines[1].points.emplace_back(static_cast<double>(k), pair[1].summary.preference.mean);
      ablation.push_back(e);
    }
    timings["ablation_s"] = since(t0);
  }

  // (d) Scores and report.
  t0 = Clock::now();
  std::cerr << "[demo] 4/4 scoring and writing the report\n";
  const eval::ReportInput protocol = paper_protocol(models);
  eval::write_report(protocol, out / "eval");

  io::OrderedJson res;
  for (const auto& m : models) {
    io::OrderedJson j = m.summary.to_json();
    if (!m.training.is_null()) j["training"] = m.training;
    res["models"][m.name] = j;
  }
  for (const auto& [name, w] : dro_wins) res["models"]["dro"]["win_rates"][name] = win_json(w);
  io::OrderedJson& st = res["settings"];
  st["seed"] = o.seed;
  st["quick"] = o.quick;
  st["base_model"] = o.model.string();
  st["world"] = wc.to_json();
  st["image_size"] = 32;
  st["models"] = names;
  st["train"] = {{"steps", s.train_steps},
                 {"batch_size", s.batch_size},
                 {"optimizer_updates", s.train_steps},
                 {"ema_decay", s.ema_decay},
                 {"prompt_dropout", s.prompt_dropout},
                 {"data", {{"sft", "the expert set (world/expert)"},
                           {"dro", "the expert set (world/expert) and online samples of the policy"},
                           {"dpo", "kept vs not-kept pairs of every feedback session (world/feedback/pairs.jsonl)"},
                           {"kto", "kept (desirable) and not-kept (undesirable) images (world/feedback/labels.jsonl)"}}}};
  st["eval"] = {{"prompts", heldout.size()},
                {"seeds_per_prompt", s.eval_seeds},
                {"seeds", cat("image i of prompt n uses seed ", s.eval_seed_base, " + n + i * ", heldout.size())},
                {"scheduler", s.eval_scheduler},
                {"steps", s.eval_steps},
                {"guidance_scale", s.guidance},
                {"interval", "normal approximation, mean +- 1.96 sd / sqrt(prompts), over per-prompt means"},
                {"diversity", "per prompt: mean pairwise RMS pixel difference across seeds (pixel_diversity)"},
                {"win_rates", "models.dro.win_rates.X: share of prompts whose mean hidden preference over the same "
                              "seeds beats model X's (ties 1/2), 95% bootstrap interval over prompts, sign test"},
                {"win_rate_vs_base", "fraction of prompts whose mean preference beats the base's (ties 1/2); null for the base"},
                {"preference_gain_vs_base", "per-prompt model minus base (paired: same prompts and seeds), mean and 95% interval"}};
  io::OrderedJson per_prompt = io::OrderedJson::array();
  for (size_t i = 0; i < heldout.size(); ++i) {
    io::OrderedJson row = {{"caption", models[0].scores[i].prompt.caption()}};
    for (const auto& m : models) {
      row[m.name + "_preference"] = m.scores[i].mean_preference;
      row[m.name + "_fidelity"] = m.scores[i].mean_fidelity;
    }
    per_prompt.push_back(row);
  }
  res["per_prompt"] = per_prompt;
  res["paper_protocol"] = eval::results_json(protocol);
  if (!sizes.empty()) res["ablation"] = ablation;

  io::write_png(out / "samples.png", sample_grid(models));
  std::vector<Series> curves;
  for (const auto& m : models) {
    if (m.name == "base") continue;
    for (auto& c : read_curves(out / "train" / m.name / "metrics.jsonl"))
      if (c.title == "loss/loss" || c.title == "grad_norm" || (m.name == "dro" && c.title == "loss/diff") ||
          (m.name == "dpo" && c.title == "loss/implicit_acc") || (m.name == "kto" && c.title == "loss/reward")) {
        c.title = m.name + " " + c.title;
        curves.push_back(std::move(c));
      }
  }
  io::write_png(out / "curves.png", plot_panels(curves, 3));
  if (!sizes.empty()) io::write_png(out / "ablation.png", plot_chart("hidden preference vs expert images K", ablation_lines));
  timings["report_s"] = since(t0);
  timings["total_s"] = since(t_start);
  res["timings"] = timings;
  io::write_json(out / "results.json", res);

  std::ostringstream md;
  md << "# dro demo: Diffusion-DRO and the baselines in the preference world\n\n"
     << "Base model `" << o.model.string() << "`, world seed " << o.seed << " (experts "
     << (o.expert_ranking == "keep-only" ? "drawn at random from the kept images: no reward model"
                                         : "ranked by a noisy reward model, the top " + std::to_string(ws.expert.count))
     << ")" << (o.quick ? " (**--quick**: a smoke run, too short to measure anything)" : "")
     << ". Every fine-tuned model takes " << s.train_steps << " optimizer updates of batch " << s.batch_size
     << " from the base: SFT and DRO on the " << ws.expert.count
     << " expert images, DPO on the kept-vs-not-kept pairs, KTO on the kept / not-kept labels. All models generate "
     << heldout.size() << " held-out prompts x " << s.eval_seeds << " seeds (the same seeds), " << s.eval_scheduler
     << " " << s.eval_steps << " steps, guidance " << s.guidance << ".\n\n"
     << "| model | hidden preference (0-10) | fidelity (0-1) | diversity | win rate vs base |\n"
     << "|---|---|---|---|---|\n";
  for (const auto& m : models) md << row(m.name, m.summary);
  md << "\n";
  if (dro) {
    md << "Win rates of DRO per prompt (mean hidden preference over the same seeds, ties 1/2; 95% bootstrap "
          "interval; wins-losses-ties; sign test):\n\n| DRO over | win rate |\n|---|---|\n";
    for (const auto& [name, w] : dro_wins) md << "| " << name << " | " << win_text(w) << " |\n";
    md << "\n";
  }
  std::string trained;
  for (const auto& m : models)
    if (!m.training.is_null()) {
      train::TrainConfig tc;
      tc.update_from_json(m.training, "training");
      trained += cat(trained.empty() ? "" : "; ", m.name, " (", describe(tc), ")");
    }
  if (!trained.empty()) md << "Training: " << trained << ".\n\n";
  md << breakdown_table(models) << "\n";
  if (!sizes.empty()) {
    md << "## Ablation: expert-set size K\n\n| K | SFT preference | DRO preference | DRO win rate vs SFT |\n|---|---|---|---|\n";
    for (const auto& e : ablation) {
      const auto& w = e["dro_win_rate_vs_sft"];
      md << std::fixed << std::setprecision(3) << "| " << e["k"].get<int64_t>() << " | "
         << e["sft"]["preference"]["mean"].get<double>() << " | " << e["dro"]["preference"]["mean"].get<double>()
         << " | " << w["rate"].get<double>() << " [" << w["ci_low"].get<double>() << ", " << w["ci_high"].get<double>()
         << "] |\n";
    }
    md << "\n![ablation](ablation.png)\n\n";
  }
  md << "The paper's protocol (dro eval's code; the median image of each prompt by hidden preference) is in "
        "`eval/` (tables, charts, image grid) and `results.json` (`paper_protocol`).\n\n"
     << "Values are means over held-out prompts with normal-approximation 95% intervals. The hidden "
        "preference is what the simulated users reward but never state (object size within its size class, "
        "saturation, centring, a dark outline; divided by 5 for every caption attribute the image misses); "
        "the models only ever saw which images users kept. Fidelity is the fraction of the five caption "
        "attributes recognised in the image; diversity the mean pairwise RMS pixel difference across seeds "
        "of a prompt. For reference, uniform renders of the world score "
     << std::fixed << std::setprecision(2) << ws.base.mean << ", kept images " << ws.kept.mean << " and the expert images "
     << ws.expert.mean << ".\n\n![samples](samples.png)\n\nOne row per model (";
  for (size_t i = 0; i < models.size(); ++i) md << (i ? ", " : "") << models[i].name;
  md << "), same prompts and seeds.\n\n![training curves](curves.png)\n\nWall time: " << std::setprecision(0)
     << since(t_start) << " s.\n";
  io::write_file_atomically(out / "summary.md", md.str());

  std::cerr << std::fixed << std::setprecision(3) << "[demo] held-out results (" << heldout.size() << " prompts x "
            << s.eval_seeds << " seeds):\n"
            << "         preference              fidelity               diversity\n";
  for (const auto& m : models)
    std::cerr << "  " << std::left << std::setw(5) << m.name << std::right << " " << interval_text(m.summary.preference)
              << "   " << interval_text(m.summary.fidelity) << "   " << interval_text(m.summary.diversity) << "\n";
  for (const auto& [name, w] : dro_wins) std::cerr << "  DRO win rate vs " << name << ": " << win_text(w) << "\n";
  for (const auto& e : ablation)
    std::cerr << "  ablation K = " << e["k"] << ": SFT " << e["sft"]["preference"]["mean"].get<double>() << ", DRO "
              << e["dro"]["preference"]["mean"].get<double>() << "\n";
  std::cerr << "[demo] report in " << out.string() << " (results.json, summary.md, samples.png, curves.png"
            << (sizes.empty() ? "" : ", ablation.png") << ", eval/), " << std::setprecision(0) << since(t_start)
            << " s\n";
  return res;
}

}  // namespace dro::world
