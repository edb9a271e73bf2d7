// CLIPModel (both towers, projections, logit_scale) and open_clip checkpoints on it, against the
// scorer fixtures' golden embeddings (transformers' CLIPModel and HPSv2's open_clip on the same
// weights and the same preprocessed pixels / token ids).
#include "dro/models/clip_model.h"

#include <iostream>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/io/torch_checkpoint.h"
#include "dro/models/open_clip.h"
#include "test_util.h"

namespace dro::models {
namespace {

namespace fs = std::filesystem;
using test::fixtures;

std::map<std::string, torch::Tensor> golden(const std::string& file) {
  return io::load_safetensors(test::scorer_fixtures() / "golden" / file);
}

std::vector<std::string> image_stems() {
  std::vector<std::string> out;
  for (const auto& e : io::read_json(test::scorer_fixtures() / "golden" / "images.json")) {
    std::string f = fs::path(e["file"].get<std::string>()).stem().string();
    out.push_back(f);
  }
  return out;
}

// Embeddings: relative 1e-5 of the row's scale (README); the observed differences are ~1e-7.
::testing::AssertionResult close(const std::string& what, const torch::Tensor& actual,
                                 const torch::Tensor& expected, double tol) {
  std::cout << "[ parity   ] " << what << ": max |diff| = " << test::max_abs_diff(actual, expected)
            << " (scale " << expected.abs().max().item<double>() << ")\n";
  return test::allclose(actual, expected, tol);
}

torch::Tensor stack_pixels(const std::map<std::string, torch::Tensor>& g,
                           const std::vector<std::string>& stems, const torch::Tensor& valid = {}) {
  std::vector<torch::Tensor> rows;
  for (size_t i = 0; i < stems.size(); ++i) {
    if (valid.defined() && valid[i].item<int64_t>() == 0) continue;
    rows.push_back(g.at(stems[i] + ".pixel_values"));
  }
  return torch::stack(rows);
}

torch::Tensor normalized(const torch::Tensor& x) {
  return x / x.norm(2, -1, true);
}

TEST(ClipModelConfig, LegacyDictsOverrideWithDefaultsAndTopLevelProjection) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto h =
      ClipModelConfig::load(test::scorer_fixtures() / "clip-vit-h-14-tiny" / "config.json");
  EXPECT_EQ(h.projection_dim, 8);  // top level, not the sub-configs' 512
  EXPECT_EQ(h.vision.hidden_act, "gelu");
  EXPECT_EQ(h.vision.image_size, 42);
  EXPECT_EQ(h.vision.patch_size, 14);
  EXPECT_EQ(h.text.eos_token_id, 2);  // legacy: argmax pooling
  EXPECT_EQ(h.text.max_position_embeddings, 77);

