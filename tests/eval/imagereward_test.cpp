// ImageReward against the reference's golden tensors (fixtures' imagereward-tiny: ImageReward.pt,
// med_config.json, the ViT sizes of vit_config.json): pixels, the BLIP ViT's image embeddings, the
// cross-attending BERT's first-token features, the MLP rewards and the final scores, each
// printing its largest difference; then the loader's errors for malformed files.
#include "dro/models/image_reward.h"

#include <algorithm>
#include <functional>
#include <set>

#include "dro/core/error.h"
#include "dro/eval/scorer.h"
#include "dro/io/atomic_file.h"
#include "dro/io/safetensors.h"
#include "dro/io/torch_checkpoint.h"
#include "dro/text/bert_tokenizer.h"
#include "dro/vision/torchvision_transform.h"
#include "vision/golden.h"

namespace dro::models {
namespace {

namespace fs = std::filesystem;

fs::path tiny() {
  return test::scorer_fixtures() / "imagereward-tiny";
}

BlipVitConfig tiny_vit() {
  return BlipVitConfig::load(tiny() / "vit_config.json");
}

ImageRewardModel tiny_model() {
  return load_image_reward(tiny() / "ImageReward.pt", tiny_vit(),
                           MedBertConfig::load(tiny() / "med_config.json"), {});
}

eval::ScorerModels tiny_models() {
  eval::ScorerModels m;
  m.imagereward_checkpoint = tiny() / "ImageReward.pt";
  m.imagereward_med_config = tiny() / "med_config.json";
  m.imagereward_vit_config = tiny() / "vit_config.json";
  m.bert_tokenizer = test::scorer_fixtures() / "bert-base-uncased";
  return m;
}

// The README's limit for ImageReward scores: |diff| <= 5e-5 + 1e-5 |ref|; embeddings and features
// (LayerNorm outputs of order 1) within 1e-5.
constexpr double kFeatureTol = 1e-5;
::testing::AssertionResult scores_close(const torch::Tensor& got, const torch::Tensor& want) {
  const torch::Tensor limit = 5e-5 + 1e-5 * want.to(torch::kFloat64).abs();
  const torch::Tensor over = (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs() > limit;
  if (over.any().item<bool>())
    return ::testing::AssertionFailure()
           << over.sum().item<int64_t>() << " values beyond the limit; max |diff| "
           << test::max_abs_diff(got, want);
  return ::testing::AssertionSuccess();
}

TEST(ImageReward, ConfigsAndKeys) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const BlipVitConfig vit = tiny_vit();
  EXPECT_EQ(vit.image_size, 48);
  EXPECT_EQ(vit.embed_dim, 16);
  EXPECT_EQ(vit.num_heads, 2);
  EXPECT_EQ(vit.mlp_hidden(), 64);
  const BlipVitConfig official;
  EXPECT_EQ(official.describe(), "ViT 1024 wide, 24 blocks, 16 heads, patch 16 at 224 px");
  const MedBertConfig med = MedBertConfig::load(tiny() / "med_config.json");
  EXPECT_EQ(med.hidden_size, 6);
  EXPECT_EQ(med.vocab_size, 30524);
  EXPECT_EQ(med.encoder_width, 768);  // as the file says; the loader replaces it by the ViT width
  EXPECT_TRUE(med.add_cross_attention);
  // Every tensor of the file is a parameter of the model (or one of the 5 known extras), and the
  // other way round.
  ImageRewardModel model = tiny_model();
  EXPECT_EQ(model->blip->text_encoder->config().encoder_width, 16);
  const auto sd = io::read_torch_state_dict(tiny() / "ImageReward.pt").tensors;
  std::set<std::string> ours;
  for (const auto& p : model->named_parameters()) ours.insert(p.key());
  size_t extras = 0;
  for (const auto& [k, t] : sd) {
    if (ours.count(k)) {
      EXPECT_TRUE(torch::equal(model->named_parameters()[k], t)) << k;
      continue;
    }
    ++extras;
    EXPECT_TRUE(k == "blip.text_encoder.embeddings.position_ids" ||
                k.rfind("blip.vision_proj.", 0) == 0 || k.rfind("blip.text_proj.", 0) == 0)
        << k;
  }
  EXPECT_EQ(extras, 5u);
  EXPECT_EQ(ours.size() + extras, sd.size());
}

TEST(ImageReward, PixelsThroughTheScorer) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("imagereward.safetensors");
  auto scorer = eval::make_scorer(eval::ScorerKind::kImageReward, tiny_models(), {});
  double worst = 0.0;
  for (const auto& g : test::golden_images()) {
    std::vector<std::string> notes;
    const torch::Tensor px =
        scorer->preprocess(vision::decode_image_file(test::scorer_fixtures() / g.file), notes);
    const torch::Tensor& want = gold.at(g.name + ".pixel_values");
    worst = std::max(worst, test::max_abs_diff(px, want));
    if (test::decoded_exactly(g)) {
      EXPECT_TRUE(test::allclose(px, want, 1e-6)) << g.name;
    }
    EXPECT_TRUE(notes.empty()) << g.name;
  }
  std::cout << "[imagereward] pixel_values: max |diff| " << worst << "\n";
}

TEST(ImageReward, GoldenEmbeddingsFeaturesAndScores) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("imagereward.safetensors");
  ImageRewardModel model = tiny_model();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> px;
  for (const auto& g : test::golden_images()) px.push_back(gold.at(g.name + ".pixel_values"));
  const torch::Tensor pixels = torch::stack(px);  // [9, 3, 48, 48], the reference's own pixels

