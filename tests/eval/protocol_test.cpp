// The evaluation protocol on hand-made score tables with known answers.
#include <gtest/gtest.h>

#include <cmath>

#include "dro/core/error.h"
#include "dro/eval/protocol.h"

namespace dro::eval {
namespace {

PromptScores prompt(const std::string& id, const std::string& caption, const std::vector<double>& pick,
                    const std::vector<double>& other) {
  PromptScores p{id, caption, {}};
  for (size_t i = 0; i < pick.size(); ++i)
    p.images.push_back({id + "/" + std::to_string(i) + ".png", std::to_string(i),
                        {{"pickscore", pick[i]}, {"aesthetic", other[i]}}});
  return p;
}

TEST(EvalProtocol, SignTestExactValues) {
  // n = 10, k = 1: 2 (C(10,0) + C(10,1)) / 2^10.
  EXPECT_NEAR(sign_test_p_value(9, 1), 2.0 * 11 / 1024, 1e-15);
  EXPECT_NEAR(sign_test_p_value(1, 9), 2.0 * 11 / 1024, 1e-15);
  EXPECT_DOUBLE_EQ(sign_test_p_value(5, 5), 1.0);
  EXPECT_DOUBLE_EQ(sign_test_p_value(0, 0), 1.0);
  EXPECT_NEAR(sign_test_p_value(3, 0), 0.25, 1e-15);  // 2 / 8
  // Table 1's 87.80% = 439 of 500: far beyond chance, and finite in log space.
  const double p = sign_test_p_value(439, 61);
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 1e-60);
}

TEST(EvalProtocol, WinRateCountsTiesHalf) {
  ProtocolOptions o;
  const auto r = win_rate({3, 2, 1, 1}, {1, 2, 3, 0}, o);
  EXPECT_EQ(r.wins, 2);
  EXPECT_EQ(r.ties, 1);
  EXPECT_EQ(r.losses, 1);
  EXPECT_EQ(r.units, 4);
  EXPECT_DOUBLE_EQ(r.rate, 0.625);
  EXPECT_DOUBLE_EQ(r.p_value, 1.0);  // 2 wins against 1 loss
  EXPECT_LE(r.ci_low, r.rate);
  EXPECT_GE(r.ci_high, r.rate);
  EXPECT_GE(r.ci_low, 0.0);
  EXPECT_LE(r.ci_high, 1.0);
  // Deterministic for the same seed; all wins give a degenerate interval.
  const auto again = win_rate({3, 2, 1, 1}, {1, 2, 3, 0}, o);
  EXPECT_EQ(again.ci_low, r.ci_low);
  EXPECT_EQ(again.ci_high, r.ci_high);
  const auto all = win_rate({2, 2, 2}, {1, 1, 1}, o);
  EXPECT_DOUBLE_EQ(all.rate, 1.0);
  EXPECT_DOUBLE_EQ(all.ci_low, 1.0);
  EXPECT_DOUBLE_EQ(all.ci_high, 1.0);
}

TEST(EvalProtocol, BootstrapIntervalNarrowsWithMorePrompts) {
  ProtocolOptions o;
  std::vector<double> a, b;
  for (int i = 0; i < 400; ++i) {
    a.push_back(i % 4 == 0 ? 0 : 1);  // wins 3 of 4
    b.push_back(0.5);
  }
  const auto big = win_rate(a, b, o);
  EXPECT_DOUBLE_EQ(big.rate, 0.75);
  // Binomial standard error sqrt(.75 .25 / 400) = 0.0217: the 95% interval is about +-0.042.
  EXPECT_NEAR(big.ci_high - big.ci_low, 2 * 1.96 * std::sqrt(0.75 * 0.25 / 400), 0.02);
  const auto small = win_rate({1, 1, 1, 0}, {0.5, 0.5, 0.5, 0.5}, o);
  EXPECT_GT(small.ci_high - small.ci_low, big.ci_high - big.ci_low);
}

TEST(EvalProtocol, MeanAndPopulationStd) {
  ProtocolOptions o;
  const auto m = mean_std({1, 2, 3, 4}, o);
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_DOUBLE_EQ(m.std, std::sqrt(1.25));
  EXPECT_EQ(m.n, 4);
  EXPECT_LE(m.ci_low, 2.5);
  EXPECT_GE(m.ci_high, 2.5);
  EXPECT_GE(m.ci_low, 1.0);
  EXPECT_LE(m.ci_high, 4.0);
}

TEST(EvalProtocol, MedianImageCarriesItsOtherScores) {
  MethodScores m{"dro", "out/dro", {}};
  m.prompts.push_back(prompt("0", "a cat", {5, 1, 4, 2, 3}, {50, 10, 40, 20, 30}));
  m.prompts.push_back(prompt("1", "a dog", {4, 1, 3, 2}, {40, 10, 30, 20}));  // even: the lower median
  m.prompts.push_back(prompt("2", "a cow", {1, 1, 1}, {7, 8, 9}));             // ties: by seed order
  ProtocolOptions o;
  auto u = representatives(m, o);
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[0].at("pickscore"), 3);
  EXPECT_EQ(u[0].at("aesthetic"), 30);
  EXPECT_EQ(u[1].at("pickscore"), 2);
  EXPECT_EQ(u[1].at("aesthetic"), 20);
  EXPECT_EQ(u[2].at("aesthetic"), 8);
  o.selection = Selection::kMean;
  u = representatives(m, o);
  EXPECT_DOUBLE_EQ(u[0].at("aesthetic"), 30);
  EXPECT_DOUBLE_EQ(u[1].at("pickscore"), 2.5);
  o.selection = Selection::kAll;
  EXPECT_EQ(representatives(m, o).size(), 12u);
  o.selection = Selection::kMedian;
  o.select_by = "hpsv2";
  EXPECT_THROW(representatives(m, o), UsageError);
  EXPECT_THROW(parse_selection("mode"), UsageError);
}