  const auto l =
      ClipModelConfig::load(test::scorer_fixtures() / "clip-vit-l-14-tiny" / "config.json");
  EXPECT_EQ(l.projection_dim, 768);
  EXPECT_EQ(l.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(l.vision.image_size, 32);
  EXPECT_EQ(l.vision.num_attention_heads, 3);
  EXPECT_EQ(l.text.num_hidden_layers, 1);
  // text_config_dict lacks eos_token_id: the class default replaces text_config's legacy 2.
  EXPECT_EQ(l.text.eos_token_id, 49407);

  // A key missing from the *_dict falls back to the class default, not to *_config.
  io::OrderedJson j = {{"projection_dim", 16},
                       {"vision_config", {{"hidden_act", "gelu"}, {"image_size", 64}}},
                       {"vision_config_dict", {{"hidden_size", 32}, {"num_attention_heads", 2}}}};
  const auto c = ClipModelConfig::from_json(j, "test");
  EXPECT_EQ(c.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(c.vision.image_size, 224);
  EXPECT_EQ(c.vision.hidden_size, 32);

  io::OrderedJson bad = {{"vision_config", {{"hidden_act", "relu"}}}};
  EXPECT_THROW(ClipModelConfig::from_json(bad, "bad.json"), UsageError);
}

TEST(ClipModel, KeysEqualTheCheckpoint) {
  DRO_REQUIRE_SCORER_FIXTURES();
  ClipModel model(
      ClipModelConfig::load(test::scorer_fixtures() / "clip-vit-h-14-tiny" / "config.json"));
  std::set<std::string> ours;
  for (const auto& [k, t] : nn::state_tensors(*model)) ours.insert(k);
  std::set<std::string> file;
  const auto st = io::SafetensorsFile::open(test::scorer_fixtures() / "clip-vit-h-14-tiny" /
                                            "model.safetensors");
  for (const auto& ti : st->tensors()) file.insert(ti.name);
  EXPECT_EQ(ours, file);
}

TEST(ClipModel, PickScoreEmbeddingsAndScoresMatchTransformers) {
  DRO_REQUIRE_SCORER_FIXTURES();
  torch::NoGradGuard no_grad;
  auto g = golden("pickscore.safetensors");
  auto model = load_clip_model(test::scorer_fixtures() / "clip-vit-h-14-tiny");
  const torch::Tensor img = model->get_image_features(stack_pixels(g, image_stems()));
  EXPECT_TRUE(close("pickscore image_embeds", img, g.at("image_embeds"), 1e-5));
  const torch::Tensor txt = model->get_text_features(g.at("input_ids"), g.at("attention_mask"));
  EXPECT_TRUE(close("pickscore text_embeds", txt, g.at("text_embeds"), 1e-5));
  EXPECT_NEAR(model->logit_scale.item<double>(), g.at("logit_scale").item<double>(), 0);
  const torch::Tensor scores =
      model->logit_scale.exp() * torch::matmul(normalized(img), normalized(txt).t());
  EXPECT_TRUE(close("pickscore scores", scores, g.at("scores"), 2e-3));
  // The batch's padding never changes an embedding (causal text tower).
  const torch::Tensor three =
      model->get_text_features(g.at("batch3.input_ids"), g.at("batch3.attention_mask"));
  EXPECT_TRUE(close("pickscore batch3 text_embeds", three,
                    g.at("text_embeds_single").narrow(0, 0, 3), 1e-5));
}

TEST(ClipModel, PytorchBinLoadsTheSameWeights) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const fs::path dir = test::scorer_fixtures() / "clip-vit-h-14-tiny";
  auto from_st = load_clip_model(dir);
  auto state = io::torch_state_dict(dir / "pytorch_model.bin");
  ClipModel from_bin(ClipModelConfig::load(dir / "config.json"));
  load_clip_weights(from_bin, state, {}, "test", "pytorch_model.bin");
  auto a = nn::state_tensors(*from_st), b = nn::state_tensors(*from_bin);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

TEST(ClipModel, VisionTowerAloneGivesTheAestheticEmbeddings) {
  DRO_REQUIRE_SCORER_FIXTURES();
  torch::NoGradGuard no_grad;
  auto g = golden("aesthetic.safetensors");
  auto model =
      load_clip_model(test::scorer_fixtures() / "clip-vit-l-14-tiny", ClipTowers{false, true});
  EXPECT_FALSE(model->text_model);
  const torch::Tensor img = model->get_image_features(stack_pixels(g, image_stems()));
  EXPECT_TRUE(close("aesthetic image_embeds", img, g.at("image_embeds"), 1e-5));
  EXPECT_THROW(model->get_text_features(torch::zeros({1, 3}, torch::kInt64)), UsageError);
  EXPECT_THROW(model->get_image_features(torch::zeros({1, 3, 31, 31})), UsageError);
}

TEST(OpenClip, ConfigsBecomeTheSameModel) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto a = OpenClipConfig::load(test::scorer_fixtures() / "hpsv2-tiny" / "ViT-H-14.json");
  const auto b = OpenClipConfig::load(test::scorer_fixtures() / "clip-vit-h-14-tiny" /
                                      "open_clip_config.json");
  const auto hf =
      ClipModelConfig::load(test::scorer_fixtures() / "clip-vit-h-14-tiny" / "config.json");
  for (const auto* c : {&a.clip, &b.clip}) {
    EXPECT_EQ(c->projection_dim, hf.projection_dim);
    EXPECT_EQ(c->vision.hidden_size, hf.vision.hidden_size);
    EXPECT_EQ(c->vision.num_attention_heads, hf.vision.num_attention_heads);
    EXPECT_EQ(c->vision.intermediate_size, hf.vision.intermediate_size);
    EXPECT_EQ(c->vision.image_size, hf.vision.image_size);
    EXPECT_EQ(c->text.hidden_size, hf.text.hidden_size);
    EXPECT_EQ(c->text.intermediate_size, hf.text.intermediate_size);
    EXPECT_EQ(c->text.num_attention_heads, hf.text.num_attention_heads);
    EXPECT_EQ(c->vision.hidden_act, "gelu");
  }
  const auto h14 = OpenClipConfig::vit_h_14();
  EXPECT_EQ(h14.clip.vision.num_attention_heads, 16);
  EXPECT_EQ(h14.clip.vision.intermediate_size, 5120);
  EXPECT_EQ(h14.clip.text.intermediate_size, 4096);
  EXPECT_EQ(h14.clip.projection_dim, 1024);
  io::OrderedJson timm = {
      {"embed_dim", 8},
      {"vision_cfg",
       {{"timm_model_name", "vit"}, {"width", 16}, {"layers", 1}, {"patch_size", 14}}},
      {"text_cfg", {{"width", 4}, {"heads", 2}}}};
  EXPECT_THROW(OpenClipConfig::from_json(timm, "timm.json"), UsageError);
}

TEST(OpenClip, LaionWeightsEqualTheTransformersFile) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const fs::path dir = test::scorer_fixtures() / "clip-vit-h-14-tiny";
  auto hf = load_clip_model(dir);
  auto oc = load_open_clip_model(OpenClipConfig::load(dir / "open_clip_config.json"),
                                 io::torch_state_dict(dir / "open_clip_pytorch_model.bin"), {},
                                 "open_clip_pytorch_model.bin");
  auto a = nn::state_tensors(*hf), b = nn::state_tensors(*oc);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

TEST(OpenClip, Hpsv2EmbeddingsMatchTheReference) {
  DRO_REQUIRE_SCORER_FIXTURES();
  torch::NoGradGuard no_grad;
  auto g = golden("hpsv2.safetensors");
  auto model = load_open_clip_model(
      OpenClipConfig::load(test::scorer_fixtures() / "hpsv2-tiny" / "ViT-H-14.json"),
      io::torch_state_dict(test::scorer_fixtures() / "hpsv2-tiny" / "HPS_v2_compressed.pt"), {},
      "HPS_v2_compressed.pt");
  const torch::Tensor img =
      model->get_image_features(stack_pixels(g, image_stems(), g.at("valid")));
  EXPECT_TRUE(close("hpsv2 image_embeds", img, g.at("image_embeds"), 1e-5));
  const torch::Tensor txt = model->get_text_features(g.at("input_ids"));
  EXPECT_TRUE(close("hpsv2 text_embeds", txt, g.at("text_embeds"), 1e-5));
  EXPECT_TRUE(close("hpsv2 image_features", normalized(img), g.at("image_features"), 1e-5));
  const torch::Tensor scores = 100 * torch::matmul(normalized(img), normalized(txt).t());
  const torch::Tensor valid_rows = g.at("valid").nonzero().flatten();
  EXPECT_TRUE(close("hpsv2 scores", scores, g.at("scores").index_select(0, valid_rows), 2e-3));
}

TEST(OpenClip, ClipScoreEmbeddingsMatchTheReference) {
  DRO_REQUIRE_SCORER_FIXTURES();
  torch::NoGradGuard no_grad;
  auto g = golden("clip.safetensors");
  auto pixels = golden("hpsv2.safetensors");  // the same transform, stored once
  const fs::path dir = test::scorer_fixtures() / "clip-vit-h-14-tiny";
  auto model = load_open_clip_model(OpenClipConfig::load(dir / "open_clip_config.json"),
                                    io::torch_state_dict(dir / "open_clip_pytorch_model.bin"), {},
                                    "open_clip_pytorch_model.bin");
  const torch::Tensor img =
      model->get_image_features(stack_pixels(pixels, image_stems(), g.at("valid")));
  EXPECT_TRUE(close("clip image_embeds", img, g.at("image_embeds"), 1e-5));
  const torch::Tensor txt = model->get_text_features(g.at("input_ids"));
  EXPECT_TRUE(close("clip text_embeds", txt, g.at("text_embeds"), 1e-5));
  const torch::Tensor scores = torch::matmul(normalized(img), normalized(txt).t());
  const torch::Tensor valid_rows = g.at("valid").nonzero().flatten();
  EXPECT_TRUE(close("clip scores", scores, g.at("scores").index_select(0, valid_rows), 2e-5));
}

TEST(OpenClip, BadStateDictsNameTheKeys) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto cfg = OpenClipConfig::load(test::scorer_fixtures() / "hpsv2-tiny" / "ViT-H-14.json");
  auto state =
      io::torch_state_dict(test::scorer_fixtures() / "hpsv2-tiny" / "HPS_v2_compressed.pt");
  auto extra = state;
  extra["visual.bogus.weight"] = torch::zeros({1});
  try {
    load_open_clip_model(cfg, extra, {}, "extra.pt");
    FAIL() << "an unknown key loaded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("visual.bogus.weight"), std::string::npos) << e.what();
  }
  auto missing = state;
  missing.erase("transformer.resblocks.1.attn.in_proj_weight");
  try {
    load_open_clip_model(cfg, missing, {}, "missing.pt");
    FAIL() << "a missing key loaded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.resblocks.1.attn.in_proj_weight"),
              std::string::npos)
        << e.what();
  }
  auto wrong = state;
  wrong["ln_final.weight"] = torch::zeros({5});
  EXPECT_THROW(load_open_clip_model(cfg, wrong, {}, "wrong.pt"), IoError);
  // The vision tower alone reads no text keys (and needs none).
  auto vision_only = state;
  vision_only.erase("token_embedding.weight");
  EXPECT_NO_THROW(load_open_clip_model(cfg, vision_only, ClipTowers{false, true}, "vision.pt"));
}

}  // namespace
}  // namespace dro::models

