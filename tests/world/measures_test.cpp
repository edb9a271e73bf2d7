// Pixel measures: recogniser accuracy on clean renders, nuisance read-back, diversity.
#include "dro/world/measures.h"

#include <cmath>

#include "dro/world/renderer.h"
#include "test_util.h"

namespace dro::world {
namespace {

TEST(WorldMeasures, RecognisersAreAccurateOnCleanRenders) {
  const int n = 3000;
  int colour = 0, shape = 0, size = 0, position = 0, background = 0;
  double sat_err = 0, centre_err = 0, extent_err = 0;
  Rng rng(11);
  for (int i = 0; i < n; ++i) {
    const Prompt p = Prompt::from_index(static_cast<int>(rng.below(kPromptCount)));
    const Nuisance nu = sample_nuisance(rng);
    const Analysis a = analyse(render(p, nu));
    ASSERT_TRUE(a.found) << p.caption();
    const Fidelity f = fidelity(a, p);
    colour += f.colour, shape += f.shape, size += f.size, position += f.position,
        background += f.background;
    sat_err += std::fabs(a.saturation - nu.saturation);
    const Point q = anchor(p.position);
    centre_err += std::hypot(a.cx - q.x - nu.jitter_x, a.cy - q.y - nu.jitter_y) * 32;
    extent_err += std::fabs(a.extent(p.shape) - extent_range(p.size).at(nu.size)) * 32;
  }
  std::cout << "[ world    ] recognised on " << n << " clean 32x32 renders: colour "
            << double(colour) / n << ", shape " << double(shape) / n << ", size "
            << double(size) / n << ", position " << double(position) / n << ", background "
            << double(background) / n << "; mean |error|: saturation " << sat_err / n << ", centre "
            << centre_err / n << " px, extent " << extent_err / n << " px\n";
  EXPECT_GT(colour, 0.95 * n);
  EXPECT_GT(shape, 0.95 * n);
  EXPECT_GT(size, 0.95 * n);
  EXPECT_GT(position, 0.95 * n);
  EXPECT_GT(background, 0.95 * n);
  EXPECT_LT(sat_err / n, 0.02);
  EXPECT_LT(centre_err / n, 0.25);
  EXPECT_LT(extent_err / n, 0.25);
}

TEST(WorldMeasures, RecognisersWorkAt64Pixels) {
  Rng rng(12);
  int correct = 0;
  const int n = 300;
  for (int i = 0; i < n; ++i) {
    const Prompt p = Prompt::from_index(static_cast<int>(rng.below(kPromptCount)));
    correct += fidelity(render(p, sample_nuisance(rng), 64), p).score() == 1.0;
  }
  EXPECT_GT(correct, 0.95 * n);
}

TEST(WorldMeasures, OutlineEvidenceSeparatesOutlinedRenders) {
  Rng rng(13);
  double with = 0, without = 0, worst_with = 1, worst_without = 0;
  for (int i = 0; i < 400; ++i) {
    const Prompt p = Prompt::from_index(i % kPromptCount);
    Nuisance nu = sample_nuisance(rng);
    nu.outline = i % 2;
    const double e = analyse(render(p, nu)).outline;
    if (nu.outline)
      with += e, worst_with = std::min(worst_with, e);
    else
      without += e, worst_without = std::max(worst_without, e);
  }
  EXPECT_GT(with / 200, 0.9);
  EXPECT_LT(without / 200, 0.05);
  EXPECT_GT(worst_with, worst_without)
      << "some outlined render reads less outlined than a plain one";
}

TEST(WorldMeasures, BlankImageHasNoObject) {
  io::Image blank(32, 32, 3);
  std::fill(blank.pixels.begin(), blank.pixels.end(), 200);
  const Analysis a = analyse(blank);
  EXPECT_FALSE(a.found);
  EXPECT_EQ(fidelity(a, Prompt{}).score(), 0.0);
}

TEST(WorldMeasures, DiversityShowsCollapse) {
  const Prompt p = Prompt::parse("a small purple square on a light background, right");
  std::vector<io::Image> varied, collapsed;
  std::vector<Analysis> varied_a, collapsed_a;
  Rng rng(14);
  const Nuisance fixed = sample_nuisance(rng);
  for (int i = 0; i < 12; ++i) {
    varied.push_back(render(p, sample_nuisance(rng)));
    collapsed.push_back(render(p, fixed));
    varied_a.push_back(analyse(varied.back()));
    collapsed_a.push_back(analyse(collapsed.back()));
  }
  EXPECT_EQ(pixel_diversity(collapsed), 0.0);
  EXPECT_EQ(feature_diversity(collapsed_a), 0.0);
  EXPECT_GT(pixel_diversity(varied), 0.03);
  EXPECT_GT(feature_diversity(varied_a), 0.5);
  EXPECT_EQ(pixel_diversity({varied[0]}), 0.0);
}

}  // namespace
}  // namespace dro::world
