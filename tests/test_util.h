// Helpers shared by the tests: fixture paths, temporary folders, tensor comparison.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace dro::test {

// The golden fixtures folder (CMake cache variable DRO_FIXTURES_DIR).
inline std::filesystem::path fixtures() { return DRO_FIXTURES_DIR; }

// Skips the current test with a message when the fixtures are absent (a user's clone).
#define DRO_REQUIRE_FIXTURES()                                                              \
  do {                                                                                      \
    if (!std::filesystem::exists(::dro::test::fixtures() / "golden"))                       \
      GTEST_SKIP() << "golden fixtures not found at " << ::dro::test::fixtures()            \
                   << " (set -DDRO_FIXTURES_DIR=...)";                                      \
  } while (0)

// The preference scorers' fixtures (fixtures()/scorers: tiny models, images, golden tensors).
inline std::filesystem::path scorer_fixtures() { return fixtures() / "scorers"; }

#define DRO_REQUIRE_SCORER_FIXTURES()                                                        \
  do {                                                                                       \
    if (!std::filesystem::exists(::dro::test::scorer_fixtures() / "golden" / "images.json")) \
      GTEST_SKIP() << "scorer fixtures not found at " << ::dro::test::scorer_fixtures();     \
  } while (0)

// The prompts of scorers/golden/prompts.json, in order.
std::vector<std::string> golden_prompts();
// The scorers' test set in DIR: one folder per golden prompt (caption.txt) holding every golden
// image, so its rows are exactly the (image, prompt) pairs of expected_scores.jsonl.
void write_scorer_test_set(const std::filesystem::path& dir);

// A fresh, empty temporary folder removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Runs a shell command (stderr merged into stdout); returns (exit code, output).
std::pair<int, std::string> run_command(const std::string& cmd);

// Largest absolute difference between two tensors (as float64); checks shapes first.
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

// Asserts |a - b| <= tol everywhere, printing the largest difference and where it is.
::testing::AssertionResult allclose(const torch::Tensor& actual, const torch::Tensor& expected,
                                    double tol);

}  // namespace dro::test
