// CLIP text encoders against golden/text_encoders.safetensors (OpenAI's reference text transformer
// with the weights under the transformers names), key sets, save/load round trip, legacy keys.
#include "dro/text/clip_text_model.h"

#include <iostream>
#include <set>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "test_util.h"

namespace dro::text {
namespace {

using test::fixtures;
using test::TempDir;

// Stated limit for a single module forward (fixtures README); observed differences are ~1e-7.
constexpr double kTol = 1e-4;

std::map<std::string, torch::Tensor> golden(const std::string& file) {
  return io::load_safetensors(fixtures() / "golden" / file);
}

::testing::AssertionResult close(const std::string& what, const torch::Tensor& actual,
                                 const torch::Tensor& expected) {
  std::cout << "[ parity   ] " << what << ": max |diff| = " << test::max_abs_diff(actual, expected)
            << "\n";
  return test::allclose(actual, expected, kTol);
}

std::set<std::string> parameter_keys(const torch::nn::Module& m) {
  std::set<std::string> keys;
  for (const auto& p : m.named_parameters(true)) keys.insert(p.key());
  return keys;
}

TEST(ClipTextModel, KeysMatchCheckpoints) {
  DRO_REQUIRE_FIXTURES();
  for (const char* dir :
       {"tiny-sd15/text_encoder", "tiny-sdxl/text_encoder", "tiny-sdxl/text_encoder_2"}) {
    ClipTextModel model(ClipTextConfig::load(fixtures() / dir));
    std::set<std::string> file_keys;
    for (const auto& [name, t] : io::load_safetensors(fixtures() / dir / "model.safetensors")) {
      file_keys.insert(name);
    }
    EXPECT_EQ(parameter_keys(*model), file_keys) << dir;
    EXPECT_TRUE(model->named_buffers(true).is_empty()) << dir;
  }
  ClipTextModel with_projection(ClipTextConfig::load(fixtures() / "tiny-sdxl/text_encoder_2"));
  EXPECT_TRUE(parameter_keys(*with_projection).count("text_projection.weight"));
  EXPECT_FALSE(parameter_keys(*with_projection).count("text_projection.bias"));
  EXPECT_EQ(with_projection->text_projection->weight.sizes(), (std::vector<int64_t>{12, 8}));
}

TEST(ClipTextModel, Sd15Parity) {
  DRO_REQUIRE_FIXTURES();
  torch::NoGradGuard no_grad;
  auto model = load_clip_text_model(fixtures() / "tiny-sd15/text_encoder");
  const auto ids = golden("tokenizer.safetensors").at("sd15.input_ids");
  const auto ref = golden("text_encoders.safetensors");
  const auto out = model->forward(ids);
  EXPECT_TRUE(
      close("sd15.last_hidden_state", out.last_hidden_state, ref.at("sd15.last_hidden_state")));
  EXPECT_TRUE(close("sd15.pooler_output", out.pooled, ref.at("sd15.pooler_output")));
  EXPECT_FALSE(out.text_embeds.defined());
  EXPECT_TRUE(out.hidden_states.empty());
}

TEST(ClipTextModel, SdxlParity) {
  DRO_REQUIRE_FIXTURES();
  torch::NoGradGuard no_grad;
  const auto tokens = golden("tokenizer.safetensors");
  const auto ref = golden("text_encoders.safetensors");

  auto encoder1 = load_clip_text_model(fixtures() / "tiny-sdxl/text_encoder");
  const auto out1 = encoder1->forward(tokens.at("sd15.input_ids"), /*output_hidden_states=*/true);
  ASSERT_EQ(out1.hidden_states.size(), 4u);  // embeddings + 3 layers
  EXPECT_TRUE(close("sdxl.text_encoder.penultimate_hidden_state", out1.hidden_states.end()[-2],
                    ref.at("sdxl.text_encoder.penultimate_hidden_state")));

  auto encoder2 = load_clip_text_model(fixtures() / "tiny-sdxl/text_encoder_2");
  const auto out2 = encoder2->forward(tokens.at("sdxl.tokenizer_2.input_ids"), true);
  ASSERT_EQ(out2.hidden_states.size(), 4u);
  EXPECT_TRUE(close("sdxl.text_encoder_2.penultimate_hidden_state", out2.hidden_states.end()[-2],
                    ref.at("sdxl.text_encoder_2.penultimate_hidden_state")));
  EXPECT_TRUE(close("sdxl.text_encoder_2.last_hidden_state", out2.last_hidden_state,
                    ref.at("sdxl.text_encoder_2.last_hidden_state")));
  EXPECT_TRUE(close("sdxl.text_encoder_2.text_embeds", out2.text_embeds,
                    ref.at("sdxl.text_encoder_2.text_embeds")));
  // The last hidden state is the final norm of the last layer's output.
  EXPECT_TRUE(torch::equal(encoder2->text_model->final_layer_norm(out2.hidden_states.back()),
                           out2.last_hidden_state));
}

TEST(ClipTextModel, PoolsAtFirstEosWhenEosIdIsReal) {
  DRO_REQUIRE_FIXTURES();
  torch::NoGradGuard no_grad;
  // Configs that carry the real eos id take transformers' other branch (first eos position);
  // on CLIP-tokenized rows both rules pick the same position.
  const auto dir = fixtures() / "tiny-sdxl/text_encoder_2";
  auto raw = io::read_json(dir / "config.json");
  raw["eos_token_id"] = 49407;
  ClipTextModel model(ClipTextConfig::from_json(raw, "test"));
  nn::load_weights(*model, io::ComponentWeights::open(dir), {}, "test");
  const auto out = model->forward(golden("tokenizer.safetensors").at("sdxl.tokenizer_2.input_ids"));
  EXPECT_TRUE(close("text_embeds (eos_token_id 49407)", out.text_embeds,
                    golden("text_encoders.safetensors").at("sdxl.text_encoder_2.text_embeds")));
}

TEST(ClipTextModel, SaveAndReloadRoundTrip) {
  DRO_REQUIRE_FIXTURES();
  torch::NoGradGuard no_grad;
  const auto ids = golden("tokenizer.safetensors").at("sd15.input_ids");
  for (const char* dir : {"tiny-sd15/text_encoder", "tiny-sdxl/text_encoder_2"}) {
    auto model = load_clip_text_model(fixtures() / dir);
    TempDir tmp;
    nn::save_component(tmp.path(), *model, model->config().raw, io::kTransformersWeightsStem);
    auto again = load_clip_text_model(tmp.path());
    EXPECT_EQ(again->config().architecture, model->config().architecture);
    const auto a = model->forward(ids, true), b = again->forward(ids, true);
    EXPECT_TRUE(torch::equal(a.last_hidden_state, b.last_hidden_state)) << dir;
    EXPECT_TRUE(torch::equal(a.pooled, b.pooled)) << dir;
    EXPECT_EQ(a.text_embeds.defined(), b.text_embeds.defined());
    if (a.text_embeds.defined()) {
      EXPECT_TRUE(torch::equal(a.text_embeds, b.text_embeds)) << dir;
    }
    for (size_t i = 0; i < a.hidden_states.size(); ++i)
      EXPECT_TRUE(torch::equal(a.hidden_states[i], b.hidden_states[i])) << dir << " layer " << i;
  }
}

// Writes the tiny SD1.5 text encoder into `dir` with extra tensors added to the weights file.
void write_with_extra(const std::filesystem::path& dir, const io::NamedTensors& extra) {
  const auto src = fixtures() / "tiny-sd15/text_encoder";
  std::filesystem::copy_file(src / "config.json", dir / "config.json");
  io::NamedTensors tensors;
  for (auto& [name, t] : io::load_safetensors(src / "model.safetensors"))
    tensors.emplace_back(name, t);
  tensors.insert(tensors.end(), extra.begin(), extra.end());
  io::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
}

TEST(ClipTextModel, LegacyPositionIdsAreIgnored) {
  DRO_REQUIRE_FIXTURES();
  torch::NoGradGuard no_grad;
  TempDir tmp;
  write_with_extra(tmp.path(), {{"text_model.embeddings.position_ids",
                                 torch::arange(77, torch::kInt64).unsqueeze(0)}});
  auto model = load_clip_text_model(tmp.path());
  const auto ids = golden("tokenizer.safetensors").at("sd15.input_ids");
  EXPECT_TRUE(close("sd15.last_hidden_state (file with position_ids)",
                    model->forward(ids).last_hidden_state,
                    golden("text_encoders.safetensors").at("sd15.last_hidden_state")));
}

TEST(ClipTextModel, UnexpectedKeyIsReported) {
  DRO_REQUIRE_FIXTURES();
  TempDir tmp;
  write_with_extra(tmp.path(), {{"text_model.embeddings.extra_table", torch::zeros({3})}});
  try {
    load_clip_text_model(tmp.path());
    FAIL() << "a file with an unknown tensor loaded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("text_model.embeddings.extra_table"), std::string::npos)
        << e.what();
  }
}

TEST(ClipTextModel, RejectsBadInput) {
  DRO_REQUIRE_FIXTURES();
  torch::NoGradGuard no_grad;
  auto model = load_clip_text_model(fixtures() / "tiny-sd15/text_encoder");
  EXPECT_THROW(model->forward(torch::zeros({1, 78}, torch::kInt64)), UsageError);
  EXPECT_THROW(model->forward(torch::zeros({77}, torch::kInt64)), UsageError);
  EXPECT_THROW(model->forward(torch::zeros({1, 77}, torch::kFloat)), UsageError);
  EXPECT_THROW(model->forward(torch::full({1, 5}, 49408, torch::kInt64)), UsageError);
  EXPECT_THROW(model->forward(torch::full({1, 5}, -1, torch::kInt64)), UsageError);
  // Shorter sequences and int32 ids are fine.
  const auto out = model->forward(torch::tensor({{49406, 2368, 49407}}, torch::kInt32));
  EXPECT_EQ(out.last_hidden_state.sizes(), (std::vector<int64_t>{1, 3, 8}));
}

}  // namespace
}  // namespace dro::text
