// The trainer end to end on the tiny fixtures: runs, checkpoints in diffusers layout, resumes
// exactly (N + N steps with a restart == 2N straight, bitwise), stops cleanly on a non-finite loss.
#include <algorithm>
#include <fstream>
#include <limits>

#include "dro/core/error.h"
#include "dro/io/image.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/models/unet.h"
#include "dro/train/trainer.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro::train {
namespace {
namespace fs = std::filesystem;
using test::tiny_config;
using test::write_experts;

class TrainerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainerTest, RunsCheckpointsAndResumesExactly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  // Straight: 4 micro-steps.
  {
    Trainer t(tiny_config(GetParam(), tmp / "data", tmp / "straight"));
    t.run();
    EXPECT_EQ(t.step(), 4);
  }
  // Interrupted: 2 micro-steps, then a new process-like trainer resumes to 4.
  {
    auto c = tiny_config(GetParam(), tmp / "data", tmp / "resumed");
    c.num_steps = 2;
    Trainer t(c);
    t.run();
  }
  {
    auto c = tiny_config(GetParam(), tmp / "data", tmp / "resumed");
    c.resume = true;
    Trainer t(c);
    t.run();
    EXPECT_EQ(t.step(), 4);
  }
  test::expect_same_tensors(tmp / "straight/state/unet.safetensors", tmp / "resumed/state/unet.safetensors");
  test::expect_same_tensors(tmp / "straight/state/ema.safetensors", tmp / "resumed/state/ema.safetensors");
  test::expect_same_tensors(tmp / "straight/ckpt-4/unet/diffusion_pytorch_model.safetensors",
                       tmp / "resumed/ckpt-4/unet/diffusion_pytorch_model.safetensors");
  // The checkpoint is a diffusers UNet folder holding the EMA weights; it loads back.
  auto unet = models::load_unet(tmp / "straight/ckpt-4/unet");
  auto ema = test::load_tensors(tmp / "straight/state/ema.safetensors");
  EXPECT_TRUE(torch::equal(unet->named_parameters()["conv_in.weight"], ema.at("conv_in.weight")));
  auto trained = test::load_tensors(tmp / "straight/state/unet.safetensors");
  auto base = models::load_unet(test::fixtures() / GetParam() / "unet");
  EXPECT_FALSE(torch::equal(trained.at("conv_in.weight"), base->named_parameters()["conv_in.weight"]))
      << "training changed the weights";
  EXPECT_TRUE(fs::exists(tmp / "straight/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(tmp / "straight/training_config.json"));
  bool events = false;
  for (const auto& e : fs::directory_iterator(tmp / "straight"))
    events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(events);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TrainerTest, ::testing::Values("tiny-sd15", "tiny-sdxl"));

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastState) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.learning_rate = 1e30;  // the first update destroys the weights
  c.max_grad_norm = 0;
  c.num_steps = 8;
  Trainer t(c);
  t.save(false);
  EXPECT_THROW(t.run(), Error);
  EXPECT_TRUE(fs::exists(tmp / "run/state/training_state.json"));
  EXPECT_FALSE(fs::exists(tmp / "run/ckpt-8"));
}

// Non-finite weights are never written: a save refuses, and the state on disk stays the last good
// one, every value finite. (A model whose UNet holds an infinity stands in for a diverged run.)
TEST(Trainer, NonFiniteWeightsAreNeverSaved) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  {
    Trainer good(c);
    good.run();
  }
  const auto saved = test::load_tensors(tmp / "run/state/unet.safetensors");
  fs::copy(test::fixtures() / "tiny-sd15", tmp / "broken", fs::copy_options::recursive);
  const fs::path unet_file = tmp / "broken/unet/diffusion_pytorch_model.safetensors";
  io::NamedTensors t;
  for (auto& [k, v] : test::load_tensors(unet_file)) t.emplace_back(k, v);
  t[0].second.view(-1)[0] = std::numeric_limits<float>::infinity();
  io::save_safetensors(unet_file, t);
  c.pretrained_model_name_or_path = (tmp / "broken").string();
  Trainer broken(c);
  try {
    broken.save(true);
    FAIL() << "non-finite weights were saved";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
  }
  const auto kept = test::load_tensors(tmp / "run/state/unet.safetensors");
  ASSERT_EQ(kept.size(), saved.size());
  for (const auto& [k, v] : saved) {
    EXPECT_TRUE(torch::equal(kept.at(k), v)) << k;
    EXPECT_TRUE(torch::isfinite(kept.at(k)).all().item<bool>()) << k;
  }
}

