// Simulated users: softmax choice probabilities, sampled frequencies that follow them, and
// sessions that are reproducible and keep better images more often.
#include "dro/world/feedback.h"

#include <cmath>
#include <numeric>

#include "dro/core/error.h"
#include "test_util.h"

namespace dro::world {
namespace {

TEST(WorldFeedback, ChoiceProbabilitiesAreTheSoftmax) {
  const std::vector<double> scores = {2.0, 5.0, 4.0, 0.5};
  const auto p = choice_probabilities(scores, 1.5);
  double z = 0;
  for (double s : scores) z += std::exp(s / 1.5);
  for (size_t i = 0; i < scores.size(); ++i)
    EXPECT_NEAR(p[i], std::exp(scores[i] / 1.5) / z, 1e-12);
  // Bradley-Terry between two images: p(a over b) = sigmoid((a - b) / T).
  const auto two = choice_probabilities({7.0, 6.0}, 1.0);
  EXPECT_NEAR(two[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-12);
  // Large scores do not overflow; zero temperature keeps the best.
  const auto big = choice_probabilities({1000.0, 999.0}, 0.01);
  EXPECT_NEAR(big[0], 1.0, 1e-12);
  EXPECT_EQ(choice_probabilities(scores, 0.0), (std::vector<double>{0, 1, 0, 0}));
}

TEST(WorldFeedback, SampledChoicesFollowTheSoftmax) {
  const std::vector<double> scores = {3.0, 6.0, 5.0, 4.5};
  const auto p = choice_probabilities(scores, 1.0);
  const int n = 40000;
  std::vector<int> counts(scores.size(), 0);
  Rng rng(5);
  for (int i = 0; i < n; ++i) ++counts[sample_choice(p, rng)];
  double chi2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = n * p[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    // Generous per-cell bound: 5 standard deviations of a binomial count.
    EXPECT_NEAR(counts[i], expected, 5.0 * std::sqrt(n * p[i] * (1 - p[i]))) << "choice " << i;
  }
  // 3 degrees of freedom: P(chi2 > 25) < 2e-5.
  EXPECT_LT(chi2, 25.0);
}

TEST(WorldFeedback, SessionsAreReproducibleAndPreferBetterImages) {
  FeedbackConfig config;
  const Prompt p = Prompt::parse("a small yellow triangle on a dark background, bottom");
  const Session a = simulate_session(p, config, 3, 17), b = simulate_session(p, config, 3, 17);
  ASSERT_EQ(a.images.size(), 4u);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.kept, b.kept);
  EXPECT_NE(simulate_session(p, config, 3, 18).images, a.images);

  // Over many sessions the kept image averages well above the shown ones, and its rank among
  // the K follows the softmax: the best image is kept as often as its probability says.
  double shown = 0, kept = 0, p_best = 0;
  int best_kept = 0;
  const int n = 600;
  for (int i = 0; i < n; ++i) {
    const Session s = simulate_session(Prompt::from_index(i % kPromptCount), config, 4, i);
    shown += std::accumulate(s.scores.begin(), s.scores.end(), 0.0) / s.scores.size();
    kept += s.scores[s.kept];
    const size_t best = std::max_element(s.scores.begin(), s.scores.end()) - s.scores.begin();
    best_kept += static_cast<int>(best) == s.kept;
    p_best += choice_probabilities(s.scores, config.temperature)[best];
  }
  std::cout << "[ world    ] K=4, T=1: mean hidden score shown " << shown / n << ", kept "
            << kept / n << "; best kept " << best_kept << " times, expected " << p_best << "\n";
  EXPECT_GT(kept / n, shown / n + 1.0);
  EXPECT_NEAR(best_kept, p_best, 5.0 * std::sqrt(p_best));
  FeedbackConfig one = config;
  one.choices = 1;
  EXPECT_THROW(simulate_session(p, one, 1, 1), UsageError);
}

}  // namespace
}  // namespace dro::world
