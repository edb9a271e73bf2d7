#include "dro/world/dataset_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "dro/core/error.h"
#include "dro/world/measures.h"
#include "dro/world/preference.h"
#include "dro/world/random.h"
#include "dro/world/renderer.h"

namespace dro::world {
namespace fs = std::filesystem;

namespace {

// Stream tags of the world's random streams (Rng::derive).
constexpr uint64_t kBaseStream = 0xba5e;
constexpr uint64_t kRankingStream = 0x2a4c;
// Session ids: train sessions are round * train_count + i; held-out sessions start here.
constexpr uint64_t kHeldoutSessionBase = uint64_t{1} << 40;

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out)
    throw IoError(
        cat("[world] cannot open ", path.string(), " for writing: ", std::strerror(errno)));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) throw IoError(cat("[world] writing ", path.string(), " failed (disk full?)"));
}

void make_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(cat("[world] cannot create folder ", dir.string(), ": ", ec.message()));
}

std::string padded(uint64_t i, int digits) {
  std::ostringstream os;
  os << std::setw(digits) << std::setfill('0') << i;
  return os.str();
}

int digits_of(size_t n) {
  return static_cast<int>(std::to_string(std::max<size_t>(n, 1)).size());
}

// Running means of the hidden score, its terms and fidelity.
struct StatsAccumulator {
  ScoreStats s;
  void add(const io::Image& image, const Prompt& prompt) {
    const Analysis a = analyse(image);
    add(preference_terms(a, prompt), fidelity(a, prompt).score());
  }
  void add(const PreferenceTerms& t, double fid) {
    ++s.count;
    const double w = 1.0 / s.count;
    s.mean += (t.score - s.mean) * w;
    s.size += (t.size - s.size) * w;
    s.saturation += (t.saturation - s.saturation) * w;
    s.centring += (t.centring - s.centring) * w;
    s.outline += (t.outline - s.outline) * w;
    s.fidelity += (fid - s.fidelity) * w;
  }
};

io::OrderedJson attribute_lists() {
  io::OrderedJson j;
  auto names = [](const auto& values) {
    io::OrderedJson a = io::OrderedJson::array();
    for (auto v : values) a.push_back(std::string(name(v)));
    return a;
  };
  j["shapes"] = names(kShapes);
  j["colours"] = names(kColours);
  j["sizes"] = names(kSizes);
  j["positions"] = names(kPositions);
  j["backgrounds"] = names(kBackgrounds);
  return j;
}

io::OrderedJson captions(const std::vector<Prompt>& prompts) {
  io::OrderedJson a = io::OrderedJson::array();
  for (const Prompt& p : prompts) a.push_back(p.caption());
  return a;
}

}  // namespace

void WorldConfig::validate() const {
  auto need = [](bool ok, const char* field, const std::string& rule, double got) {
    if (!ok) throw UsageError(cat("[world] ", field, " must be ", rule, ", got ", got));
  };
  need(image_size >= 8 && image_size <= 4096, "image_size", "in [8, 4096]", image_size);
  need(heldout_prompts >= 0 && heldout_prompts <= kPromptCount / 2, "heldout_prompts",
       cat("in [0, ", kPromptCount / 2, "]"), heldout_prompts);
  need(base_images_per_prompt >= 0, "base_images_per_prompt", ">= 0", base_images_per_prompt);
  need(feedback_rounds >= 1, "feedback_rounds", ">= 1", feedback_rounds);
  need(feedback.choices >= 2, "choices", ">= 2", feedback.choices);
  need(std::isfinite(feedback.temperature), "temperature", "finite", feedback.temperature);
  need(top_n >= 1, "top_n", ">= 1", top_n);
  need(ranking_noise >= 0 && std::isfinite(ranking_noise), "ranking_noise", ">= 0", ranking_noise);
  if (expert_ranking != "reward" && expert_ranking != "keep-only")
    throw UsageError(cat("[world] expert_ranking must be 'reward' or 'keep-only', got '", expert_ranking, "'"));
}

io::OrderedJson WorldConfig::to_json() const {
  return {{"seed", seed},
          {"image_size", image_size},
          {"heldout_prompts", heldout_prompts},
          {"base_images_per_prompt", base_images_per_prompt},
          {"feedback_rounds", feedback_rounds},
          {"choices", feedback.choices},
          {"temperature", feedback.temperature},
          {"top_n", top_n},
          {"ranking_noise", ranking_noise},
          {"expert_ranking", expert_ranking}};
}

