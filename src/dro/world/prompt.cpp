#include "dro/world/prompt.h"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/world/random.h"

namespace dro::world {

namespace {

constexpr int kNShape = kShapes.size(), kNColour = kColours.size(), kNSize = kSizes.size(),
              kNPosition = kPositions.size(), kNBackground = kBackgrounds.size();

// Tag of the split's random stream (see Rng::derive).
constexpr uint64_t kSplitStream = 0x5b1177;

std::string normalise(const std::string& text) {
  std::string out;
  bool space = false;
  for (unsigned char ch : text) {
    if (std::isspace(ch)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(ch));
  }
  return out;
}

template <typename T>
T expect(const std::optional<T>& v, const std::string& word, const char* what,
         const std::string& caption) {
  if (!v)
    throw UsageError(cat("[world] caption \"", caption, "\": '", word, "' is not a known ", what));
  return *v;
}

}  // namespace

std::string Prompt::caption() const {
  return cat("a ", name(size), " ", name(colour), " ", name(shape), " on a ", name(background),
             " background, ", name(position));
}

Prompt Prompt::parse(const std::string& text) {
  // a <size> <colour> <shape> on a <background> background, <position>
  const std::string s = normalise(text);
  std::vector<std::string> words;
  {
    std::string w;
    for (char ch : s) {
      if (ch == ' ' || ch == ',') {
        if (!w.empty()) words.push_back(w);
        w.clear();
        if (ch == ',') words.push_back(",");
      } else {
        w += ch;
      }
    }
    if (!w.empty()) words.push_back(w);
  }
  if (words.size() != 10 || words[0] != "a" || words[4] != "on" || words[5] != "a" ||
      words[7] != "background" || words[8] != ",")
    throw UsageError(cat("[world] caption \"", text,
                         "\" does not read 'a <size> <colour> <shape> on a <background> "
                         "background, <position>'"));
  Prompt p;
  p.size = expect(parse_size(words[1]), words[1], "size (small, large)", text);
  p.colour = expect(parse_colour(words[2]), words[2], "colour", text);
  p.shape = expect(parse_shape(words[3]), words[3], "shape", text);
  p.background = expect(parse_background(words[6]), words[6], "background (dark, light)", text);
  p.position = expect(parse_position(words[9]), words[9], "position", text);
  return p;
}

int Prompt::index() const {
  int i = static_cast<int>(shape);
  i = i * kNColour + static_cast<int>(colour);
  i = i * kNSize + static_cast<int>(size);
  i = i * kNPosition + static_cast<int>(position);
  i = i * kNBackground + static_cast<int>(background);
  return i;
}

Prompt Prompt::from_index(int i) {
  if (i < 0 || i >= kPromptCount)
    throw UsageError(cat("[world] prompt index ", i, " is outside [0, ", kPromptCount, ")"));
  Prompt p;
  p.background = kBackgrounds[i % kNBackground];
  i /= kNBackground;
  p.position = kPositions[i % kNPosition];
  i /= kNPosition;
  p.size = kSizes[i % kNSize];
  i /= kNSize;
  p.colour = kColours[i % kNColour];
  i /= kNColour;
  p.shape = kShapes[i];
  return p;
}

std::vector<Prompt> all_prompts() {
  std::vector<Prompt> out;
  out.reserve(kPromptCount);
  for (int i = 0; i < kPromptCount; ++i) out.push_back(Prompt::from_index(i));
  return out;
}

PromptSplit split_prompts(uint64_t seed, int heldout_count) {
  if (heldout_count < 0 || heldout_count > kPromptCount / 2)
    throw UsageError(cat("[world] held-out prompt count must be in [0, ", kPromptCount / 2,
                         "], got ", heldout_count));
  // A seeded Fisher-Yates shuffle; redraw (rarely needed) until every attribute value remains in
  // train, so a held-out prompt never asks for a word the expert set never shows.
  Rng rng = Rng::derive(seed, {kSplitStream});
  for (;;) {
    std::vector<int> order(kPromptCount);
    std::iota(order.begin(), order.end(), 0);
    for (int i = kPromptCount - 1; i > 0; --i)
      std::swap(order[i], order[rng.below(static_cast<uint64_t>(i) + 1)]);
    PromptSplit split;
    std::vector<bool> held(kPromptCount, false);
    for (int i = 0; i < heldout_count; ++i) held[order[i]] = true;
    std::array<int, 16> seen_shape{}, seen_colour{}, seen_size{}, seen_position{}, seen_bg{};
    for (int i = 0; i < kPromptCount; ++i) {
      const Prompt p = Prompt::from_index(i);
      if (held[i]) {
        split.heldout.push_back(p);
      } else {
        split.train.push_back(p);
        ++seen_shape[static_cast<int>(p.shape)];
        ++seen_colour[static_cast<int>(p.colour)];
        ++seen_size[static_cast<int>(p.size)];
        ++seen_position[static_cast<int>(p.position)];
        ++seen_bg[static_cast<int>(p.background)];
      }
    }
    auto all_seen = [](const std::array<int, 16>& seen, int n) {
      return std::all_of(seen.begin(), seen.begin() + n, [](int c) { return c > 0; });
    };
    if (all_seen(seen_shape, kNShape) && all_seen(seen_colour, kNColour) &&
        all_seen(seen_size, kNSize) && all_seen(seen_position, kNPosition) &&
        all_seen(seen_bg, kNBackground))
      return split;
  }
}

void write_prompt_list(const std::filesystem::path& path, const std::vector<Prompt>& prompts) {
  std::string text;
  for (const Prompt& p : prompts) text += p.caption() + "\n";
  io::write_file_atomically(path, text);
}

std::vector<Prompt> read_prompt_list(const std::filesystem::path& path) {
  std::istringstream in(io::read_file(path));
  std::vector<Prompt> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (normalise(line).empty()) continue;
    try {
      out.push_back(Prompt::parse(line));
    } catch (const UsageError& e) {
      throw UsageError(cat("[world] ", path.string(), " line ", n, ": ", e.what()));
    }
  }
  return out;
}

}  // namespace dro::world
