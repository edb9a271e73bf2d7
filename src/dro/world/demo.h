// `dro demo`: the method and the paper's baselines on the preference world in minutes of CPU.
// Builds a world, fine-tunes the shipped base model with SFT and Diffusion-DRO on the world's
// expert images, Diffusion-DPO on its kept-vs-not-kept pairs and Diffusion-KTO on its keep / skip
// labels (the real Trainer, the same steps and batch for each), generates the held-out prompts
// with all five models from the same seeds, scores them with the hidden preference, fidelity and
// diversity, and writes a report:
//
//   OUT/results.json   {"models": {"base": M, "sft": M, "dpo": M, "kto": M, "dro": M}, "settings",
//                      "per_prompt", "paper_protocol", "ablation"}; M has preference / fidelity /
//                      diversity {mean, ci_low, ci_high} (normal 95% interval over per-prompt
//                      means), win_rate_vs_base, attribute_rate / quality_terms, the paired
//                      preference_gain_vs_base / fidelity_change_vs_base and its training
//                      config; models.dro.win_rates.X {rate, ci_low, ci_high, ...} per prompt
//   OUT/summary.md     the tables and a short reading
//   OUT/samples.png    the same prompts and seeds, one row per model
//   OUT/curves.png     training scalars from OUT/train/<model>/metrics.jsonl
//   OUT/ablation.png   with --ablation: SFT and DRO preference against the expert-set size K
//   OUT/eval/          the paper's protocol (dro eval's report)
//   OUT/world/, OUT/train/<model>/, OUT/samples/<model>/  the inputs behind the numbers
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

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
  // The models fine-tuned beside the base (default: sft, dpo, kto, dro) and their knobs (0: the preset).
  std::vector<std::string> models;
  double sft_learning_rate = 0, dpo_learning_rate = 0, kto_learning_rate = 0, beta_dpo = 0, beta_kto = 0;
  std::string expert_ranking = "reward";  // or keep-only (WorldConfig::expert_ranking)
  std::vector<int64_t> ablation;          // expert-set sizes K for the SFT-vs-DRO ablation (none: skipped)
};

// Runs the demo and returns results.json. UsageError when the model folder is missing.
io::OrderedJson run_demo(const DemoOptions& options);

// The shipped base model: assets/world-base under DRO_SOURCE_DIR (when defined), the working
// folder, or the executable's folder or one of its parents; empty when none is found.
std::filesystem::path find_default_base_model(const std::filesystem::path& executable);

}  // namespace dro::world
