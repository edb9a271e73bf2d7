// dro train with LoRA: every objective trains adapters on the frozen tiny UNet with exact resume,
// the reference is that UNet with the adapters off (DPO's first step is exactly log 2), the lagged
// policy is a second adapter set, checkpoints are the two LoRA files, and the CLI applies them.
#include <cmath>
#include <fstream>

#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/io/safetensors.h"
#include "dro/models/lora_file.h"
#include "dro/train/train_state.h"
#include "dro/train/trainer.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro::train {
namespace {
namespace fs = std::filesystem;

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << p;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TrainConfig lora_config(const std::string& objective, const fs::path& data,
                        const fs::path& logdir) {
  const fs::path dataset = objective == "dpo"   ? data / "pairs.jsonl"
                           : objective == "kto" ? data / "labels.jsonl"
                                                : data / "experts";
  auto c = test::tiny_config("tiny-sd15", dataset, logdir);
  c.objective = objective;
  c.num_steps = 6;
  c.checkpointing_steps = 3;  // a save between two micro-steps of one optimiser step
  c.lora_rank = 2;
  c.lora_alpha = 4;
  c.learning_rate = 1e-2;
  return c;
}

void write_data(const fs::path& dir) {
  test::write_experts(dir / "experts", 4);
  test::write_manifests(dir, 6);
}

class LoraObjectiveTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraObjectiveTest, TrainsAdaptersAndResumesExactly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  const auto c = lora_config(GetParam(), tmp / "data", tmp / "x");
  const fs::path dir = test::run_and_resume(c, tmp.path());
  // The state holds the adapters only; checkpoints are the two LoRA files, no UNet folder.
  const auto state = test::load_tensors(dir / "state/unet.safetensors");
  ASSERT_FALSE(state.empty());
  for (const auto& [k, v] : state) EXPECT_NE(k.find(".lora_"), std::string::npos) << k;
  for (int n : {3, 6}) {
    EXPECT_TRUE(fs::exists(dir / cat("ckpt-", n) / kLoraDiffusersFile));
    EXPECT_TRUE(fs::exists(dir / cat("ckpt-", n) / kLoraKohyaFile));
    EXPECT_FALSE(fs::exists(dir / cat("ckpt-", n) / "unet"));
  }
  test::expect_same_tensors(dir / "ckpt-6" / kLoraDiffusersFile,
                            tmp / "resumed/ckpt-6" / kLoraDiffusersFile);
  // Training moved the zero-initialised ups.
  double up = 0;
  for (const auto& [k, v] : state)
    if (k.find("lora_B") != std::string::npos) up += v.abs().sum().item<double>();
  EXPECT_GT(up, 0.0);
  // The checkpoint is the EMA of the adapters and loads back onto the model.
  auto unet = models::load_unet(test::fixtures() / "tiny-sd15/unet");
  const auto layers = models::load_lora_file(dir / "ckpt-6" / kLoraDiffusersFile, *unet);
  EXPECT_EQ(layers.size() * 2, state.size());
  const auto ema = test::load_tensors(dir / "state/ema.safetensors");
  const std::string q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
  EXPECT_TRUE(torch::allclose(layers.at(q).down, ema.at(q + ".lora_A.weight")));
  EXPECT_TRUE(
      torch::allclose(layers.at(q).up, ema.at(q + ".lora_B.weight") * 2.0));  // alpha / r folded in
  if (GetParam() == "dpo") {
    // Step 1: up = 0, so the trained model is its reference exactly and the loss is log 2.
    const auto rows = test::metric_rows(dir);
    ASSERT_FALSE(rows.empty());
    EXPECT_NEAR(rows[0]["loss/loss"].get<double>(), std::log(2.0), 1e-6);
    EXPECT_EQ(rows[0]["loss/model_mse_w"].get<double>(), rows[0]["loss/ref_mse_w"].get<double>());
  }
}

INSTANTIATE_TEST_SUITE_P(Objectives, LoraObjectiveTest,
                         ::testing::Values("dro", "sft", "dpo", "kto"),
                         [](const auto& info) { return info.param; });

