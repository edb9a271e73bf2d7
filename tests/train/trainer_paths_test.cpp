// The trainer's options end to end on the tiny fixtures, each with an exact resume: the refill
// sampled ahead on a second thread against the sequential order (bitwise), the separate policy
// copy, pure bf16 and bf16 autocast on the CPU, gradient checkpointing, random crops, buffer
// guidance, the DDPM / DDIM buffer samplers, unperturbed timesteps, every LR schedule with
// --scale-lr, and runs without EMA.
#include <array>
#include <fstream>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/models/unet.h"
#include "dro/train/lr_schedule.h"
#include "dro/train/precision.h"
#include "dro/train/trainer.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro::train {
namespace {
namespace fs = std::filesystem;
using test::expect_same_state;
using test::metric_rows;
using test::run_and_resume;
using test::tiny_config;
using test::write_experts;

struct OverlapCase {
  const char* model;
  int64_t gradient_accumulation_steps, buffer_update_steps, buffer_sample_steps;
};

class OverlapTest : public ::testing::TestWithParam<OverlapCase> {};

// The refill sampled ahead on the filler thread gives bitwise the results of the sequential
// order, with the policy shared with the trained weights and as a separate lagged copy, with
// saves (and so a resume) falling while a refill is in flight.
TEST_P(OverlapTest, BitwiseTheSequentialOrder) {
  DRO_REQUIRE_FIXTURES();
  const auto p = GetParam();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config(p.model, tmp / "data", tmp / "unused");
  c.num_steps = 8;
  c.checkpointing_steps = 3;
  c.gradient_accumulation_steps = p.gradient_accumulation_steps;
  c.buffer_update_steps = p.buffer_update_steps;
  c.buffer_sample_steps = p.buffer_sample_steps;
  auto run = [&](bool overlap, const std::string& name) {
    auto cc = c;
    cc.buffer_overlap = overlap;
    cc.logdir = (tmp / name).string();
    Trainer t(cc);
    t.run();
    return t.times();
  };
  const auto seq = run(false, "sequential");
  const auto ahead = run(true, "ahead");
  EXPECT_EQ(seq.refills_ahead, 0);
  EXPECT_GT(ahead.refills_ahead, 0) << "no refill was sampled ahead";
  EXPECT_EQ(seq.refills, ahead.refills);
  expect_same_state(tmp / "sequential", tmp / "ahead");
  test::expect_same_tensors(tmp / "sequential/ckpt-6/unet/diffusion_pytorch_model.safetensors",
                           tmp / "ahead/ckpt-6/unet/diffusion_pytorch_model.safetensors");
  // And resumed from a save taken with a refill in flight (micro-step 3 of 8).
  c.buffer_overlap = true;
  run_and_resume(c, tmp / "resume");
  expect_same_state(tmp / "sequential", tmp / "resume/resumed");
}

INSTANTIATE_TEST_SUITE_P(
    Policies, OverlapTest,
    ::testing::Values(OverlapCase{"tiny-sd15", 2, 2, 1},   // policy = the trained weights
                      OverlapCase{"tiny-sd15", 2, 3, 1},   // a separate policy copy
                      OverlapCase{"tiny-sd15", 2, 4, 2},   // refills every second micro-step
                      OverlapCase{"tiny-sdxl", 2, 3, 1}),  // SDXL conditioning
    [](const auto& info) {
      return cat(info.param.model[5] == 's' && info.param.model[6] == 'd' && info.param.model[7] == 'x' ? "sdxl" : "sd15",
                 "_gas", info.param.gradient_accumulation_steps, "_update", info.param.buffer_update_steps, "_sample",
                 info.param.buffer_sample_steps);
    });

TEST(TrainerPaths, SeparatePolicyCopyLagsAndResumesExactly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.num_steps = 6;
  c.buffer_update_steps = 3;  // does not divide the accumulation of 2: a third UNet copy
  c.checkpointing_steps = 100;
  const auto dir = run_and_resume(c, tmp.path());
  // At micro-step 6 the policy was refreshed: it equals the trained weights.
  const auto unet =test::load_tensors(dir / "state/unet.safetensors");
  const auto policy =test::load_tensors(dir / "state/policy.safetensors");
  ASSERT_FALSE(policy.empty());
  for (const auto& [k, v] : policy) EXPECT_TRUE(torch::equal(v, unet.at(k))) << k;
  // At micro-step 4 (two optimiser steps, last refresh at 3) it lags behind them.
  auto lag = c;
  lag.num_steps = 4;
  lag.logdir = (tmp / "lag").string();
  Trainer(lag).run();
  const auto u4 = test::load_tensors(tmp / "lag/state/unet.safetensors");
  const auto p4 = test::load_tensors(tmp / "lag/state/policy.safetensors");
  EXPECT_FALSE(torch::equal(u4.at("conv_in.weight"), p4.at("conv_in.weight")));
}

TEST(TrainerPaths, PureBf16OnTheCpu) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.pure_bf16 = true;
  const auto dir = run_and_resume(c, tmp.path());
  for (const auto& [k, v] : test::load_tensors(dir / "state/unet.safetensors")) EXPECT_EQ(v.scalar_type(), torch::kBFloat16) << k;
  for (const auto& [k, v] : test::load_tensors(dir / "state/rank-0.safetensors"))
    if (k.rfind("buffer/", 0) == 0 && torch::isFloatingType(v.scalar_type())) {
      EXPECT_EQ(v.scalar_type(), torch::kBFloat16) << k;
    }
  // Checkpoints are fp32 unless --save-dtype says otherwise.
  for (const auto& [k, v] : test::load_tensors(dir / "ckpt-4/unet/diffusion_pytorch_model.safetensors"))
    EXPECT_EQ(v.scalar_type(), torch::kFloat32) << k;
}