  const torch::Tensor img = model->image_embeds(pixels);
  const double d_img = test::max_abs_diff(img, gold.at("image_embeds"));
  std::cout << "[imagereward] image_embeds [9, 10, 16]: max |diff| " << d_img << "\n";
  EXPECT_TRUE(test::allclose(img, gold.at("image_embeds"), kFeatureTol));

  const torch::Tensor& ids = gold.at("input_ids");  // [8, 35]
  const torch::Tensor& mask = gold.at("attention_mask");
  const int64_t n_img = img.size(0), n_txt = ids.size(0);
  // Every (image, prompt) pair in one batch: image-major, as the golden [image, prompt] tensors.
  const torch::Tensor pair_img = img.repeat_interleave(n_txt, 0);  // [72, 10, 16]
  const torch::Tensor pair_ids = ids.repeat({n_img, 1});           // [72, 35]
  const torch::Tensor pair_mask = mask.repeat({n_img, 1});
  const torch::Tensor txt =
      model->text_features(pair_ids, pair_mask, pair_img).view({n_img, n_txt, -1});
  std::cout << "[imagereward] txt_features [9, 8, 6]: max |diff| "
            << test::max_abs_diff(txt, gold.at("txt_features")) << "\n";
  EXPECT_TRUE(test::allclose(txt, gold.at("txt_features"), kFeatureTol));

  const torch::Tensor raw = model->raw_reward(txt.view({n_img * n_txt, -1})).view({n_img, n_txt});
  std::cout << "[imagereward] rewards_raw [9, 8]: max |diff| "
            << test::max_abs_diff(raw, gold.at("rewards_raw")) << "\n";
  EXPECT_TRUE(scores_close(raw, gold.at("rewards_raw")));

  const torch::Tensor scores =
      model->score(pixels.repeat_interleave(n_txt, 0), pair_ids, pair_mask).view({n_img, n_txt});
  std::cout << "[imagereward] scores [9, 8]: max |diff| "
            << test::max_abs_diff(scores, gold.at("scores")) << "\n";
  EXPECT_TRUE(scores_close(scores, gold.at("scores")));
  // The constants are the reference's, as stored.
  EXPECT_EQ(gold.at("mean_std")[0].item<float>(), static_cast<float>(kImageRewardMean));
  EXPECT_EQ(gold.at("mean_std")[1].item<float>(), static_cast<float>(kImageRewardStd));
  // A prompt scored alone gives what it gives in the batch (padding to 35 either way).
  const torch::Tensor one =
      model->score(pixels.narrow(0, 2, 1), ids.narrow(0, 5, 1), mask.narrow(0, 5, 1));
  EXPECT_NEAR(one.item<double>(), scores[2][5].item<double>(), 1e-6);
}