io::OrderedJson ScoreStats::to_json() const {
  return {{"count", count},           {"mean_score", mean},   {"size", size},
          {"saturation", saturation}, {"centring", centring}, {"outline", outline},
          {"fidelity", fidelity}};
}

io::OrderedJson WorldSummary::to_json() const {
  return {{"train_prompts", train_prompts}, {"heldout_prompts", heldout_prompts},
          {"base", base.to_json()},         {"shown", shown.to_json()},
          {"kept", kept.to_json()},         {"not_kept", not_kept.to_json()},
          {"expert", expert.to_json()},     {"heldout", heldout.to_json()}};
}

void write_image_set(const fs::path& dir, const std::vector<CaptionedImage>& items) {
  const int digits = digits_of(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string id = padded(i, digits);
    const fs::path folder = dir / id;
    make_dirs(folder);
    write_bytes(folder / (id + ".png"), io::encode_png(items[i].image));
    write_bytes(folder / "caption.txt", items[i].caption);
  }
}

WorldSummary write_world(const fs::path& out, const WorldConfig& config) {
  config.validate();
  std::error_code ec;
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)) && !config.overwrite)
    throw UsageError(cat("[world] ", out.string(),
                         " already exists and is not empty; remove it or allow overwriting"));
  const fs::path stage =
      out.parent_path() / (out.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(stage, ec);
  make_dirs(stage);

  try {
    WorldSummary summary;
    const PromptSplit split = split_prompts(config.seed, config.heldout_prompts);
    summary.train_prompts = split.train.size();
    summary.heldout_prompts = split.heldout.size();
    make_dirs(stage / "prompts");
    write_prompt_list(stage / "prompts" / "train.txt", split.train);
    write_prompt_list(stage / "prompts" / "heldout.txt", split.heldout);
    FeedbackConfig feedback = config.feedback;
    feedback.image_size = config.image_size;

    // Base data: uniform nuisance for every train prompt.
    {
      StatsAccumulator stats;
      const size_t count = split.train.size() * config.base_images_per_prompt;
      const int digits = digits_of(count);
      size_t n = 0;
      for (const Prompt& p : split.train)
        for (int j = 0; j < config.base_images_per_prompt; ++j, ++n) {
          Rng rng = Rng::derive(config.seed, {kBaseStream, static_cast<uint64_t>(p.index()),
                                              static_cast<uint64_t>(j)});
          const io::Image image = render(p, sample_nuisance(rng), config.image_size);
          stats.add(image, p);
          const std::string id = padded(n, digits);
          const fs::path folder = stage / "base" / id;
          make_dirs(folder);
          write_bytes(folder / (id + ".png"), io::encode_png(image));
          write_bytes(folder / "caption.txt", p.caption());
        }
      if (count == 0) make_dirs(stage / "base");
      summary.base = stats.s;
    }

    // Feedback sessions on the train prompts; keep what the expert set needs in memory.
    struct Kept {
      uint64_t session;
      Prompt prompt;
      io::Image image;
      std::string file;
      PreferenceTerms terms;
      double fidelity;
      double proxy;
    };
    std::vector<Kept> kept;
    {
      StatsAccumulator shown, kept_stats, not_kept;
      const fs::path fb = stage / "feedback";
      make_dirs(fb / "images");
      std::ofstream pairs(fb / "pairs.jsonl"), labels(fb / "labels.jsonl");
      if (!pairs || !labels) throw IoError(cat("[world] cannot create files in ", fb.string()));
      const uint64_t sessions = static_cast<uint64_t>(config.feedback_rounds) * split.train.size();
      const int digits = digits_of(sessions);
      for (int round = 0; round < config.feedback_rounds; ++round)
        for (size_t i = 0; i < split.train.size(); ++i) {
          const uint64_t id = static_cast<uint64_t>(round) * split.train.size() + i;
          const Prompt& p = split.train[i];
          Session s = simulate_session(p, feedback, config.seed, id);
          std::vector<std::string> files;
          for (size_t k = 0; k < s.images.size(); ++k) {
            files.push_back("images/" + padded(id, digits) + "_" + std::to_string(k) + ".png");
            write_bytes(fb / files.back(), io::encode_png(s.images[k]));
            const Analysis a = analyse(s.images[k]);
            const PreferenceTerms t = preference_terms(a, p);
            const double fid = fidelity(a, p).score();
            shown.add(t, fid);
            if (static_cast<int>(k) == s.kept) {
              kept_stats.add(t, fid);
              Rng noise = Rng::derive(config.seed, {kRankingStream, id});
              const double proxy = config.expert_ranking == "keep-only"
                                       ? noise.uniform()  // no reward model: a random order
                                       : t.score + config.ranking_noise * noise.normal();
              kept.push_back({id, p, s.images[k], files.back(), t, fid, proxy});
            } else {
              not_kept.add(t, fid);
            }
            labels << io::OrderedJson{{"session", id},
                                      {"caption", p.caption()},
                                      {"image", files.back()},
                                      {"label", static_cast<int>(k) == s.kept ? 1 : 0}}
                          .dump()
                   << "\n";
          }
          for (size_t k = 0; k < s.images.size(); ++k)
            if (static_cast<int>(k) != s.kept)
              pairs << io::OrderedJson{{"session", id},
                                       {"caption", p.caption()},
                                       {"chosen", files[s.kept]},
                                       {"rejected", files[k]}}
                           .dump()
                    << "\n";
        }
      pairs.flush();
      labels.flush();
      if (!pairs || !labels)
        throw IoError(cat("[world] writing ", fb.string(), "/*.jsonl failed (disk full?)"));
      summary.shown = shown.s;
      summary.kept = kept_stats.s;
      summary.not_kept = not_kept.s;
    }

    // Expert set: the top-N kept images by the noisy reward model, best first (keep-only: N
    // kept images at random).
    {
      std::vector<size_t> order(kept.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return kept[a].proxy > kept[b].proxy; });
      order.resize(std::min<size_t>(order.size(), config.top_n));
      StatsAccumulator stats;
      std::vector<CaptionedImage> items;
      std::ofstream index(stage / "feedback" / "expert.jsonl");
      const int digits = digits_of(order.size());
      for (size_t r = 0; r < order.size(); ++r) {
        const Kept& k = kept[order[r]];
        stats.add(k.terms, k.fidelity);
        items.push_back({k.prompt.caption(), k.image});
        index << io::OrderedJson{{"expert", padded(r, digits)},
                                 {"rank", r},
                                 {"session", k.session},
                                 {"image", k.file}}
                     .dump()
              << "\n";
      }
      index.flush();
      if (!index)
        throw IoError(
            cat("[world] writing ", (stage / "feedback" / "expert.jsonl").string(), " failed"));
      make_dirs(stage / "expert");
      write_image_set(stage / "expert", items);
      summary.expert = stats.s;
    }

    // Held-out prompts: one kept image each, as an evaluation prompt folder.
    {
      StatsAccumulator stats;
      std::vector<CaptionedImage> items;
      for (size_t i = 0; i < split.heldout.size(); ++i) {
        const Prompt& p = split.heldout[i];
        Session s = simulate_session(p, feedback, config.seed, kHeldoutSessionBase + i);
        stats.add(s.images[s.kept], p);
        items.push_back({p.caption(), s.images[s.kept]});
      }
      make_dirs(stage / "heldout");
      write_image_set(stage / "heldout", items);
      summary.heldout = stats.s;
    }

    io::OrderedJson world;
    world["format"] = "dro-preference-world";
    world["version"] = 1;
    world["seed"] = config.seed;
    world["image_size"] = config.image_size;
    world["config"] = config.to_json();
    world["caption_template"] =
        "a <size> <colour> <shape> on a <background> background, <position>";
    world["attributes"] = attribute_lists();
    world["prompts"] = {{"train", captions(split.train)}, {"heldout", captions(split.heldout)}};
    world["summary"] = summary.to_json();
    io::write_json(stage / "world.json", world);

    if (fs::exists(out)) {
      const fs::path old =
          out.parent_path() / (out.filename().string() + ".old-" + std::to_string(::getpid()));
      fs::rename(out, old, ec);
      if (ec)
        throw IoError(cat("[world] cannot move the old ", out.string(), " aside: ", ec.message()));
      fs::rename(stage, out, ec);
      if (ec)
        throw IoError(cat("[world] cannot rename ", stage.string(), " to ", out.string(), ": ",
                          ec.message()));
      fs::remove_all(old, ec);
    } else {
      fs::rename(stage, out, ec);
      if (ec)
        throw IoError(cat("[world] cannot rename ", stage.string(), " to ", out.string(), ": ",
                          ec.message()));
    }
    return summary;
  } catch (...) {
    fs::remove_all(stage, ec);
    throw;
  }
}

}  // namespace dro::world
