// `kill -9` of a real `dro train` at several moments (before, during and after saves) always
// leaves a run folder that `--resume` continues from to the end.
#include <chrono>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro {
namespace {
namespace fs = std::filesystem;

std::string train_command(const fs::path& data, const fs::path& logdir, int steps) {
  return cat(DRO_BINARY, " train --model ", (test::fixtures() / "tiny-sd15").string(), " --train-dataset ",
             data.string(), " --logdir ", logdir.string(),
             " --resolution 32 --batch-size 2 --gradient-accumulation-steps 1 --num-steps ", steps,
             " --buffer-size 4 --buffer-batch-size 2 --buffer-num-inference-steps 4 --buffer-update-steps 1"
             " --checkpointing-steps 1 --device cpu --quiet");
}

TEST(TrainKill, ResumeContinuesAfterKillAtAnyMoment) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 4);
  // How long a whole run takes here, so the kills land inside it.
  const auto t0 = std::chrono::steady_clock::now();
  auto [rc0, out0] = test::run_command(train_command(tmp / "data", tmp / "probe", 12));
  ASSERT_EQ(rc0, 0) << out0;
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int resumed = 0;
  for (double fraction : {0.4, 0.65, 0.9}) {
    const fs::path run = tmp / cat("run", static_cast<int>(fraction * 100));
    const std::string cmd = train_command(tmp / "data", run, 12);
    test::run_command(cat("timeout -s KILL ", fraction * total, " ", cmd));
    if (!fs::exists(run / "state") && !fs::exists(run / "state.old")) continue;  // killed before any save
    auto [rc, out] = test::run_command(cmd + " --resume");
    ASSERT_EQ(rc, 0) << "killed at " << fraction << " of the run:\n" << out;
    const auto st = io::read_json(run / "state" / "training_state.json");
    EXPECT_EQ(st["step"], 12);
    EXPECT_TRUE(fs::exists(run / "ckpt-12" / "unet" / "diffusion_pytorch_model.safetensors"));
    for (const auto& e : fs::directory_iterator(run))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    ++resumed;
  }
  std::cout << "[ kill     ] " << resumed << " of 3 kills left a state; each resumed to the end (run "
            << total << " s)\n";
  EXPECT_GT(resumed, 0);
}

}  // namespace
}  // namespace dro