TEST(ImageReward, ScorerFromDecodedImagesAndPrompts) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("imagereward.safetensors");
  auto scorer = eval::make_scorer(eval::ScorerKind::kImageReward, tiny_models(), {});
  ASSERT_EQ(scorer->keys().size(), 1u);
  const auto& info = scorer->keys()[0];
  EXPECT_EQ(info.key, "imagereward");
  EXPECT_EQ(info.weights_sha256.size(), 64u);
  EXPECT_EQ(info.weight_files.size(), 3u);
  EXPECT_NE(info.units.find("0.16717"), std::string::npos) << info.units;
  EXPECT_EQ(eval::planned_keys(eval::ScorerKind::kImageReward, {}, false, false),
            std::vector<std::string>{"imagereward"});

  const auto prompts = test::golden_prompts();
  const auto images = test::golden_images();
  std::vector<torch::Tensor> px;
  std::vector<std::string> pair_prompts;
  for (const auto& g : images) {
    std::vector<std::string> notes;
    const torch::Tensor p =
        scorer->preprocess(vision::decode_image_file(test::scorer_fixtures() / g.file), notes);
    for (const auto& prompt : prompts) {
      px.push_back(p);
      pair_prompts.push_back(prompt);
    }
  }
  const auto s = scorer->score(torch::stack(px), pair_prompts);
  ASSERT_EQ(s.size(), 1u);
  const torch::Tensor got =
      torch::tensor(s[0], torch::kFloat64).view({int64_t(images.size()), int64_t(prompts.size())});
  std::cout << "[imagereward] scorer (decode -> score) [9, 8]: max |diff| "
            << test::max_abs_diff(got, gold.at("scores")) << "\n";
  EXPECT_TRUE(scores_close(got, gold.at("scores")));
}

std::string load_error(const fs::path& checkpoint, const BlipVitConfig& vit,
                       const MedBertConfig& med) {
  try {
    load_image_reward(checkpoint, vit, med, {});
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool has(const std::string& msg, const std::string& part) {
  return msg.find(part) != std::string::npos;
}

TEST(ImageReward, MalformedCheckpointsAreClearErrors) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  const MedBertConfig med = MedBertConfig::load(tiny() / "med_config.json");
  const auto sd = io::read_torch_state_dict(tiny() / "ImageReward.pt").tensors;
  auto write = [&](const std::string& name, const std::function<void(io::NamedTensors&)>& edit) {
    io::NamedTensors t;
    for (const auto& [k, v] : sd) t.emplace_back(k, v.contiguous());
    edit(t);
    io::save_safetensors(tmp / name, t, {});
    return tmp / name;
  };
  auto drop = [](const std::string& key) {
    return [key](io::NamedTensors& t) {
      t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& kv) { return kv.first == key; }),
              t.end());
    };
  };
  // The same tensors as safetensors load and score identically (the key check is the format's).
  const fs::path same = write("same.safetensors", [](io::NamedTensors&) {});
  EXPECT_EQ(load_error(same, tiny_vit(), med), "(no error)");

  // A missing key, named.
  std::string e =
      load_error(write("missing.safetensors",
                       drop("blip.text_encoder.encoder.layer.1.crossattention.self.key.bias")),
                 tiny_vit(), med);
  EXPECT_TRUE(has(e, "missing 1: 'blip.text_encoder.encoder.layer.1.crossattention.self.key.bias'"))
      << e;
  EXPECT_TRUE(has(e, "missing.safetensors")) << e;
  // A mis-shaped one, with both shapes.
  e = load_error(write("shape.safetensors",
                       [](io::NamedTensors& t) {
                         for (auto& [k, v] : t)
                           if (k == "blip.visual_encoder.blocks.1.mlp.fc1.weight")
                             v = torch::zeros({32, 16});
                       }),
                 tiny_vit(), med);
  EXPECT_TRUE(has(e,
                  "wrong shape 1: 'blip.visual_encoder.blocks.1.mlp.fc1.weight (file [32, 16], "
                  "model [64, 16])'"))
      << e;
  // An unexpected one.
  e = load_error(write("extra.safetensors",
                       [](io::NamedTensors& t) {
                         t.emplace_back("blip.visual_encoder.head.weight", torch::zeros({2, 16}));
                       }),
                 tiny_vit(), med);
  EXPECT_TRUE(has(e, "unexpected 1: 'blip.visual_encoder.head.weight'")) << e;
  // The MLP head: a missing layer, a wrong input width.
  e = load_error(write("mlp.safetensors", drop("mlp.layers.6.weight")), tiny_vit(), med);
  EXPECT_TRUE(has(e, "missing 'mlp.layers.6.weight'")) << e;
  e = load_error(write("mlpw.safetensors",
                       [](io::NamedTensors& t) {
                         for (auto& [k, v] : t)
                           if (k == "mlp.layers.0.weight") v = torch::zeros({16, 7});
                       }),
                 tiny_vit(), med);
  EXPECT_TRUE(has(e, "'mlp.layers.0.weight' has shape [16, 7]; expected [out, 6]")) << e;
  // position_ids of the wrong length.
  e = load_error(write("pos.safetensors",
                       [](io::NamedTensors& t) {
                         for (auto& [k, v] : t)
                           if (k == "blip.text_encoder.embeddings.position_ids")
                             v = torch::arange(30).unsqueeze(0);
                       }),
                 tiny_vit(), med);
  EXPECT_TRUE(has(e, "position_ids' is Long [1, 30]; expected int64 [1, 40]")) << e;
  // The official ViT-L/16 sizes against the tiny checkpoint: every ViT key mis-shaped, and a hint.
  e = load_error(tiny() / "ImageReward.pt", BlipVitConfig{}, med);
  EXPECT_TRUE(has(e, "blip.visual_encoder.cls_token (file [1, 1, 16], model [1, 1, 1024])")) << e;
  EXPECT_TRUE(has(e, "--imagereward-vit-config")) << e;
  // A truncated file.
  const std::string bytes = io::read_file(tiny() / "ImageReward.pt");
  io::write_file_atomically(tmp / "cut.pt", bytes.substr(0, bytes.size() / 2));
  e = load_error(tmp / "cut.pt", tiny_vit(), med);
  EXPECT_TRUE(has(e, "cut.pt")) << e;
}

