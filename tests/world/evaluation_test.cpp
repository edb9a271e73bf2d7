// Scoring generated images: per-prompt means, the per-attribute breakdown of fidelity and the
// hidden quality terms, and the paired comparison with a base model.
#include "dro/world/evaluation.h"

#include "dro/world/measures.h"
#include "dro/world/preference.h"
#include "dro/world/renderer.h"
#include "test_util.h"
#include "world/world_test_helpers.h"

namespace dro::world {
namespace {

Prompt prompt_with(Colour c, Background b) {
  Prompt p;
  p.shape = Shape::kSquare;
  p.colour = c;
  p.size = Size::kLarge;
  p.position = Position::kLeft;
  p.background = b;
  return p;
}

TEST(WorldEvaluation, BreakdownCountsEachAttributeAndAveragesTheQualityTerms) {
  const Prompt asked = prompt_with(Colour::kRed, Background::kDark);
  const Prompt other = prompt_with(Colour::kBlue, Background::kLight);  // same shape, size, position
  Nuisance outlined = plain_nuisance();
  outlined.outline = true;
  PromptImages imgs;
  imgs.prompt = asked;
  imgs.images = {render(asked, outlined), render(other, plain_nuisance())};
  imgs.names = {"0", "1"};
  const PromptScore s = score_prompt(imgs);

  EXPECT_DOUBLE_EQ(s.attribute_rate[0], 0.5);  // colour: only the first image is red
  EXPECT_DOUBLE_EQ(s.attribute_rate[1], 1.0);  // shape
  EXPECT_DOUBLE_EQ(s.attribute_rate[2], 1.0);  // size
  EXPECT_DOUBLE_EQ(s.attribute_rate[3], 1.0);  // position
  EXPECT_DOUBLE_EQ(s.attribute_rate[4], 0.5);  // background
  EXPECT_DOUBLE_EQ(s.mean_fidelity, (1.0 + 0.6) / 2);

  const PreferenceTerms t0 = preference_terms(analyse(imgs.images[0]), asked);
  const PreferenceTerms t1 = preference_terms(analyse(imgs.images[1]), asked);
  EXPECT_NEAR(s.quality_terms[3], (t0.outline + t1.outline) / 2, 1e-12);
  EXPECT_GT(t0.outline, t1.outline + 0.5);  // the outline term tells the two apart
  EXPECT_NEAR(s.quality_terms[4], (t0.quality + t1.quality) / 2, 1e-12);
  EXPECT_NEAR(s.mean_preference, (t0.score + t1.score) / 2, 1e-12);

  // Model summaries average the breakdown over prompts and compare paired with a base.
  PromptImages good = imgs;
  good.images = {render(asked, outlined), render(asked, outlined)};
  const std::vector<PromptScore> base = {s, score_prompt(imgs)};
  const std::vector<PromptScore> better = {score_prompt(good), score_prompt(good)};
  const ModelSummary m = summarise(better, &base);
  EXPECT_DOUBLE_EQ(m.attribute_rate[0], 1.0);
  EXPECT_DOUBLE_EQ(summarise(base).attribute_rate[4], 0.5);
  EXPECT_DOUBLE_EQ(m.win_rate_vs_base, 1.0);
  EXPECT_NEAR(m.preference_gain_vs_base.mean, better[0].mean_preference - s.mean_preference, 1e-12);
  EXPECT_NEAR(m.fidelity_change_vs_base.mean, 0.2, 1e-12);
  const auto j = m.to_json();
  EXPECT_DOUBLE_EQ(j["attribute_rate"]["background"].get<double>(), 1.0);
  EXPECT_NEAR(j["quality_terms"]["outline"].get<double>(), t0.outline, 1e-12);
}

}  // namespace
}  // namespace dro::world