// bf16 autocast on the CPU: fp32 master weights and buffer, bf16 forwards; the first step's
// reference losses (same weights, same noise) are near the fp32 run's but not equal to them.
TEST(TrainerPaths, Bf16AutocastOnTheCpu) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.mixed_precision = "bf16";
  const auto dir = run_and_resume(c, tmp / "bf16");
  for (const auto& [k, v] : test::load_tensors(dir / "state/unet.safetensors")) EXPECT_EQ(v.scalar_type(), torch::kFloat32) << k;
  for (const auto& [k, v] : test::load_tensors(dir / "state/rank-0.safetensors"))
    if (k.rfind("buffer/", 0) == 0 && torch::isFloatingType(v.scalar_type())) {
      EXPECT_EQ(v.scalar_type(), torch::kFloat32) << k;
    }
  auto f = c;
  f.mixed_precision = "no";
  f.logdir = (tmp / "fp32").string();
  Trainer(f).run();
  const auto a = metric_rows(dir), b = metric_rows(tmp / "fp32");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  const double x = a[0]["loss/expert0"].get<double>(), y = b[0]["loss/expert0"].get<double>();
  EXPECT_NE(x, y) << "autocast changed nothing";
  EXPECT_NEAR(x, y, 0.05 * y);
  // At the first step the reference and the policy are the same weights: in fp32 the reference
  // reproduces the stored policy predictions exactly; in bf16 the reference is a bf16 copy run
  // under autocast while the policy sampled with the fp32 weights, so they differ by rounding.
  EXPECT_LT(b[0]["loss/policy0"].get<double>(), 1e-12);
  EXPECT_GT(a[0]["loss/policy0"].get<double>(), 1e-9);
  EXPECT_LT(a[0]["loss/policy0"].get<double>(), 1e-3);
}

TEST(TrainerPaths, GradientCheckpointingGivesThePlainRunsSteps) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.gradient_checkpointing = true;
  const auto dir = run_and_resume(c, tmp / "ckpt");
  auto plain = c;
  plain.gradient_checkpointing = false;
  plain.logdir = (tmp / "plain").string();
  Trainer(plain).run();
  const auto a = metric_rows(dir), b = metric_rows(tmp / "plain");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  // The recomputed forward is the same computation: losses and gradient norms agree to float32
  // rounding of a different accumulation order.
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* key : {"loss/loss", "loss/expert", "grad_norm"})
      EXPECT_NEAR(a[i][key].get<double>(), b[i][key].get<double>(), 1e-5 * std::abs(b[i][key].get<double>()) + 1e-12)
          << key << " at row " << i;
}

TEST(TrainerPaths, RandomCropChangesTheExpertLatents) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5, 48);  // 48 x 48 and 48 x 56 images, cropped to 32 after the resize
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.random_crop = true;
  c.random_flip = false;
  c.random_drop_prompt_probability = 0;
  const auto dir = run_and_resume(c, tmp / "random");
  auto center = c;
  center.random_crop = false;
  center.logdir = (tmp / "center").string();
  Trainer(center).run();
  const auto a =test::load_tensors(dir / "state/rank-0.safetensors").at("buffer/x0");
  const auto b = test::load_tensors(tmp / "center/state/rank-0.safetensors").at("buffer/x0");
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_FALSE(torch::equal(a, b));
}