TEST(ImageReward, BadConfigsAndPathsAreClearErrors) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  auto med_error = [&](const std::string& edit_key, const io::OrderedJson& value) {
    io::OrderedJson j = io::read_json(tiny() / "med_config.json");
    j[edit_key] = value;
    io::write_json(tmp / "med.json", j);
    try {
      load_image_reward(tiny() / "ImageReward.pt", tiny_vit(),
                        MedBertConfig::load(tmp / "med.json"), {});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  std::string e = med_error("add_cross_attention", false);
  EXPECT_TRUE(has(e, "add_cross_attention")) << e;
  e = med_error("hidden_act", "mish");
  EXPECT_TRUE(has(e, "hidden_act 'mish'") && has(e, "med.json")) << e;
  e = med_error("num_attention_heads", 4);
  EXPECT_TRUE(has(e, "not a multiple of num_attention_heads 4")) << e;
  e = med_error("hidden_size", "6");
  EXPECT_TRUE(has(e, "'hidden_size' has the wrong type")) << e;
  // vit_config.json: an unknown (misspelt) key, a bad value.
  io::write_file_atomically(tmp / "vit.json", "{\"embed_dims\": 16}");
  try {
    BlipVitConfig::load(tmp / "vit.json");
    ADD_FAILURE() << "embed_dims accepted";
  } catch (const UsageError& err) {
    EXPECT_TRUE(has(err.what(), "unknown key 'embed_dims'")) << err.what();
  }
  io::write_file_atomically(tmp / "vit.json", "{\"embed_dim\": 16, \"num_heads\": 3}");
  EXPECT_THROW(BlipVitConfig::load(tmp / "vit.json"), UsageError);
  // The scorer names the flag of a missing path, and refuses a tokenizer larger than the vocab.
  eval::ScorerModels m = tiny_models();
  m.bert_tokenizer.clear();
  try {
    eval::make_scorer(eval::ScorerKind::kImageReward, m, {});
    ADD_FAILURE() << "no error without --bert-tokenizer";
  } catch (const UsageError& err) {
    EXPECT_TRUE(has(err.what(), "--bert-tokenizer")) << err.what();
  }
  m = tiny_models();
  m.imagereward_checkpoint = tmp / "nonexistent.pt";
  try {
    eval::make_scorer(eval::ScorerKind::kImageReward, m, {});
    ADD_FAILURE() << "no error for a missing checkpoint";
  } catch (const UsageError& err) {
    EXPECT_TRUE(has(err.what(), "--imagereward-checkpoint") && has(err.what(), "nonexistent.pt"))
        << err.what();
  }
  io::OrderedJson j = io::read_json(tiny() / "med_config.json");
  j["vocab_size"] = 30523;
  io::write_json(tmp / "med_small.json", j);
  m = tiny_models();
  m.imagereward_med_config = tmp / "med_small.json";
  try {
    eval::make_scorer(eval::ScorerKind::kImageReward, m, {});
    ADD_FAILURE() << "no error for vocab_size 30523";
  } catch (const UsageError& err) {
    EXPECT_TRUE(has(err.what(), "30524 ids") && has(err.what(), "vocab_size 30523")) << err.what();
  }
}

}  // namespace
}  // namespace dro::models
