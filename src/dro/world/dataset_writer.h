// Writes the preference world to disk in the layouts the rest of dro (and the official Python
// code) read unchanged:
//
//   OUT/world.json                    seed, sizes, attribute lists, prompts, config, summary
//   OUT/prompts/train.txt             one caption a line
//   OUT/prompts/heldout.txt           combinations that never occur in base/, feedback/, expert/
//   OUT/base/NNNN/NNNN.png            uniform renders of every train prompt (pretraining data)
//   OUT/base/NNNN/caption.txt
//   OUT/feedback/images/SSSS_k.png    every image shown to the simulated users
//   OUT/feedback/pairs.jsonl          {"session", "caption", "chosen", "rejected"} (kept vs not)
//   OUT/feedback/labels.jsonl         {"session", "caption", "image", "label"} (1 kept, 0 skipped)
//   OUT/feedback/expert.jsonl         which session each expert image came from, and its rank
//   OUT/expert/NNN/NNN.png            the top-N kept images: `dro train` input
//   OUT/expert/NNN/caption.txt
//   OUT/heldout/NNN/NNN.png           one kept image per held-out prompt (evaluation prompts,
//   OUT/heldout/NNN/caption.txt       like the official Pick-a-Pic test folder)
//
// Folder layout of an image set (tools/pickapic.py of the official code): one folder per image,
// named by its index zero-padded to the number of digits of the count, holding NNN.png and
// caption.txt (the caption, no trailing newline). The expert set ranks kept images like the
// paper's top-500 by a reward model: here the "reward model" is the hidden score plus Gaussian
// noise of `ranking_noise` (0 = an oracle), and folder 0 holds the best-ranked image; with
// expert_ranking "keep-only" the N experts are kept images in a random order instead. Hidden
// scores are not written next to the images; world.json carries only their means.
//
// The world is written into OUT.partial-<pid> and renamed to OUT when complete, so a crash never
// leaves a half-written world under the final name (and per-file fsyncs are not needed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dro/io/image.h"
#include "dro/io/json.h"
#include "dro/world/feedback.h"
#include "dro/world/prompt.h"

namespace dro::world {

struct WorldConfig {
  uint64_t seed = 0;
  int image_size = 32;
  int heldout_prompts = 48;         // of kPromptCount (480) combinations
  int base_images_per_prompt = 16;  // uniform renders per train prompt in base/
  int feedback_rounds = 4;          // sessions per train prompt
  FeedbackConfig feedback;          // K, temperature (image_size is taken from above)
  int top_n = 500;                  // expert images (the paper's top-500)
  double ranking_noise = 0.5;       // std of the reward model's error, hidden-score units
  // How the expert set is chosen among the kept images: "reward" (the top-N by the noisy reward
  // model above, like the paper's top-500 by a reward model) or "keep-only" (N kept images drawn
  // uniformly: implicit feedback alone, no reward model).
  std::string expert_ranking = "reward";
  bool overwrite = false;           // replace an existing non-empty OUT

  // UsageError naming the field for out-of-range values.
  void validate() const;
  io::OrderedJson to_json() const;
};

struct ScoreStats {
  size_t count = 0;
  double mean = 0.0;
  // mean quality terms (preference.h) and mean fidelity
  double size = 0, saturation = 0, centring = 0, outline = 0, fidelity = 0;
  io::OrderedJson to_json() const;
};

struct WorldSummary {
  size_t train_prompts = 0, heldout_prompts = 0;
  ScoreStats base;      // uniform renders in base/
  ScoreStats shown;     // every image shown in a session
  ScoreStats kept;      // every kept image
  ScoreStats not_kept;  // every image not kept
  ScoreStats expert;    // the top-N in expert/
  ScoreStats heldout;   // heldout/
  io::OrderedJson to_json() const;
};

struct CaptionedImage {
  std::string caption;
  io::Image image;
};

// Writes `items` as an image set in the official folder layout under `dir` (created; existing
// entries with the same names are replaced). Plain writes: callers stage and rename the parent.
void write_image_set(const std::filesystem::path& dir, const std::vector<CaptionedImage>& items);

// Writes the whole world under `out` (see the top of this file) and returns its summary, which
// is also in world.json. UsageError if `out` exists and is not empty and !config.overwrite.
WorldSummary write_world(const std::filesystem::path& out, const WorldConfig& config);

}  // namespace dro::world