TEST(TrainerPaths, BufferGuidanceChangesThePredictionsNotTheStart) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.buffer_guidance_scale = 3.0;
  const auto dir = run_and_resume(c, tmp / "guided");
  auto plain = c;
  plain.buffer_guidance_scale = 1.0;
  plain.logdir = (tmp / "plain").string();
  Trainer(plain).run();
  const auto g =test::load_tensors(dir / "state/rank-0.safetensors");
  const auto p = test::load_tensors(tmp / "plain/state/rank-0.safetensors");
  // The same initial noise, then guided noise predictions.
  EXPECT_TRUE(torch::equal(g.at("buffer/xt").select(1, 0), p.at("buffer/xt").select(1, 0)));
  EXPECT_FALSE(torch::allclose(g.at("buffer/eps").select(1, 0), p.at("buffer/eps").select(1, 0)));
}

class BufferSchedulerTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

// Each buffer sampler runs and resumes exactly; perturbed timesteps differ per trajectory,
// unperturbed ones are the sampler's own, the same for every row, decreasing.
TEST_P(BufferSchedulerTest, RunsAndResumesWithItsTimesteps) {
  DRO_REQUIRE_FIXTURES();
  const auto [scheduler, perturb] = GetParam();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.buffer_scheduler = scheduler;
  c.buffer_perturb_timesteps = perturb;
  c.buffer_batch_size = 4;
  const auto dir = run_and_resume(c, tmp.path());
  const auto t =test::load_tensors(dir / "state/rank-0.safetensors").at("buffer/t");  // [rows, steps]
  ASSERT_EQ(t.dim(), 2);
  ASSERT_EQ(t.size(1), c.buffer_num_inference_steps);
  for (int64_t r = 0; r < t.size(0); ++r)
    for (int64_t k = 1; k < t.size(1); ++k) EXPECT_GT(t[r][k - 1].item().toDouble(), t[r][k].item().toDouble());
  bool rows_differ = false;
  for (int64_t r = 1; r < t.size(0); ++r) rows_differ |= !torch::equal(t[r], t[0]);
  EXPECT_EQ(rows_differ, perturb) << t;
}

INSTANTIATE_TEST_SUITE_P(Samplers, BufferSchedulerTest,
                         ::testing::Combine(::testing::Values("ddpm", "ddim", "dpmsolver++"), ::testing::Bool()),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param);
                           if (s == "dpmsolver++") s = "dpmsolver";
                           return s + (std::get<1>(info.param) ? "_perturbed" : "_plain");
                         });

// The rate the trainer logs at each optimisation step is the schedule's, with the warmup given in
// micro-steps and --scale-lr multiplying by accumulation x batch size x processes.
TEST(TrainerPaths, EveryLrScheduleAndScaleLr) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  for (const char* name : {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"}) {
    for (bool scale : {false, true}) {
      auto c = tiny_config("tiny-sd15", tmp / "data", tmp / cat(name, scale));
      c.num_steps = 8;  // 4 optimisation steps
      c.lr_scheduler = name;
      c.lr_warmup_steps = 4;  // micro-steps: 2 optimisation steps
      c.scale_lr = scale;
      c.checkpointing_steps = 100;
      Trainer(c).run();
      LrSchedule ref;
      ref.name = name;
      ref.base_lr = c.learning_rate * (scale ? c.gradient_accumulation_steps * c.batch_size : 1);
      ref.warmup_steps = 2;
      ref.total_steps = 4;
      const auto rows = metric_rows(c.logdir);
      ASSERT_EQ(rows.size(), 4u) << name;
      for (int64_t k = 0; k < 4; ++k)
        EXPECT_DOUBLE_EQ(rows[k]["lr"].get<double>(), ref.lr(k)) << name << (scale ? " scaled" : "") << " step " << k;
    }
  }
}

TEST(TrainerPaths, NoEmaCheckpointsTheTrainedWeights) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "x");
  c.use_ema = false;
  const auto dir = run_and_resume(c, tmp.path());
  EXPECT_FALSE(fs::exists(dir / "state/ema.safetensors"));
  const auto trained =test::load_tensors(dir / "state/unet.safetensors");
  const auto ckpt =test::load_tensors(dir / "ckpt-4/unet/diffusion_pytorch_model.safetensors");
  ASSERT_EQ(trained.size(), ckpt.size());
  for (const auto& [k, v] : trained) EXPECT_TRUE(torch::equal(v, ckpt.at(k))) << k;
}

