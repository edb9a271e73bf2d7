// Bad input to the real `dro train` and `dro sample`: the message names the file and key or the
// flag, official options dro does not use are reported once, and LibTorch's own errors come
// without a C++ backtrace.
#include <fstream>

#include "dro/core/error.h"
#include "test_util.h"

namespace dro {
namespace {
namespace fs = std::filesystem;

const std::string kDro = DRO_BINARY;

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// `dro train` stops at the config, before it opens the model or the data.
std::pair<int, std::string> train(const test::TempDir& tmp, const std::string& config_json,
                                  const std::string& flags) {
  const fs::path cfg = tmp / "config.json";
  std::ofstream(cfg) << config_json;
  return test::run_command(kDro + " train --config " + cfg.string() + " --model " +
                           (tmp / "model").string() + " --train-dataset " +
                           (tmp / "data").string() + " --logdir " + (tmp / "run").string() + " " +
                           flags);
}

TEST(CliValidation, TrainConfigTypesAndRangesNameTheFileKeyOrFlag) {
  test::TempDir tmp;
  const std::string cfg = (tmp / "config.json").string();
  auto [rc1, log1] = train(tmp, R"({"batch_size": 4.7})", "");
  EXPECT_EQ(rc1, 2) << log1;
  EXPECT_NE(log1.find("error: [config] " + cfg + ": 'batch_size' must be an integer, got 4.7"),
            std::string::npos)
      << log1;
  auto [rc2, log2] = train(tmp, R"({"adam_epsilon": 0})", "");
  EXPECT_EQ(rc2, 2) << log2;
  EXPECT_NE(log2.find("'adam_epsilon' must be > 0, got 0"), std::string::npos) << log2;
  auto [rc3, log3] = train(tmp, "{}", "--adam-beta1 1");
  EXPECT_EQ(rc3, 2) << log3;
  EXPECT_NE(log3.find("error: [train] --adam-beta1 must be in [0, 1), got 1"), std::string::npos)
      << log3;
  auto [rc4, log4] = train(tmp, R"({"buffer_sise": 4})", "");
  EXPECT_EQ(rc4, 2) << log4;
  EXPECT_NE(log4.find("unknown option 'buffer_sise' (did you mean 'buffer_size'?)"),
            std::string::npos)
      << log4;
}

TEST(CliValidation, UnusedOfficialOptionsAreNamedOnce) {
  test::TempDir tmp;
  // An invalid flag stops the run right after the config has been read.
  auto [rc, log] = train(tmp,
                         R"({"validation_dataset": "./data/pickapicv2_test", "score": "hpsv2",
                             "score_batch_size": 4, "buffer_sync": false})",
                         "--margin=-1");
  EXPECT_EQ(rc, 2) << log;
  EXPECT_EQ(count(log, "warning: ignoring official train.py options"), 1u) << log;
  EXPECT_NE(log.find("validation_dataset, score, score_batch_size, buffer_sync"), std::string::npos)
      << log;
  EXPECT_NE(log.find("[train] --margin must be >= 0, got -1"), std::string::npos) << log;
}

TEST(CliValidation, Float16SamplingOnTheCpuIsAUsageError) {
  test::TempDir tmp;
  // Checked before the model is opened (this one does not exist).
  auto [rc, log] =
      test::run_command(kDro + " sample --model " + (tmp / "model").string() +
                        " --prompt x --device cpu --dtype fp16 --out " + (tmp / "out").string());
  EXPECT_EQ(rc, 2) << log;
  EXPECT_NE(log.find("error: [sample] --dtype fp16 needs a CUDA device (--device is cpu); on the "
                     "CPU use --dtype "
                     "fp32 or bf16"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("frame #"), std::string::npos) << log;
}

TEST(CliValidation, BFloat16SamplingRunsOnTheCpu) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  for (const char* scheduler : {"ddim --eta 1", "dpmsolver++", "euler"}) {
    auto [rc, log] =
        test::run_command(kDro + " sample --model " + (test::fixtures() / "tiny-sd15").string() +
                          " --prompt x --steps 2 --device cpu --dtype bf16 --quiet --overwrite" +
                          " --scheduler " + scheduler + " --out " + (tmp / "out").string());
    EXPECT_EQ(rc, 0) << scheduler << ": " << log;
  }
  EXPECT_TRUE(fs::exists(tmp / "out/0/0.png"));
}

TEST(CliValidation, LibTorchErrorsComeWithoutABacktrace) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  // Initial noise of 1.6 PB: more than any address space, so LibTorch's allocator refuses it at
  // once (no memory is touched).
  auto [rc, log] = test::run_command(
      kDro + " sample --model " + (test::fixtures() / "tiny-sd15").string() +
      " --prompt x --steps 2 --device cpu --height 40000000 --width 40000000 --out " +
      (tmp / "out").string());
  EXPECT_EQ(rc, 1) << log;
  EXPECT_NE(log.find("error: [dro sample] LibTorch: "), std::string::npos) << log;
  EXPECT_NE(log.find("can't allocate memory"), std::string::npos) << log;
  EXPECT_EQ(log.find("frame #"), std::string::npos) << log;
  EXPECT_EQ(log.find("Exception raised from"), std::string::npos) << log;
}

}  // namespace
}  // namespace dro