namespace dro::models {
namespace {

// Half-precision weights (what `dro score --dtype bf16` loads on CUDA), run here on the CPU: the
// padding mask stays finite and the embeddings stay within bf16's ~3 significant digits.
TEST(ClipModel, Bf16WeightsGiveCloseEmbeddings) {
  DRO_REQUIRE_SCORER_FIXTURES();
  torch::NoGradGuard no_grad;
  auto g = io::load_safetensors(test::scorer_fixtures() / "golden" / "pickscore.safetensors");
  nn::LoadOptions o;
  o.dtype = torch::kBFloat16;
  auto model = load_clip_model(test::scorer_fixtures() / "clip-vit-h-14-tiny", {}, o);
  const torch::Tensor txt =
      model->get_text_features(g.at("input_ids"), g.at("attention_mask")).to(torch::kFloat32);
  ASSERT_TRUE(torch::isfinite(txt).all().item<bool>());
  const double scale = g.at("text_embeds").abs().max().item<double>();
  std::cout << "[ parity   ] bf16 text_embeds: max |diff| = "
            << test::max_abs_diff(txt, g.at("text_embeds")) << " (scale " << scale << ")\n";
  EXPECT_TRUE(test::allclose(txt, g.at("text_embeds"), 0.05 * scale));
}

}  // namespace
}  // namespace dro::models