// --vae replaces the model's VAE (a copy of it elsewhere: bitwise the same run); --reference-unet
// sets the frozen reference when training starts from --unet: the reference losses on the expert
// branch are then the base model's, equal to the base run's first step, and not the starting
// checkpoint's.
TEST(TrainerPaths, VaeAndReferenceUnetFolders) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_experts(tmp / "data", 5);
  const fs::path model = test::fixtures() / "tiny-sd15";
  auto c = tiny_config("tiny-sd15", tmp / "data", tmp / "base");
  Trainer(c).run();
  fs::copy(model / "vae", tmp / "my-vae", fs::copy_options::recursive);
  auto v = c;
  v.vae = (tmp / "my-vae").string();
  v.logdir = (tmp / "vae").string();
  Trainer(v).run();
  expect_same_state(tmp / "base", tmp / "vae");

  auto from_ckpt = c;
  from_ckpt.unet = (tmp / "base/ckpt-4/unet").string();
  from_ckpt.logdir = (tmp / "ckpt-ref").string();
  Trainer(from_ckpt).run();
  auto base_ref = from_ckpt;
  base_ref.reference_unet = (model / "unet").string();
  base_ref.logdir = (tmp / "base-ref").string();
  Trainer(base_ref).run();
  const double base0 = metric_rows(tmp / "base")[0]["loss/expert0"].get<double>();
  EXPECT_EQ(metric_rows(tmp / "base-ref")[0]["loss/expert0"].get<double>(), base0);
  EXPECT_NE(metric_rows(tmp / "ckpt-ref")[0]["loss/expert0"].get<double>(), base0);

  auto bad = c;
  bad.vae = (tmp / "nothing").string();
  try {
    Trainer t(bad);
    FAIL() << "a --vae folder without config.json was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--vae"), std::string::npos) << e.what();
  }
}

// The dtype of each part per mode, and the weight/optimiser memory the README's table states for
// SD1.5 and SDXL (the released checkpoints' parameter counts), from the same function the run
// header prints.
TEST(Precision, DtypesAndMemoryPerMode) {
  TrainConfig c;
  const torch::Device cpu(torch::kCPU);
  auto no = Precision::resolve(c, cpu);  // auto on the CPU
  EXPECT_EQ(no.mode, "no");
  EXPECT_FALSE(no.autocast);
  c.mixed_precision = "bf16";
  auto mixed = Precision::resolve(c, cpu);
  EXPECT_EQ(mixed.trained, torch::kFloat32);
  EXPECT_EQ(mixed.frozen, torch::kBFloat16);
  EXPECT_EQ(mixed.buffer, torch::kFloat32);
  EXPECT_TRUE(mixed.autocast);
  c.pure_bf16 = true;
  auto pure = Precision::resolve(c, cpu);
  EXPECT_EQ(pure.trained, torch::kBFloat16);
  EXPECT_EQ(pure.buffer, torch::kBFloat16);
  EXPECT_FALSE(pure.autocast);
  c.pure_bf16 = false;
  c.mixed_precision = "fp16";
  EXPECT_THROW(Precision::resolve(c, cpu), UsageError);

  ModelSizes sd15{859520964, 83653863, 123060480};
  ModelSizes sdxl{2567463684, 83653863, 123060480 + 694659840};
  const std::vector<std::pair<Precision, std::array<double, 2>>> table = {
      {no, {18.0, 55.0}}, {mixed, {15.9, 48.0}}, {pure, {9.0, 27.5}}};
  for (const auto& [p, gb] : table) {
    EXPECT_NEAR(estimate_memory(p, sd15).device_total() / 1e9, gb[0], 0.05) << p.mode;
    EXPECT_NEAR(estimate_memory(p, sdxl).device_total() / 1e9, gb[1], 0.05) << p.mode;
  }
  EXPECT_NEAR(estimate_memory(no, sd15).host_total / 1e9, 3.4, 0.05);  // the offloaded EMA
  ModelSizes separate = sdxl;
  separate.separate_policy = true;
  EXPECT_NEAR((estimate_memory(mixed, separate).device_total() - estimate_memory(mixed, sdxl).device_total()) / 1e9,
              5.1, 0.05);
}

}  // namespace
}  // namespace dro::train
