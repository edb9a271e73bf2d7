// The baselines (Diffusion-DPO on preference pairs, Diffusion-KTO on labelled images) end to end
// through the one trainer on the tiny fixtures: the first step's values in closed form (the
// trained UNet starts equal to the reference), the pair's shared timestep, noise, flip and crop
// (a pair of one image twice leaves the weights untouched), exact resume, and the manifests'
// errors.
#include <cmath>
#include <fstream>

#include "dro/core/error.h"
#include "dro/io/image.h"
#include "dro/train/trainer.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro::train {
namespace {
namespace fs = std::filesystem;

TrainConfig baseline_config(const std::string& objective, const fs::path& manifest, const fs::path& logdir) {
  auto c = test::tiny_config("tiny-sd15", manifest, logdir);
  c.objective = objective;
  c.num_steps = 6;
  c.checkpointing_steps = 3;  // a save between two micro-steps of one optimiser step
  c.random_crop = true;
  return c;
}

TEST(BaselineTrainer, DpoStartsAtLog2AndResumesExactly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_manifests(tmp / "data", 6);
  const auto c = baseline_config("dpo", tmp / "data/pairs.jsonl", tmp / "x");
  const auto dir = test::run_and_resume(c, tmp.path());
  const auto rows = test::metric_rows(dir);
  ASSERT_EQ(rows.size(), 3u);
  // Step 1: the trained UNet is the reference, so model_diff = ref_diff and the loss is log 2.
  const auto& first = rows[0];
  EXPECT_NEAR(first["loss/loss"].get<double>(), std::log(2.0), 1e-6);
  EXPECT_EQ(first["loss/implicit_acc"].get<double>(), 0.0);
  EXPECT_NEAR(first["loss/model_mse_w"].get<double>(), first["loss/ref_mse_w"].get<double>(), 1e-7);
  EXPECT_NE(first["loss/model_mse_w"].get<double>(), first["loss/model_mse_l"].get<double>());
  // Afterwards the model has moved away from the reference.
  EXPECT_NE(rows[2]["loss/model_mse_w"].get<double>(), rows[2]["loss/ref_mse_w"].get<double>());
  EXPECT_TRUE(fs::exists(dir / "ckpt-6/unet/diffusion_pytorch_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "state/policy.safetensors"));  // no policy copy, no buffer
}

// Both images of a pair share timestep, noise, prompt dropout, flip and crop: a pair of one image
// twice has model_diff = ref_diff = 0 at every step up to rounding (the two rows of one batch may
// round differently), so the loss stays log 2 and the gradient vanishes, where distinct images
// give gradient norms in the hundreds. On the pixel-space world model: through a VAE each
// image's latent is its own posterior sample (as in the official Diffusion-DPO script).
TEST(BaselineTrainer, DpoPairOfOneImageTwiceHasNoGradient) {
  test::TempDir tmp;
  test::write_manifests(tmp / "data", 3);
  const char* caption = "a small red circle on a dark background, left";
  {
    std::ofstream same(tmp / "data/same.jsonl"), other(tmp / "data/other.jsonl");
    for (int i = 0; i < 3; ++i) {
      same << R"({"caption": ")" << caption << R"(", "chosen": "images/)" << i << R"(.png", "rejected": "images/)" << i
           << ".png\"}\n";
      other << R"({"caption": ")" << caption << R"(", "chosen": "images/)" << i << R"(.png", "rejected": "images/)"
            << (i + 1) % 3 << ".png\"}\n";
    }
  }
  auto run = [&](const char* manifest, const char* logdir) {
    auto c = baseline_config("dpo", tmp / "data" / manifest, tmp / logdir);
    c.pretrained_model_name_or_path = (fs::path(DRO_SOURCE_DIR) / "assets/world-base").string();
    c.random_flip = true;
    c.num_steps = 4;
    Trainer(c).run();
    return test::metric_rows(tmp / logdir);
  };
  const auto same = run("same.jsonl", "same"), other = run("other.jsonl", "other");
  ASSERT_EQ(same.size(), 2u);
  ASSERT_EQ(other.size(), 2u);
  for (size_t i = 0; i < same.size(); ++i) {
    const double g_same = same[i]["grad_norm"].get<double>(), g_other = other[i]["grad_norm"].get<double>();
    std::cout << "step " << i + 1 << ": gradient norm " << g_same << " (one image twice) vs " << g_other
              << " (distinct images)\n";
    EXPECT_NEAR(same[i]["loss/loss"].get<double>(), std::log(2.0), 1e-4);
    EXPECT_LT(g_same, 1e-4 * g_other);
    if (i > 0) {  // after the first update the distinct pairs' loss has left log 2
      EXPECT_GT(std::abs(other[i]["loss/loss"].get<double>() - std::log(2.0)), 1e-2) << other[i].dump();
    }
  }
}

TEST(BaselineTrainer, KtoStartsAtHalfUtilityAndResumesExactly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_manifests(tmp / "data", 6);
  auto c = baseline_config("kto", tmp / "data/labels.jsonl", tmp / "x");
  const auto dir = test::run_and_resume(c, tmp.path());
  const auto rows = test::metric_rows(dir);
  ASSERT_EQ(rows.size(), 3u);
  // Step 1: g = 0 for every image, z = 0, h = sigmoid(0) = 1/2, loss = mean(lambda_y) / 2 = 1/2.
  EXPECT_NEAR(rows[0]["loss/utility"].get<double>(), 0.5, 1e-6);
  EXPECT_NEAR(rows[0]["loss/loss"].get<double>(), 0.5, 1e-6);
  EXPECT_NEAR(rows[0]["loss/reward"].get<double>(), 0.0, 1e-7);
  EXPECT_NE(rows[2]["loss/reward"].get<double>(), 0.0);
  EXPECT_GE(rows[2]["loss/reference_point"].get<double>(), 0.0);
  // The desirable ratio changes which images are drawn, and it resumes exactly too.
  c.desirable_ratio = 0.9;
  test::run_and_resume(c, tmp / "ratio");
}

TEST(BaselineTrainer, ManifestsAndObjectivesAreChecked) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_manifests(tmp / "data", 3);
  test::write_experts(tmp / "experts", 3);
  auto expect_usage = [&](TrainConfig c, const std::string& part) {
    try {
      Trainer t(c);
      ADD_FAILURE() << "no error";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_usage(baseline_config("dpo", tmp / "experts", tmp / "a"), "not a folder");
  expect_usage(baseline_config("ipo", tmp / "data/pairs.jsonl", tmp / "a"), "(dro, sft, dpo, kto)");
  auto ratio = baseline_config("dpo", tmp / "data/pairs.jsonl", tmp / "a");
  ratio.desirable_ratio = 0.5;
  expect_usage(ratio, "--desirable-ratio applies to --objective kto only");
  // Only desirable images: a ratio cannot be drawn.
  {
    std::ofstream all(tmp / "data/good.jsonl");
    all << R"({"caption": "a cat", "image": "images/0.png", "label": 1})" << "\n";
  }
  auto kto = baseline_config("kto", tmp / "data/good.jsonl", tmp / "b");
  kto.desirable_ratio = 0.5;
  expect_usage(kto, "needs desirable and undesirable images");
  // A pairs manifest given to KTO names the missing field.
  try {
    Trainer t(baseline_config("kto", tmp / "data/pairs.jsonl", tmp / "c"));
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("pairs.jsonl entry 1"), std::string::npos) << e.what();
  }
  // A missing image names the entry.
  {
    std::ofstream bad(tmp / "data/bad.jsonl");
    bad << R"({"caption": "a cat", "chosen": "images/0.png", "rejected": "images/9.png"})" << "\n";
  }
  try {
    Trainer t(baseline_config("dpo", tmp / "data/bad.jsonl", tmp / "d"));
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("9.png does not exist"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dro::train
