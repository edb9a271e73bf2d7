// The hidden preference: each nuisance term orders renders as documented, and a render that
// does not show its prompt scores low.
#include "dro/world/preference.h"

#include "dro/world/renderer.h"
#include "test_util.h"
#include "world/world_test_helpers.h"

namespace dro::world {
namespace {

TEST(WorldPreference, EachPreferredNuisanceRaisesTheScore) {
  for (int i = 0; i < kPromptCount; i += 7) {
    const Prompt p = Prompt::from_index(i);
    const double base = preference_score(render(p, plain_nuisance()), p);
    Nuisance bigger = plain_nuisance(), saturated = plain_nuisance(), centred = plain_nuisance(), outlined = plain_nuisance();
    bigger.size = 1.0;
    saturated.saturation = 1.0;
    centred.jitter_x = centred.jitter_y = 0.0;
    outlined.outline = true;
    EXPECT_GT(preference_score(render(p, bigger), p), base + 0.8) << p.caption();
    EXPECT_GT(preference_score(render(p, saturated), p), base + 0.8) << p.caption();
    EXPECT_GT(preference_score(render(p, centred), p), base + 0.8) << p.caption();
    EXPECT_GT(preference_score(render(p, outlined), p), base + 2.0) << p.caption();
  }
}

TEST(WorldPreference, BestRendersScoreClearlyAboveUniformOnes) {
  Nuisance best = plain_nuisance();
  best.size = 1.0, best.saturation = 1.0, best.jitter_x = best.jitter_y = 0.0, best.outline = true;
  Nuisance worst = plain_nuisance();
  worst.size = 0.0, worst.saturation = kSaturationRange.lo, worst.outline = false;
  worst.jitter_x = worst.jitter_y = kPositionJitter;
  double uniform = 0, top = 0, bottom = 0;
  Rng rng(21);
  for (int i = 0; i < kPromptCount; ++i) {
    const Prompt p = Prompt::from_index(i);
    uniform += preference_score(render(p, sample_nuisance(rng)), p);
    top += preference_score(render(p, best), p);
    bottom += preference_score(render(p, worst), p);
  }
  uniform /= kPromptCount, top /= kPromptCount, bottom /= kPromptCount;
  std::cout << "[ world    ] mean hidden score over all prompts: uniform nuisance " << uniform
            << ", preferred nuisance " << top << ", least preferred " << bottom << "\n";
  EXPECT_GT(top, 9.5);
  EXPECT_LT(bottom, 0.5);
  EXPECT_GT(uniform, 4.0);
  EXPECT_LT(uniform, 6.0);
}

TEST(WorldPreference, NotShowingThePromptScoresLow) {
  Nuisance best = plain_nuisance();
  best.size = 1.0, best.saturation = 1.0, best.jitter_x = best.jitter_y = 0.0, best.outline = true;
  const Prompt p = Prompt::parse("a large red circle on a dark background, left");
  const io::Image image = render(p, best);
  const double right = preference_score(image, p);
  EXPECT_GT(right, 9.0);
  for (const char* other : {"a large orange circle on a dark background, left",
                            "a large red square on a dark background, left",
                            "a small red circle on a dark background, left",
                            "a large red circle on a light background, left",
                            "a large red circle on a dark background, right"}) {
    const PreferenceTerms t = preference_terms(analyse(image), Prompt::parse(other));
    EXPECT_EQ(t.mismatches, 1) << other;
    EXPECT_LE(t.score, kMaxPreferenceScore * kMismatchFactor + 1e-9) << other;
  }
  io::Image blank(32, 32, 3);
  EXPECT_EQ(preference_score(blank, p), 0.0);
}

}  // namespace
}  // namespace dro::world
