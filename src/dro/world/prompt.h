// A prompt of the preference world: the caption-visible attributes, their caption text, parsing
// the text back, the enumeration of all combinations and the seeded train / held-out split.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dro/world/attributes.h"

namespace dro::world {

struct Prompt {
  Shape shape = Shape::kCircle;
  Colour colour = Colour::kRed;
  Size size = Size::kSmall;
  Position position = Position::kCenter;
  Background background = Background::kDark;

  // "a large red circle on a dark background, left"
  std::string caption() const;

  // Inverse of caption(); surrounding white space and case are ignored. UsageError quoting the
  // text and naming the part that did not parse.
  static Prompt parse(const std::string& caption);

  // Mixed-radix index in [0, kPromptCount): a stable id used for file names and RNG streams.
  int index() const;
  static Prompt from_index(int index);

  bool operator==(const Prompt& o) const { return index() == o.index(); }
  bool operator!=(const Prompt& o) const { return !(*this == o); }
  bool operator<(const Prompt& o) const { return index() < o.index(); }
};

inline constexpr int kPromptCount = static_cast<int>(
    kShapes.size() * kColours.size() * kSizes.size() * kPositions.size() * kBackgrounds.size());

// Every combination, in index order.
std::vector<Prompt> all_prompts();

struct PromptSplit {
  std::vector<Prompt> train;    // index order
  std::vector<Prompt> heldout;  // index order; never in train
};

// Draws `heldout_count` combinations for evaluation from `seed`; the rest are train prompts.
// Every single attribute value still occurs in train (only its combination is new), so held-out
// prompts test composition, not unseen words. UsageError when heldout_count leaves no train set.
PromptSplit split_prompts(uint64_t seed, int heldout_count);

// One caption a line (UTF-8, '\n'); reading parses every line, blank lines are skipped, and an
// unparsable line is a UsageError naming the file and the line number.
void write_prompt_list(const std::filesystem::path& path, const std::vector<Prompt>& prompts);
std::vector<Prompt> read_prompt_list(const std::filesystem::path& path);

}  // namespace dro::world
