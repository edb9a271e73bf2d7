// Prompts: caption text, parsing back, indices, and the seeded train / held-out split.
#include "dro/world/prompt.h"

#include <set>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"

namespace dro::world {
namespace {

TEST(WorldPrompt, CaptionText) {
  Prompt p;
  p.shape = Shape::kCircle;
  p.colour = Colour::kRed;
  p.size = Size::kLarge;
  p.position = Position::kLeft;
  p.background = Background::kDark;
  EXPECT_EQ(p.caption(), "a large red circle on a dark background, left");
}

TEST(WorldPrompt, EveryCaptionParsesBackAndIndicesRoundTrip) {
  const auto all = all_prompts();
  ASSERT_EQ(all.size(), static_cast<size_t>(kPromptCount));
  EXPECT_EQ(kPromptCount, 480);
  std::set<std::string> captions;
  for (int i = 0; i < kPromptCount; ++i) {
    const Prompt& p = all[i];
    EXPECT_EQ(p.index(), i);
    EXPECT_EQ(Prompt::from_index(i), p);
    EXPECT_EQ(Prompt::parse(p.caption()), p) << p.caption();
    captions.insert(p.caption());
  }
  EXPECT_EQ(captions.size(), all.size());
  // Case, surrounding and repeated white space, a trailing newline are tolerated.
  EXPECT_EQ(Prompt::parse("  A Small BLUE diamond  on a light background,center\n").caption(),
            "a small blue diamond on a light background, center");
}

TEST(WorldPrompt, ParseErrorsNameThePart) {
  for (const std::string bad : {"", "a red circle", "a huge red circle on a dark background, left",
                                "a large red blob on a dark background, left",
                                "a large red circle on a grey background, left",
                                "a large red circle on a dark background, middle",
                                "a large red circle on a dark background left"}) {
    try {
      Prompt::parse(bad);
      FAIL() << "parsed: " << bad;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("caption"), std::string::npos) << e.what();
    }
  }
  try {
    Prompt::parse("a large red blob on a dark background, left");
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'blob'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Prompt::from_index(kPromptCount), UsageError);
}

TEST(WorldPrompt, HeldOutSplitIsDisjointCompleteAndSeeded) {
  const PromptSplit a = split_prompts(1, 48);
  ASSERT_EQ(a.heldout.size(), 48u);
  ASSERT_EQ(a.train.size(), static_cast<size_t>(kPromptCount - 48));
  std::set<int> train, held;
  for (const auto& p : a.train) train.insert(p.index());
  for (const auto& p : a.heldout) held.insert(p.index());
  EXPECT_EQ(train.size() + held.size(), static_cast<size_t>(kPromptCount));
  for (int i : held) EXPECT_EQ(train.count(i), 0u) << Prompt::from_index(i).caption();
  // Every word still appears in a train caption.
  std::set<std::string> words;
  for (const auto& p : a.train)
    for (auto w :
         {name(p.shape), name(p.colour), name(p.size), name(p.position), name(p.background)})
      words.insert(std::string(w));
  EXPECT_EQ(words.size(), kShapes.size() + kColours.size() + kSizes.size() + kPositions.size() +
                              kBackgrounds.size());
  // Same seed, same split; another seed, other held-out prompts.
  const PromptSplit again = split_prompts(1, 48);
  EXPECT_EQ(again.heldout, a.heldout);
  EXPECT_NE(split_prompts(2, 48).heldout, a.heldout);
  EXPECT_TRUE(split_prompts(3, 0).heldout.empty());
  EXPECT_THROW(split_prompts(1, kPromptCount), UsageError);
}

TEST(WorldPrompt, PromptListFileRoundTrip) {
  test::TempDir dir;
  const auto prompts = split_prompts(5, 10).heldout;
  write_prompt_list(dir / "p.txt", prompts);
  EXPECT_EQ(read_prompt_list(dir / "p.txt"), prompts);
  io::write_file_atomically(dir / "bad.txt", prompts[0].caption() + "\n\nnot a caption\n");
  try {
    read_prompt_list(dir / "bad.txt");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dro::world
