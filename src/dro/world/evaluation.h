// Scoring generated images in the preference world: per image the hidden preference and prompt
// fidelity, per prompt the diversity across seeds, and summaries with 95% confidence intervals
// over prompts. Reads the official output layout (DIR/<idx>/<seed>.png + caption.txt) that
// `dro sample` writes, so any model's images can be scored.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "dro/io/image.h"
#include "dro/io/json.h"
#include "dro/world/prompt.h"

namespace dro::world {

struct PromptImages {
  std::string id;  // folder name
  Prompt prompt;
  std::vector<std::string> names;  // file stems (seeds), sorted
  std::vector<io::Image> images;
};

// Reads every DIR/<idx>/ holding caption.txt and at least one PNG, in folder-name order.
// UsageError when the folder has none; a caption that is not a world prompt is a UsageError too.
std::vector<PromptImages> read_image_folder(const std::filesystem::path& dir);

struct PromptScore {
  std::string id;
  Prompt prompt;
  std::vector<double> preference, fidelity;  // per image
  double mean_preference = 0, mean_fidelity = 0;
  double pixel_diversity = 0, feature_diversity = 0;  // across the prompt's images
  // Fraction of the images showing each caption attribute (kAttributeNames order), and the mean
  // of each hidden quality term (kQualityTermNames order): where a change in the scores comes from.
  std::array<double, 5> attribute_rate{};
  std::array<double, 5> quality_terms{};
};

inline constexpr std::array<const char*, 5> kAttributeNames = {"colour", "shape", "size", "position", "background"};
inline constexpr std::array<const char*, 5> kQualityTermNames = {"size", "saturation", "centring", "outline", "quality"};

PromptScore score_prompt(const PromptImages& p);
std::vector<PromptScore> score_prompts(const std::vector<PromptImages>& prompts);

// Mean of per-prompt values with a normal-approximation 95% interval (mean +- 1.96 s / sqrt(n)).
struct Interval {
  double mean = 0, ci_low = 0, ci_high = 0;
  io::OrderedJson to_json() const;
};
Interval mean_interval(const std::vector<double>& values);

struct ModelSummary {
  size_t prompts = 0, images = 0;
  Interval preference, fidelity, diversity, feature_diversity;
  // Means over prompts of PromptScore::attribute_rate and ::quality_terms.
  std::array<double, 5> attribute_rate{}, quality_terms{};
  // Fraction of prompts where this model's mean preference beats the baseline's (ties count
  // one half); negative when there is no baseline.
  double win_rate_vs_base = -1;
  // Paired per-prompt differences from the baseline (this model minus base, same prompts and
  // seeds), with their 95% intervals: tighter than comparing the two models' own intervals.
  bool has_base = false;
  Interval preference_gain_vs_base, fidelity_change_vs_base;
  io::OrderedJson to_json() const;
};

// Summary of one model; with `base` (same prompts in the same order), also the win rate.
ModelSummary summarise(const std::vector<PromptScore>& scores, const std::vector<PromptScore>* base = nullptr);

}  // namespace dro::world