// Checkpointed blocks recompute their forward in backward: the adapters must be inputs of the
// checkpoint, or their gradients inside those blocks would be lost. Losses, gradient norms and the
// trained adapters match the plain run's to float32 rounding.
TEST(LoraTrainer, GradientCheckpointingGivesThePlainRunsAdapters) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("dro", tmp / "data", tmp / "ckpt");
  c.lora_targets = "to_q,to_k,to_v,to_out.0,conv1,conv2,proj_in,proj_out";
  c.num_steps = 4;
  c.gradient_checkpointing = true;
  Trainer(c).run();
  auto plain = c;
  plain.gradient_checkpointing = false;
  plain.logdir = (tmp / "plain").string();
  Trainer(plain).run();
  const auto a = test::metric_rows(tmp / "ckpt"), b = test::metric_rows(tmp / "plain");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* key : {"loss/loss", "grad_norm"})
      EXPECT_NEAR(a[i][key].get<double>(), b[i][key].get<double>(),
                  1e-5 * std::abs(b[i][key].get<double>()) + 1e-12)
          << key << " at row " << i;
  const auto wa = test::load_tensors(tmp / "ckpt/state/unet.safetensors");
  const auto wb = test::load_tensors(tmp / "plain/state/unet.safetensors");
  ASSERT_EQ(wa.size(), wb.size());
  double moved = 0;
  for (const auto& [k, v] : wa) {
    EXPECT_TRUE(torch::allclose(v, wb.at(k), 1e-4, 1e-6)) << k;
    if (k.find("lora_B") != std::string::npos) moved += v.abs().sum().item<double>();
  }
  EXPECT_GT(moved, 0.0);
}

// A trained adapter (not a random one) merged into the weights from its checkpoint file gives the
// UNet output the trainer's on-the-fly adapters give, to float32 rounding.
TEST(LoraTrainer, TrainedAdaptersMergedMatchOnTheFly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("sft", tmp / "data", tmp / "run");
  c.num_steps = 4;
  c.use_ema = false;  // the checkpoint then holds the trained adapters themselves
  c.lora_targets = "to_q,to_k,to_v,to_out.0,ff.net.*,proj_in,proj_out,conv1,conv2";
  Trainer t(c);
  t.run();
  auto gen = make_generator(9);
  const auto x = torch::randn({2, 4, 16, 16}, gen), ctx = torch::randn({2, 5, 8}, gen);
  const auto ts = torch::tensor({20, 600}, torch::kLong);
  torch::NoGradGuard no_grad;
  t.unet().eval();
  const auto on_the_fly = t.unet().forward(x, ts, ctx);
  torch::Tensor base;
  {
    nn::LoraScope off(nn::LoraSlot::kOff);
    base = t.unet().forward(x, ts, ctx);
  }
  for (const char* file : {kLoraDiffusersFile, kLoraKohyaFile}) {
    auto merged = models::load_unet(test::fixtures() / "tiny-sd15/unet");
    merged->eval();
    models::merge_lora(*merged, models::load_lora_file(tmp / "run/ckpt-4" / file, *merged), 1.0);
    const auto out = merged->forward(x, ts, ctx);
    const double d = (out - on_the_fly).abs().max().item<double>();
    std::cout << "[ lora     ] " << file << ": merged vs on the fly after training, max |diff| " << d
              << " (training moved the output by " << (on_the_fly - base).abs().max().item<double>()
              << ")\n";
    EXPECT_LT(d, 1e-4) << file;
  }
  EXPECT_GT((on_the_fly - base).abs().max().item<double>(), 1e-3);
}

TEST(LoraTrainer, SdxlLayoutTrainsAndResumesExactly) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("dro", tmp / "data", tmp / "x");
  c.pretrained_model_name_or_path = (test::fixtures() / "tiny-sdxl").string();
  c.lora_targets = "to_q,to_k,to_v,to_out.0,ff.net.*,proj_in,proj_out";
  const fs::path dir = test::run_and_resume(c, tmp.path());
  // kohya's SDXL names are the original UNet's.
  auto k = io::SafetensorsFile::open(dir / "ckpt-6" / kLoraKohyaFile);
  EXPECT_TRUE(k->contains("lora_unet_input_blocks_4_1_proj_in.lora_down.weight"));
  EXPECT_TRUE(k->contains("lora_unet_middle_block_1_transformer_blocks_0_ff_net_2.alpha"));
}

// buffer_update_steps 4 is not a divisor of the accumulation of 2: the policy lags the trained
// adapters in a second adapter set, saved and restored with the state.
TEST(LoraTrainer, LaggedPolicyIsASecondAdapterSet) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("dro", tmp / "data", tmp / "x");
  c.buffer_update_steps = 4;
  c.lora_dropout = 0.1;  // masks from the learner's seeded stream: resume stays exact
  const fs::path dir = test::run_and_resume(c, tmp.path());
  const auto policy = test::load_tensors(dir / "state/policy.safetensors");
  const auto trained = test::load_tensors(dir / "state/unet.safetensors");
  ASSERT_EQ(policy.size(), trained.size());
  bool lags = false;
  double policy_up = 0;
  for (const auto& [k, v] : trained) {
    lags = lags || !torch::equal(v, policy.at(k));
    if (k.find("lora_B") != std::string::npos) policy_up += policy.at(k).abs().sum().item<double>();
  }
  EXPECT_TRUE(lags) << "the policy was refreshed at micro-step 4, the adapters trained on to 6";
  EXPECT_GT(policy_up, 0.0) << "the policy was never refreshed from the trained adapters";
}