// Resume refuses options that change the saved buffer's shapes, and continues on a dataset that
// shrank since the save (its position scaled into the new, shorter order).
TEST(Trainer, ResumeChecksOptionsAndASmallerDataset) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 6);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.num_steps = 5;  // stops mid-epoch: the data position is 5 of 6 (one rank)
  {
    Trainer t(c);
    t.run();
  }
  auto other = c;
  other.resume = true;
  other.resolution = 48;
  try {
    Trainer t(other);
    t.run();
    FAIL() << "resumed with another resolution";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("resolution: 32 -> 48"), std::string::npos) << e.what();
  }
  std::vector<fs::path> folders;
  for (const auto& e : fs::directory_iterator(tmp / "data")) folders.push_back(e.path());
  std::sort(folders.begin(), folders.end());
  for (size_t i = 0; i + 2 < folders.size(); ++i) fs::remove_all(folders[i]);  // 2 examples left
  auto smaller = c;
  smaller.resume = true;
  smaller.num_steps = 8;
  Trainer t(smaller);
  t.run();
  EXPECT_EQ(t.step(), 8);
  const auto w = test::load_tensors(tmp / "run/state/unet.safetensors");
  for (const auto& [k, v] : w) EXPECT_TRUE(torch::isfinite(v).all().item<bool>()) << k;
}

// A damaged state names the file and the entry it lacks, and the entry of the wrong shape.
TEST(Trainer, DamagedStateNamesTheMissingEntry) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.num_steps = 2;
  {
    Trainer t(c);
    t.run();
  }
  c.resume = true;
  const fs::path ema_file = tmp / "run/state/ema.safetensors";
  auto ema = test::load_tensors(ema_file);
  io::NamedTensors less;
  for (auto& [k, v] : ema)
    if (k != "conv_in.weight") less.emplace_back(k, v);
  io::save_safetensors(ema_file, less);
  try {
    Trainer t(c);
    t.run();
    FAIL() << "resumed from a state without an EMA weight";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("ema.safetensors has no entry 'conv_in.weight'"), std::string::npos) << m;
  }
  less.emplace_back("conv_in.weight", torch::zeros({1, 2}));
  io::save_safetensors(ema_file, less);
  try {
    Trainer t(c);
    t.run();
    FAIL() << "resumed from a state with a wrongly shaped EMA weight";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'conv_in.weight' has shape"), std::string::npos) << e.what();
  }
}

// --save-dtype bf16 writes the checkpoint's weights as the official bf16 runs save them; the
// resumable state keeps the float32 weights it trains.
TEST(Trainer, SaveDtypeSetsTheCheckpointDtypeOnly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.num_steps = 2;
  c.save_dtype = "bf16";
  Trainer t(c);
  t.run();
  const auto ckpt = io::SafetensorsFile::open(tmp / "run/ckpt-2/unet/diffusion_pytorch_model.safetensors");
  const auto state = io::SafetensorsFile::open(tmp / "run/state/unet.safetensors");
  ASSERT_FALSE(ckpt->tensors().empty());
  for (const auto& ti : ckpt->tensors()) EXPECT_EQ(ti.dtype, "BF16") << ti.name;
  for (const auto& ti : state->tensors()) EXPECT_EQ(ti.dtype, "F32") << ti.name;
  const auto bf = ckpt->get("conv_in.weight").to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(bf, state->get("conv_in.weight"), 1e-2, 1e-2));
  auto bad = c;
  bad.save_dtype = "int8";
  EXPECT_THROW(bad.validate(), UsageError);
}

// Models predicting v (or x0) are refused: the ranking loss compares noise predictions.
TEST(Trainer, VPredictionModelsAreRefused) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  fs::copy(test::fixtures() / "tiny-sd15", tmp / "v", fs::copy_options::recursive);
  const fs::path sc = tmp / "v/scheduler/scheduler_config.json";
  auto j = io::read_json(sc);
  j["prediction_type"] = "v_prediction";
  fs::permissions(sc, fs::perms::owner_write, fs::perm_options::add);
  io::write_json(sc, j);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.pretrained_model_name_or_path = (tmp / "v").string();
  try {
    Trainer t(c);
    FAIL() << "a v_prediction model was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("prediction_type 'v_prediction'"), std::string::npos) << e.what();
  }
}

