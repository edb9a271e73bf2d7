// The renderer: determinism, what a nuisance changes, and speed (printed, never asserted).
#include "dro/world/renderer.h"

#include <chrono>

#include "dro/world/geometry.h"
#include "test_util.h"

namespace dro::world {
namespace {

TEST(WorldRenderer, SameSeedSameBytesOtherSeedOtherImage) {
  const Prompt p = Prompt::parse("a large green triangle on a light background, top");
  auto draw = [&](uint64_t seed) {
    Rng rng = Rng::derive(seed, {42});
    return render(p, sample_nuisance(rng));
  };
  const io::Image a = draw(7), b = draw(7), c = draw(8);
  EXPECT_EQ(a.width, 32);
  EXPECT_EQ(a.height, 32);
  EXPECT_EQ(a.channels, 3);
  EXPECT_EQ(a, b);
  EXPECT_EQ(io::encode_png(a), io::encode_png(b));
  EXPECT_NE(a, c);
  EXPECT_EQ(render(p, Nuisance{}, 48).width, 48);
}

TEST(WorldRenderer, RngStreamsAreStableAcrossBuilds) {
  // Pinned values: a change here changes every file the world writes for a given seed.
  Rng rng(0);
  EXPECT_EQ(rng.next_u64(), 0x99ec5f36cb75f2b4ULL);
  Rng d = Rng::derive(1, {2, 3});
  const double u = d.uniform();
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
  EXPECT_EQ(Rng::derive(1, {2, 3}).next_u64(), Rng::derive(1, {2, 3}).next_u64());
  // And one render, hashed (FNV-1a over the pixels).
  Rng n = Rng::derive(5, {1});
  const io::Image im = render(Prompt::from_index(123), sample_nuisance(n));
  uint64_t h = 1469598103934665603ULL;
  for (uint8_t b : im.pixels) h = (h ^ b) * 1099511628211ULL;
  EXPECT_EQ(h, 0x4430b7d2e82b32f7ULL);
  EXPECT_NE(Rng::derive(1, {2, 3}).next_u64(), Rng::derive(1, {3, 2}).next_u64());
  // below() is uniform enough for shuffles: each of 5 values within 10% of n / 5.
  Rng r(9);
  int counts[5] = {0};
  for (int i = 0; i < 50000; ++i) ++counts[r.below(5)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 1000);
  double s = 0, ss = 0;
  for (int i = 0; i < 50000; ++i) {
    const double z = r.normal();
    s += z;
    ss += z * z;
  }
  EXPECT_NEAR(s / 50000, 0.0, 0.03);
  EXPECT_NEAR(ss / 50000, 1.0, 0.03);
}

TEST(WorldRenderer, ShapeAreasMatchTheirFactors) {
  // Monte-Carlo area of each signed-distance shape against area_factor (r = 1).
  for (Shape s : kShapes) {
    const int n = 600;
    double inside = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        inside += signed_distance(s, (i + 0.5) / n * 3 - 1.5, (j + 0.5) / n * 3 - 1.5, 1.0) < 0;
    EXPECT_NEAR(inside / (n * n) * 9.0, area_factor(s), 0.02) << name(s);
  }
  // The triangle's apex is up (negative y) and its centroid is the origin.
  EXPECT_LT(signed_distance(Shape::kTriangle, 0.0, -0.95, 1.0), 0.0);
  EXPECT_GT(signed_distance(Shape::kTriangle, 0.0, 0.55, 1.0), 0.0);
}

TEST(WorldRenderer, NuisanceMovesWhatItSays) {
  const Prompt p = Prompt::parse("a large blue circle on a dark background, center");
  Nuisance n;
  n.texture = 0.0;
  const io::Image base = render(p, n);
  // Background grey at a corner, object colour at the centre.
  const double grey = background_range(Background::kDark).at(n.background);
  EXPECT_NEAR(base.at(0, 0, 0), grey * 255, 1.0);
  EXPECT_GT(base.at(16, 16, 2), base.at(16, 16, 0));  // blue dominates
  Nuisance moved = n;
  moved.jitter_x = kPositionJitter;
  const io::Image shifted = render(p, moved);
  // The object moved right: the left edge pixel lost coverage, the right one gained it.
  int left_base = 0, left_shift = 0;
  for (int y = 0; y < 32; ++y) left_base += base.at(y, 9, 2), left_shift += shifted.at(y, 9, 2);
  EXPECT_LT(left_shift, left_base);
  Nuisance outlined = n;
  outlined.outline = true;
  const io::Image o = render(p, outlined);
  EXPECT_LT(o.at(16, 16 + 7, 2), base.at(16, 16 + 7, 2));  // dark rim near the boundary
  EXPECT_EQ(o.at(16, 16, 2), base.at(16, 16, 2));          // same fill inside
}

TEST(WorldRenderer, ThousandsOfRendersPerSecond) {
  Rng rng(3);
  std::vector<std::pair<Prompt, Nuisance>> jobs;
  for (int i = 0; i < 2000; ++i)
    jobs.emplace_back(Prompt::from_index(static_cast<int>(rng.below(kPromptCount))),
                      sample_nuisance(rng));
  const auto t0 = std::chrono::steady_clock::now();
  size_t checksum = 0;
  for (const auto& [p, n] : jobs) checksum += render(p, n).pixels[500];
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ world    ] " << static_cast<int>(jobs.size() / s)
            << " renders/s at 32x32 (checksum " << checksum << ")\n";
}

}  // namespace
}  // namespace dro::world