TEST(LoraTrainer, Bf16AutocastKeepsFp32AdaptersOnABf16Unet) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("dro", tmp / "data", tmp / "run");
  c.mixed_precision = "bf16";
  c.num_steps = 2;
  c.checkpointing_steps = 2;
  Trainer t(c);
  t.run();
  EXPECT_EQ(t.unet().named_parameters()["conv_in.weight"].scalar_type(), torch::kBFloat16);
  for (const auto& [k, v] : test::load_tensors(tmp / "run/state/unet.safetensors"))
    EXPECT_EQ(v.scalar_type(), torch::kFloat32) << k;
}

TEST(LoraTrainer, OptionErrors) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("dro", tmp / "data", tmp / "run");
  c.num_steps = 2;
  c.checkpointing_steps = 2;
  Trainer(c).run();
  auto other = c;
  other.resume = true;
  other.lora_rank = 4;
  try {
    Trainer t(other);
    t.run();
    FAIL() << "a resume with another rank was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("lora_rank"), std::string::npos) << e.what();
  }
  // The default targets spelled out (with spaces) are the same targets: the resume is accepted.
  auto same = c;
  same.resume = true;
  same.lora_targets = "to_q, to_k,to_v ,to_out.0";
  Trainer(same).run();
  auto bad = c;
  bad.logdir = (tmp / "bad").string();
  bad.lora_targets = "to_q, nothing_like_this";
  try {
    Trainer t(bad);
    FAIL() << "an unknown target was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("nothing_like_this"), std::string::npos) << e.what();
  }
  auto no_rank = c;
  no_rank.lora_rank = 0;
  no_rank.lora_alpha = 8;
  EXPECT_THROW(no_rank.validate(), UsageError);
  auto dropout = c;
  dropout.lora_dropout = 0.1;
  dropout.gradient_checkpointing = true;
  EXPECT_THROW(dropout.validate(), UsageError);
}

// The trained file through the CLI: dro sample --lora in both layouts and the merged UNet folder
// give the same images; scale 0 gives the base's.
TEST(LoraCli, SampleMergeAndConvert) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  write_data(tmp / "data");
  auto c = lora_config("sft", tmp / "data", tmp / "run");
  c.num_steps = 4;
  c.use_ema = false;
  Trainer(c).run();
  const std::string model = (test::fixtures() / "tiny-sd15").string();
  const fs::path ckpt = tmp / "run/ckpt-4";
  auto sample = [&](const std::string& name, const std::string& extra) {
    auto [rc, out] = test::run_command(
        cat(DRO_BINARY, " sample --model ", model, " --prompt 'a red circle' --steps 4",
            " --device cpu --out ", (tmp / name).string(), " ", extra));
    EXPECT_EQ(rc, 0) << out;
    return file_bytes(tmp / name / "0" / "0.png");
  };
  const std::string base = sample("base", "");
  const std::string diffusers =
      sample("diffusers", "--lora " + (ckpt / kLoraDiffusersFile).string());
  const std::string kohya = sample("kohya", "--lora " + (ckpt / kLoraKohyaFile).string());
  EXPECT_NE(diffusers, base);
  EXPECT_EQ(kohya, diffusers);
  EXPECT_EQ(sample("zero", "--lora " + (ckpt / kLoraKohyaFile).string() + ":0"), base);
  auto [rc, out] = test::run_command(cat(DRO_BINARY, " merge-lora --model ", model, " --lora ",
                                         (ckpt / kLoraDiffusersFile).string(), " --out ",
                                         (tmp / "merged").string()));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(sample("merged", "--unet " + (tmp / "merged").string()), diffusers);
  auto [rc2, out2] = test::run_command(cat(DRO_BINARY, " merge-lora --model ", model, " --lora ",
                                           (ckpt / kLoraDiffusersFile).string(), " --out ",
                                           (tmp / "merged").string()));
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out2.find("exists"), std::string::npos) << out2;
  // convert-lora: kohya -> diffusers gives the file training wrote (fp32, same keys and values).
  auto [rc3, out3] = test::run_command(
      cat(DRO_BINARY, " convert-lora ", (ckpt / kLoraKohyaFile).string(), " --model ", model,
          " --to diffusers --out ", (tmp / "back.safetensors").string()));
  ASSERT_EQ(rc3, 0) << out3;
  const auto a = test::load_tensors(ckpt / kLoraDiffusersFile),
             b = test::load_tensors(tmp / "back.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) EXPECT_TRUE(torch::allclose(v, b.at(k), 1e-6, 1e-7)) << k;
  // A file for another model is refused by key.
  auto [rc4, out4] = test::run_command(
      cat(DRO_BINARY, " sample --model ", (test::fixtures() / "tiny-sdxl").string(),
          " --prompt x --steps 2 --device cpu --out ", (tmp / "xl").string(), " --lora ",
          (ckpt / kLoraDiffusersFile).string()));
  EXPECT_NE(rc4, 0);
  EXPECT_NE(out4.find("another architecture"), std::string::npos) << out4;
}

}  // namespace
}  // namespace dro::train
