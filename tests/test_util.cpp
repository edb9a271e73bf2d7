#include "test_util.h"

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <atomic>
#include <random>
#include <sstream>

#include "dro/core/crash.h"

namespace dro::test {

// A crashing test prints where (the test binary has no other main to install it in).
const bool kCrashHandlerInstalled = (install_crash_handler("dro_tests"), true);

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("dro_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {-1, "popen failed"};
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int rc = pclose(p);
  return {WEXITSTATUS(rc), out};
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

::testing::AssertionResult allclose(const torch::Tensor& actual, const torch::Tensor& expected,
                                    double tol) {
  if (actual.sizes() != expected.sizes()) {
    std::ostringstream os;
    os << "shape " << actual.sizes() << " != expected " << expected.sizes();
    return ::testing::AssertionFailure() << os.str();
  }
  if (actual.numel() == 0) return ::testing::AssertionSuccess();
  auto d = (actual.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs();
  const double m = d.max().item<double>();
  const int64_t at = d.flatten().argmax().item<int64_t>();
  if (!(m <= tol)) {
    return ::testing::AssertionFailure()
           << "max |diff| = " << m << " > tol " << tol << " at flat index " << at << " (actual "
           << actual.flatten()[at].item<double>() << ", expected "
           << expected.flatten()[at].item<double>() << ")";
  }
  return ::testing::AssertionSuccess() << "max |diff| = " << m;
}

std::vector<std::string> golden_prompts() {
  std::vector<std::string> out;
  for (const auto& p : io::read_json(scorer_fixtures() / "golden" / "prompts.json"))
    out.push_back(p.at("prompt").get<std::string>());
  return out;
}

void write_scorer_test_set(const std::filesystem::path& dir) {
  const auto prompts = io::read_json(scorer_fixtures() / "golden" / "prompts.json");
  const auto images = io::read_json(scorer_fixtures() / "golden" / "images.json");
  for (const auto& p : prompts) {
    const std::filesystem::path pd = dir / cat("p", p["index"].get<int>());
    std::filesystem::create_directories(pd);
    io::write_file_atomically(pd / "caption.txt", p["prompt"].get<std::string>());
    for (const auto& im : images) {
      const std::filesystem::path src = scorer_fixtures() / im["file"].get<std::string>();
      std::filesystem::copy_file(src, pd / src.filename());
    }
  }
}

}  // namespace dro::test
