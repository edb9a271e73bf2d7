// Component weight resolution: single file, variants, sharded index, PyTorch-only folders; and the
// model-folder parser on the fixtures.
#include "dro/io/weights.h"

#include <fstream>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/model_folder.h"
#include "dro/nn/state_dict.h"
#include "test_util.h"

namespace dro::io {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

TEST(Weights, SingleFileAndVariant) {
  TempDir dir;
  save_safetensors(dir / "diffusion_pytorch_model.safetensors", {{"a", torch::ones({2})}});
  save_safetensors(dir / "diffusion_pytorch_model.fp16.safetensors",
                   {{"a", torch::full({2}, 2.0).to(torch::kFloat16)}});
  auto plain = ComponentWeights::open(dir.path());
  EXPECT_EQ(plain.get("a")[0].item<float>(), 1.0f);
  auto half = ComponentWeights::open(dir.path(), "fp16");
  EXPECT_EQ(half.get("a").scalar_type(), torch::kFloat16);
  EXPECT_EQ(half.variant(), "fp16");
  EXPECT_THROW(ComponentWeights::open(dir.path(), "bf16"), IoError);
}

TEST(Weights, OnlyAVariantPresentIsUsed) {
  TempDir dir;
  save_safetensors(dir / "model.fp16.safetensors", {{"t", torch::ones({1}).to(torch::kFloat16)}});
  auto w = ComponentWeights::open(dir.path());
  EXPECT_EQ(w.variant(), "fp16");
  EXPECT_TRUE(w.contains("t"));
}

TEST(Weights, ShardedIndex) {
  TempDir dir;
  save_safetensors(dir / "diffusion_pytorch_model-00001-of-00002.safetensors", {{"a", torch::ones({2})}});
  save_safetensors(dir / "diffusion_pytorch_model-00002-of-00002.safetensors", {{"b", torch::zeros({3})}});
  OrderedJson idx = {{"metadata", {{"total_size", 20}}},
                     {"weight_map",
                      {{"a", "diffusion_pytorch_model-00001-of-00002.safetensors"},
                       {"b", "diffusion_pytorch_model-00002-of-00002.safetensors"}}}};
  write_json(dir / "diffusion_pytorch_model.safetensors.index.json", idx);
  auto w = ComponentWeights::open(dir.path());
  EXPECT_EQ(w.files().size(), 2u);
  EXPECT_EQ(w.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(w.get("b").size(0), 3);
  std::filesystem::remove(dir / "diffusion_pytorch_model-00002-of-00002.safetensors");
  try {
    ComponentWeights::open(dir.path());
    FAIL() << "missing shard accepted";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("00002-of-00002"), std::string::npos) << e.what();
  }
}

TEST(Weights, PickleOnlyFolderIsReadAsPyTorch) {
  // A .bin that is not a torch.save archive: the checkpoint reader's error, naming the file.
  TempDir dir;
  std::ofstream(dir / "diffusion_pytorch_model.bin") << "x";
  try {
    ComponentWeights::open(dir.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("diffusion_pytorch_model.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a PyTorch checkpoint"), std::string::npos) << e.what();
  }
  TempDir empty;
  EXPECT_THROW(ComponentWeights::open(empty.path()), IoError);
  // A pickle under another name is not guessed at; the error points at it.
  TempDir other;
  std::ofstream(other / "weights.ckpt") << "x";
  try {
    ComponentWeights::open(other.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("weights.ckpt"), std::string::npos) << e.what();
  }
}

TEST(Weights, SafetensorsPreferredOverPytorchFiles) {
  DRO_REQUIRE_FIXTURES();
  const auto src = test::fixtures() / "scorers" / "clip-vit-h-14-tiny";
  if (!std::filesystem::exists(src / "pytorch_model.bin")) GTEST_SKIP() << "no scorer fixtures";
  TempDir dir;
  std::filesystem::copy_file(src / "pytorch_model.bin", dir / "pytorch_model.bin");
  EXPECT_EQ(ComponentWeights::open(dir.path()).files()[0].filename(), "pytorch_model.bin");
  save_safetensors(dir / "model.safetensors", {{"a", torch::ones({2})}});
  const auto w = ComponentWeights::open(dir.path());
  EXPECT_EQ(w.files()[0].filename(), "model.safetensors");
  EXPECT_EQ(w.names(), std::vector<std::string>{"a"});
}

struct Tiny : torch::nn::Module {
  Tiny() {
    lin = register_module("lin", torch::nn::Linear(3, 2));
    register_buffer("buf", torch::zeros({4}));
  }
  torch::nn::Linear lin{nullptr};
};

TEST(Weights, LoadReportsMissingUnexpectedAndMisshapenKeys) {
  TempDir dir;
  Tiny m;
  save_safetensors(dir / "model.safetensors",
                   {{"lin.weight", torch::ones({2, 3})}, {"lin.bias", torch::ones({2})},
                    {"buf", torch::arange(4).to(torch::kFloat)}});
  nn::load_weights(m, ComponentWeights::open(dir.path()), {}, "tiny");
  EXPECT_EQ(m.lin->weight.sum().item<float>(), 6.0f);
  EXPECT_EQ(m.named_buffers()["buf"][3].item<float>(), 3.0f);

  TempDir bad;
  save_safetensors(bad / "model.safetensors",
                   {{"lin.weight", torch::ones({3, 3})}, {"extra", torch::ones({2})},
                    {"buf", torch::zeros({4})}});
  try {
    nn::load_weights(m, ComponentWeights::open(bad.path()), {}, "tiny");
    FAIL();
  } catch (const IoError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing 1: 'lin.bias'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected 1: 'extra'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("wrong shape 1: 'lin.weight (file [3, 3], model [2, 3])'"), std::string::npos) << msg;
  }
  // The failed load left the earlier weights untouched.
  EXPECT_EQ(m.lin->weight.sum().item<float>(), 6.0f);
}