TEST(EvalProtocol, NotComparableNamesTheFirstMismatch) {
  MethodScores a{"base", "out/base", {prompt("0", "a cat", {1, 2}, {1, 2}), prompt("1", "a dog", {1, 2}, {1, 2})}};
  auto expect_error = [](const std::vector<MethodScores>& ms, int64_t n, const std::string& part) {
    try {
      check_comparable(ms, n);
      ADD_FAILURE() << "accepted; expected an error with: " << part;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  auto b = a;
  b.name = "dro";
  EXPECT_NO_THROW(check_comparable({a, b}, 2));
  expect_error({a, b}, 5, "--images-per-prompt is 5");
  auto caption = b;
  caption.prompts[1].caption = "a wolf";
  expect_error({a, caption}, 0, "prompt '1' reads \"a wolf\"");
  auto seed = b;
  seed.prompts[0].images[1].seed = "9";
  expect_error({a, seed}, 0, "seed 9");
  auto fewer = b;
  fewer.prompts.pop_back();
  expect_error({a, fewer}, 0, "has 1 prompts");
}

TEST(EvalProtocol, EvaluateEveryOrderedPair) {
  MethodScores a{"base", "b", {prompt("0", "x", {1, 2, 3}, {5, 5, 5}), prompt("1", "y", {1, 2, 3}, {1, 1, 1}),
                               prompt("2", "z", {1, 2, 3}, {2, 2, 2})}};
  MethodScores d{"dro", "d", {prompt("0", "x", {2, 3, 4}, {6, 6, 6}), prompt("1", "y", {0, 1, 2}, {1, 1, 1}),
                              prompt("2", "z", {2, 3, 4}, {1, 1, 1})}};
  ProtocolOptions o;
  const auto e = evaluate({a, d}, o);
  EXPECT_EQ(e.methods, (std::vector<std::string>{"base", "dro"}));
  EXPECT_EQ(e.metrics, (std::vector<std::string>{"aesthetic", "pickscore"}));
  EXPECT_EQ(e.units, 3);
  // PickScore medians: base 2, 2, 2; dro 3, 1, 3.
  const auto& w = e.win_rates.at("dro").at("base").at("pickscore");
  EXPECT_EQ(w.wins, 2);
  EXPECT_EQ(w.losses, 1);
  EXPECT_NEAR(w.rate, 2.0 / 3, 1e-15);
  EXPECT_NEAR(e.win_rates.at("base").at("dro").at("pickscore").rate, 1.0 / 3, 1e-15);
  // Aesthetic of the median images: base 5, 1, 2; dro 6, 1, 1: one win, one tie, one loss.
  const auto& wa = e.win_rates.at("dro").at("base").at("aesthetic");
  EXPECT_EQ(wa.ties, 1);
  EXPECT_DOUBLE_EQ(wa.rate, 0.5);
  EXPECT_NEAR(e.means.at("dro").at("pickscore").mean, 7.0 / 3, 1e-12);
}

}  // namespace
}  // namespace dro::eval