// After a resume, metrics.jsonl holds each step once: rows an interrupted run wrote past its last
// saved state are dropped (and logged again).
TEST(Trainer, ResumedMetricsHoldEachStepOnce) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.num_steps = 2;
  {
    Trainer t(c);
    t.run();
  }
  {  // what a crash after logging step 4 but before saving it leaves
    std::ofstream m(tmp / "run/metrics.jsonl", std::ios::app);
    m << "{\"step\": 4, \"loss/loss\": 1.0}\n{\"step\": 5, \"lo";
  }
  c.resume = true;
  c.num_steps = 4;
  Trainer t(c);
  t.run();
  std::vector<int64_t> steps;
  std::ifstream in(tmp / "run/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) steps.push_back(io::OrderedJson::parse(line).at("step").get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{2, 4}));
}

// Temporary folders of a save that crashed (GBs for real models) are removed at the next start.
TEST(Trainer, StaleSaveTemporariesAreRemovedAtStart) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  fs::create_directories(tmp / "run/state.tmp.999999");
  std::ofstream(tmp / "run/state.tmp.999999/unet.safetensors") << "partial";
  fs::create_directories(tmp / "run/ckpt-2/unet.tmp.123");
  fs::create_directories(tmp / "run/ckpt-keep");
  Trainer t(c);
  t.run();
  EXPECT_FALSE(fs::exists(tmp / "run/state.tmp.999999"));
  EXPECT_FALSE(fs::exists(tmp / "run/ckpt-2/unet.tmp.123"));
  EXPECT_TRUE(fs::exists(tmp / "run/ckpt-2/unet/config.json"));
  EXPECT_TRUE(fs::exists(tmp / "run/ckpt-keep"));
  EXPECT_TRUE(fs::exists(tmp / "run/state/training_state.json"));
}

// A kill after the state swap and before ckpt-N is written leaves the state at N and no ckpt-N;
// the resume writes it from the restored weights, equal to the one an uninterrupted run writes.
TEST(Trainer, ResumeWritesTheCheckpointAKillLeftMissing) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 4);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  c.checkpointing_steps = 2;
  {
    Trainer t(c);
    t.run();
  }
  for (int n : {2, 4}) ASSERT_TRUE(fs::exists(tmp / cat("run/ckpt-", n, "/unet/config.json")));
  fs::rename(tmp / "run/ckpt-4", tmp / "ckpt-4.done");
  c.resume = true;
  {
    Trainer t(c);
    t.run();
    EXPECT_EQ(t.step(), 4);
  }
  test::expect_same_tensors(tmp / "ckpt-4.done/unet/diffusion_pytorch_model.safetensors",
                            tmp / "run/ckpt-4/unet/diffusion_pytorch_model.safetensors");
  EXPECT_TRUE(fs::exists(tmp / "run/ckpt-4/unet/config.json"));
  // A checkpoint that is there is left alone.
  const auto written = fs::last_write_time(tmp / "run/ckpt-4/unet/diffusion_pytorch_model.safetensors");
  Trainer again(c);
  again.run();
  EXPECT_EQ(fs::last_write_time(tmp / "run/ckpt-4/unet/diffusion_pytorch_model.safetensors"), written);
}

TEST(Trainer, BadExpertFoldersAreNamed) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 3);
  fs::create_directories(tmp / "data/009");
  std::ofstream(tmp / "data/009/caption.txt") << "no image here";
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "run");
  try {
    Trainer t(c);
    FAIL() << "a folder without an image was accepted";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("009"), std::string::npos) << e.what();
  }
  std::ofstream(tmp / "data/009/009.png") << "not a png";
  c.skip_bad_images = true;
  Trainer t(c);  // skipped with a warning
  test::TempDir empty;
  c.train_dataset = empty.path().string();
  EXPECT_THROW(Trainer bad(c), IoError);
}

}  // namespace
}  // namespace dro::train
