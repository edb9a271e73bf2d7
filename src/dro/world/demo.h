// `dro demo`: the whole method on the preference world in a few minutes of CPU. Builds a world,
// fine-tunes the shipped base model with Diffusion-DRO on the world's expert images (the real
// Trainer: online DPM-Solver++ negatives, frozen reference, EMA), generates the held-out prompts
// with the base and the DRO model from the same seeds, scores them with the hidden preference,
// fidelity and diversity, and writes a report:
//
//   OUT/results.json   {"models": {"base": M, "dro": M}, "settings": {...}, ...}; M has
//                      preference / fidelity / diversity {mean, ci_low, ci_high} (normal 95%
//                      interval over per-prompt means), win_rate_vs_base (null for the base),
//                      attribute_rate / quality_terms (where the scores move) and, for DRO,
//                      the paired preference_gain_vs_base / fidelity_change_vs_base
//   OUT/summary.md     the tables and a short reading
//   OUT/samples.png    the same prompts and seeds: base row above DRO row, per prompt pair
//   OUT/curves.png     training scalars from OUT/train/metrics.jsonl
//   OUT/world/, OUT/train/, OUT/samples/{base,dro}/  the inputs behind the numbers
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "dro/io/json.h"

namespace dro::world {

struct DemoOptions {
  std::filesystem::path out = "demo-report";
  std::filesystem::path model;  // base model folder
  uint64_t seed = 0;
  bool quick = false;  // fewer steps, prompts and seeds (a smoke run, not a measurement)
  bool quiet = false;
  // Overrides of the preset (0 / negative: keep the preset).
  int64_t train_steps = 0, eval_prompts = 0, eval_seeds = 0, eval_steps = 0;
  double learning_rate = 0, margin = -1, guidance = 0;
};

// Runs the demo and returns results.json. UsageError when the model folder is missing.
io::OrderedJson run_demo(const DemoOptions& options);

// The shipped base model: assets/world-base under DRO_SOURCE_DIR (when defined), the working
// folder, or the executable's folder or one of its parents; empty when none is found.
std::filesystem::path find_default_base_model(const std::filesystem::path& executable);

}  // namespace dro::world