TEST(Weights, SaveComponentRoundTrip) {
  TempDir dir;
  Tiny a, b;
  nn::save_component(dir / "c", a, OrderedJson{{"_class_name", "Tiny"}, {"x", 1}}, "model");
  nn::load_weights(b, ComponentWeights::open(dir / "c"), {}, "tiny");
  EXPECT_TRUE(torch::equal(a.lin->weight, b.lin->weight));
  EXPECT_EQ(read_json(dir / "c" / "config.json")["x"], 1);
}

TEST(ModelFolder, FixtureLayouts) {
  DRO_REQUIRE_FIXTURES();
  auto sd = ModelFolder::open(test::fixtures() / "tiny-sd15");
  EXPECT_EQ(sd.pipeline_class, "StableDiffusionPipeline");
  EXPECT_FALSE(sd.is_sdxl());
  EXPECT_EQ(sd.components.size(), 5u);
  EXPECT_EQ(sd.component("unet").class_name, "UNet2DConditionModel");
  auto xl = ModelFolder::open(test::fixtures() / "tiny-sdxl");
  EXPECT_TRUE(xl.is_sdxl());
  EXPECT_EQ(xl.components.size(), 7u);
  EXPECT_THROW(sd.component("text_encoder_2"), UsageError);
}

TEST(ModelFolder, MissingComponentFolderIsNamed) {
  TempDir dir;
  write_json(dir / "model_index.json", OrderedJson{{"_class_name", "StableDiffusionPipeline"},
                                                   {"unet", {"diffusers", "UNet2DConditionModel"}}});
  try {
    ModelFolder::open(dir.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'unet'"), std::string::npos) << e.what();
  }
}

// Components dro never reads may be listed without their folder (a download that skipped the
// safety checker); a listed component dro needs may not.
TEST(ModelFolder, UnusedComponentsMayBeAbsent) {
  TempDir dir;
  fs::create_directories(dir / "unet");
  fs::create_directories(dir / "scheduler");
  write_json(dir / "model_index.json",
             OrderedJson{{"_class_name", "StableDiffusionPipeline"},
                         {"unet", {"diffusers", "UNet2DConditionModel"}},
                         {"scheduler", {"diffusers", "PNDMScheduler"}},
                         {"safety_checker", {"stable_diffusion", "StableDiffusionSafetyChecker"}},
                         {"feature_extractor", {"transformers", "CLIPImageProcessor"}},
                         {"image_encoder", {"transformers", "CLIPVisionModelWithProjection"}}});
  auto m = ModelFolder::open(dir.path());
  EXPECT_EQ(m.components.size(), 2u);
  EXPECT_EQ(m.absent, (std::vector<std::string>{"safety_checker", "feature_extractor", "image_encoder"}));
  EXPECT_FALSE(m.has("safety_checker"));
  fs::remove_all(dir / "scheduler");
  try {
    ModelFolder::open(dir.path());
    FAIL() << "a missing scheduler folder was accepted";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("'scheduler'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dro::io
