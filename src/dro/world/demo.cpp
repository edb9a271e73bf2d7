#include "dro/world/demo.h"

#include <unistd.h>

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
};

Settings preset(const DemoOptions& o) {
  Settings s;
  if (o.quick) {
    s = {20, 8, 8, 2, 8, 1, 2e-4, 1e-3, 0.9, 0.1, 12, 2, 10, 3.0, "ddim", 0};
  } else {
    s = {200, 8, 8, 4, 10, 1, 7e-5, 1e-3, 0.98, 0.1, 48, 4, 20, 3.0, "ddim", 0};
  }
  if (o.train_steps > 0) s.train_steps = o.train_steps;
  if (o.eval_prompts > 0) s.eval_prompts = o.eval_prompts;
  if (o.eval_seeds > 0) s.eval_seeds = o.eval_seeds;
  if (o.eval_steps > 0) s.eval_steps = o.eval_steps;
  if (o.learning_rate > 0) s.learning_rate = o.learning_rate;
  if (o.margin >= 0) s.margin = o.margin;
  if (o.guidance > 0) s.guidance = o.guidance;
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

std::string row(const char* name, const ModelSummary& m) {
  return cat("| ", name, " | ", interval_text(m.preference), " | ", interval_text(m.fidelity), " | ",
             interval_text(m.diversity), " | ",
             (m.win_rate_vs_base < 0 ? std::string("-") : cat(m.win_rate_vs_base)), " |\n");
}

// base and DRO as dro eval's MethodScores: the world's hidden preference and fidelity of every
// image, named by seed.
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

eval::ReportInput paper_protocol(const fs::path& samples, const std::vector<PromptImages>& base_images,
                                 const std::vector<PromptScore>& base_scores, const std::vector<PromptImages>& dro_images,
                                 const std::vector<PromptScore>& dro_scores) {
  eval::ReportInput in;
  in.methods = {"base", "dro"};
  in.baselines = {"base"};
  in.sets = {""};
  in.protocol.select_by = "preference";
  std::vector<eval::MethodScores> ms = {world_method("base", samples / "base", base_images, base_scores),
                                        world_method("dro", samples / "dro", dro_images, dro_scores)};
  eval::check_comparable(ms, 0);
  in.evaluations["all"] = eval::evaluate(ms, in.protocol, {"preference", "fidelity"});
  in.scores["all"] = ms;
  return in;
}

// Where the scores move: the share of images showing each caption attribute and the mean of each
// hidden quality term, base against DRO.
std::string breakdown_table(const ModelSummary& base, const ModelSummary& dro) {
  std::ostringstream t;
  t << std::fixed << std::setprecision(3) << "| | base | DRO |\n|---|---|---|\n";
  for (size_t k = 0; k < kAttributeNames.size(); ++k)
    t << "| shows the " << kAttributeNames[k] << " | " << base.attribute_rate[k] << " | " << dro.attribute_rate[k]
      << " |\n";
  for (size_t k = 0; k < kQualityTermNames.size(); ++k)
    t << "| hidden term: " << kQualityTermNames[k] << " | " << base.quality_terms[k] << " | "
      << dro.quality_terms[k] << " |\n";
  return t.str();
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

io::OrderedJson run_demo(const DemoOptions& o) {
  const auto t_start = Clock::now();
  if (o.model.empty() || !fs::exists(o.model / "model_index.json"))
    throw UsageError(cat("[demo] base model not found at '", o.model.string(),
                         "': pass --model DIR (a folder with model_index.json), or rebuild it with "
                         "'dro world build' + 'dro world pretrain' (see assets/world-base/README.md)"));
  const Settings s = preset(o);
  const fs::path out = o.out;
  fs::create_directories(out);
  for (const char* sub : {"world", "train", "samples"}) fs::remove_all(out / sub);
  io::OrderedJson timings;

  // (a) The world: held-out prompts, expert images.
  auto t0 = Clock::now();
  WorldConfig wc;
  wc.seed = o.seed;
  wc.base_images_per_prompt = 1;  // base/ is pretraining data; the demo does not read it
  std::cerr << "[demo] 1/4 building the preference world (seed " << o.seed << ")\n";
  const WorldSummary ws = write_world(out / "world", wc);
  timings["world_s"] = since(t0);
  std::cerr << "[demo]   " << ws.train_prompts << " train / " << ws.heldout_prompts << " held-out prompts; "
            << ws.expert.count << " expert images, hidden preference " << std::fixed << std::setprecision(2)
            << ws.expert.mean << " (uniform renders " << ws.base.mean << ")\n";

  // (b) Diffusion-DRO fine-tuning.
  t0 = Clock::now();
  train::TrainConfig tc;
  tc.pretrained_model_name_or_path = o.model.string();
  tc.train_dataset = (out / "world" / "expert").string();
  tc.logdir = (out / "train").string();
  tc.seed = static_cast<int64_t>(o.seed);
  tc.resolution = 32;
  tc.random_flip = false;  // flips contradict "left" / "right" captions
  tc.random_drop_prompt_probability = s.prompt_dropout;
  tc.dataloader_num_workers = 1;
  tc.objective = "dro";
  tc.batch_size = s.batch_size;
  tc.num_steps = s.train_steps;
  tc.gradient_accumulation_steps = 1;
  tc.learning_rate = s.learning_rate;
  tc.margin = s.margin;
  tc.mixed_precision = "no";
  tc.use_ema = true;
  tc.ema_decay = s.ema_decay;
  tc.buffer_size = s.buffer_size;
  tc.buffer_batch_size = s.buffer_batch_size;
  tc.buffer_num_inference_steps = s.buffer_steps;
  tc.buffer_sample_steps = s.buffer_sample_steps;
  tc.buffer_update_steps = 1;
  tc.checkpointing_steps = s.train_steps;
  tc.quiet = o.quiet;
  tc.device = "cpu";
  std::cerr << std::defaultfloat << "[demo] 2/4 Diffusion-DRO fine-tuning: " << s.train_steps << " steps, batch " << s.batch_size
            << ", lr " << s.learning_rate << ", margin " << s.margin << ", buffer of " << s.buffer_steps
            << " DPM-Solver++ steps\n";
  {
    train::Trainer trainer(tc);
    trainer.run();
  }
  timings["train_s"] = since(t0);
  const fs::path dro_unet = out / "train" / cat("ckpt-", s.train_steps) / "unet";

  // (c) Held-out evaluation, same seeds for both models.
  t0 = Clock::now();
  auto heldout = read_prompt_list(out / "world" / "prompts" / "heldout.txt");
  if (static_cast<int64_t>(heldout.size()) > s.eval_prompts) heldout.resize(s.eval_prompts);
  std::cerr << std::defaultfloat << "[demo] 3/4 generating " << heldout.size() << " held-out prompts x " << s.eval_seeds
            << " seeds with each model (" << s.eval_scheduler << " " << s.eval_steps << " steps, guidance "
            << s.guidance << ")\n";
  generate_set(o.model, "", heldout, s, out / "samples" / "base", "base", o.quiet);
  generate_set(o.model, dro_unet, heldout, s, out / "samples" / "dro", "dro ", o.quiet);
  timings["generate_s"] = since(t0);

  // (d) Scores and report.
  t0 = Clock::now();
  std::cerr << "[demo] 4/4 scoring and writing the report\n";
  const auto base_images = read_image_folder(out / "samples" / "base");
  const auto dro_images = read_image_folder(out / "samples" / "dro");
  const auto base_scores = score_prompts(base_images);
  const auto dro_scores = score_prompts(dro_images);
  const ModelSummary base = summarise(base_scores);
  const ModelSummary dro = summarise(dro_scores, &base_scores);
  // The paper's protocol through dro eval's code, with the world's judges as the scorers: per
  // prompt the median image by hidden preference, win rates with bootstrap intervals.
  const eval::ReportInput protocol = paper_protocol(out / "samples", base_images, base_scores, dro_images, dro_scores);
  eval::write_report(protocol, out / "eval");
  const auto& paper_win = protocol.evaluations.at("all").win_rates.at("dro").at("base").at("preference");

  io::OrderedJson res;
  res["models"]["base"] = base.to_json();
  res["models"]["dro"] = dro.to_json();
  io::OrderedJson& st = res["settings"];
  st["seed"] = o.seed;
  st["quick"] = o.quick;
  st["base_model"] = o.model.string();
  st["world"] = wc.to_json();
  st["image_size"] = 32;
  st["train"] = tc.to_json();
  st["eval"] = {{"prompts", heldout.size()},
                {"seeds_per_prompt", s.eval_seeds},
                {"seeds", cat("image i of prompt n uses seed ", s.eval_seed_base, " + n + i * ", heldout.size())},
                {"scheduler", s.eval_scheduler},
                {"steps", s.eval_steps},
                {"guidance_scale", s.guidance},
                {"interval", "normal approximation, mean +- 1.96 sd / sqrt(prompts), over per-prompt means"},
                {"diversity", "per prompt: mean pairwise RMS pixel difference across seeds (pixel_diversity)"},
                {"win_rate_vs_base", "fraction of prompts whose mean preference beats the base's (ties 1/2); null for the base"},
                {"preference_gain_vs_base", "per-prompt DRO minus base (paired: same prompts and seeds), mean and 95% interval"}};
  io::OrderedJson per_prompt = io::OrderedJson::array();
  for (size_t i = 0; i < base_scores.size(); ++i)
    per_prompt.push_back({{"caption", base_scores[i].prompt.caption()},
                          {"base_preference", base_scores[i].mean_preference},
                          {"dro_preference", dro_scores[i].mean_preference},
                          {"base_fidelity", base_scores[i].mean_fidelity},
                          {"dro_fidelity", dro_scores[i].mean_fidelity}});
  res["per_prompt"] = per_prompt;
  res["paper_protocol"] = eval::results_json(protocol);

  // samples.png: up to 8 prompts, the first seed; base row above DRO row.
  {
    std::vector<io::Image> cells;
    const size_t k = std::min<size_t>(8, base_scores.size());
    auto first = [&](const fs::path& d, size_t i) {
      auto f = read_image_folder(d);
      return upscale(f[i].images[0], 3);
    };
    const auto base_dir = out / "samples" / "base", dro_dir = out / "samples" / "dro";
    std::vector<io::Image> top, bottom;
    for (size_t i = 0; i < k; ++i) top.push_back(first(base_dir, i));
    for (size_t i = 0; i < k; ++i) bottom.push_back(first(dro_dir, i));
    cells = top;
    cells.insert(cells.end(), bottom.begin(), bottom.end());
    io::Image grid = io::make_grid(cells, static_cast<int>(k), 4);
    // Label column on the left.
    io::Image labelled(grid.width + 40, grid.height, 3);
    std::fill(labelled.pixels.begin(), labelled.pixels.end(), 255);
    for (int y = 0; y < grid.height; ++y)
      for (int x = 0; x < grid.width; ++x)
        for (int c = 0; c < 3; ++c) labelled.at(y, x + 40, c) = grid.at(y, x, c);
    const uint8_t black[3] = {0, 0, 0};
    draw_text(labelled, 4, grid.height / 4 - 5, "BASE", black, 2);
    draw_text(labelled, 4, 3 * grid.height / 4 - 5, "DRO", black, 2);
    io::write_png(out / "samples.png", labelled);
  }
  io::write_png(out / "curves.png", plot_panels(read_curves(out / "train" / "metrics.jsonl"), 3));
  timings["report_s"] = since(t0);
  timings["total_s"] = since(t_start);
  res["timings"] = timings;
  io::write_json(out / "results.json", res);

  std::ostringstream md;
  md << "# dro demo: Diffusion-DRO in the preference world\n\n"
     << "Base model `" << o.model.string() << "` fine-tuned with Diffusion-DRO for " << s.train_steps
     << " steps on the " << ws.expert.count << " expert images of a world built with seed " << o.seed
     << (o.quick ? " (**--quick**: a smoke run, too short to measure anything)" : "") << ". Both models generate "
     << heldout.size() << " held-out prompts x " << s.eval_seeds << " seeds (same seeds), " << s.eval_scheduler
     << " " << s.eval_steps << " steps, guidance " << s.guidance << ".\n\n"
     << "| model | hidden preference (0-10) | fidelity (0-1) | diversity | win rate vs base |\n"
     << "|---|---|---|---|---|\n"
     << row("base", base) << row("DRO", dro) << "\n"
     << "Paired by prompt (DRO minus base, same prompts and seeds): hidden preference "
     << interval_text(dro.preference_gain_vs_base) << ", fidelity " << interval_text(dro.fidelity_change_vs_base)
     << ".\n\n"
     << breakdown_table(base, dro) << "\n"
     << "The paper's protocol (dro eval's code; the median image of each prompt by hidden preference): "
     << "DRO wins " << std::fixed << std::setprecision(1) << 100 * paper_win.rate << "% of the prompts against the "
     << "base (95% bootstrap interval " << 100 * paper_win.ci_low << "-" << 100 * paper_win.ci_high << "%, "
     << paper_win.ties << " ties, sign test p = " << std::setprecision(3) << paper_win.p_value
     << "); tables, charts and the image grid in `eval/`.\n\n"
     << "Values are means over held-out prompts with normal-approximation 95% intervals. The hidden "
        "preference is what the simulated users reward but never state (object size within its size class, "
        "saturation, centring, a dark outline; divided by 5 for every caption attribute the image misses); "
        "the models only ever saw which images users kept. Fidelity is the fraction of the five caption "
        "attributes recognised in the image; diversity the mean pairwise RMS pixel difference across seeds "
        "of a prompt. For reference, uniform renders of the world score "
     << std::fixed << std::setprecision(2) << ws.base.mean << " and the expert images " << ws.expert.mean
     << ".\n\n![samples](samples.png)\n\nTop row base, bottom row DRO, same prompts and seeds.\n\n"
     << "![training curves](curves.png)\n\nWall time: " << std::setprecision(0) << since(t_start) << " s.\n";
  io::write_file_atomically(out / "summary.md", md.str());

  std::cerr << std::fixed << std::setprecision(3) << "[demo] held-out results (" << heldout.size() << " prompts x "
            << s.eval_seeds << " seeds):\n"
            << "         preference              fidelity               diversity\n";
  auto line = [](const char* n, const ModelSummary& m) {
    std::cerr << "  " << n << "  " << interval_text(m.preference) << "   " << interval_text(m.fidelity) << "   "
              << interval_text(m.diversity) << "\n";
  };
  line("base", base);
  line("dro ", dro);
  std::cerr << "  hidden terms (base -> dro):";
  for (size_t k = 0; k < kQualityTermNames.size(); ++k)
    std::cerr << " " << kQualityTermNames[k] << " " << base.quality_terms[k] << " -> " << dro.quality_terms[k];
  std::cerr << "\n  attributes shown (base -> dro):";
  for (size_t k = 0; k < kAttributeNames.size(); ++k)
    std::cerr << " " << kAttributeNames[k] << " " << base.attribute_rate[k] << " -> " << dro.attribute_rate[k];
  std::cerr << "\n";
  std::cerr << "  DRO - base, paired by prompt: preference " << interval_text(dro.preference_gain_vs_base)
            << ", fidelity " << interval_text(dro.fidelity_change_vs_base) << "\n"
            << "  DRO win rate vs base: " << dro.win_rate_vs_base << "\n[demo] report in " << out.string()
            << " (results.json, summary.md, samples.png, curves.png), " << std::setprecision(0)
            << since(t_start) << " s\n";
  return res;
}

}  // namespace dro::world
