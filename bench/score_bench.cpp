// Preference scorers on the CPU: whole `dro score` batches (decode, preprocess, both towers, the
// score) of each scorer on the fixture models, the vision tower of a mid-size ViT (ViT-B/16 at
// 224 px, random weights), ImageReward's model at its official sizes (BLIP ViT-L/16 at 224 px and
// the 12-layer cross-attending BERT, random weights) and the two preprocessing pipelines on a
// 512x512 image.
//   ./build/release/dro_bench --benchmark_filter='Score|Vit|ImageReward|Preprocess'
// The fixture models are tiny: their numbers measure everything around the model (decoding,
// PIL-exact resizing, tokenising); the ViT-B/16 and ImageReward model cases measure the model.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>

#include "dro/core/error.h"
#include "dro/eval/scorer.h"
#include "dro/io/json.h"
#include "dro/models/clip_model.h"
#include "dro/models/image_reward.h"
#include "dro/vision/clip_image_processor.h"
#include "dro/vision/decode.h"
#include "dro/vision/open_clip_transform.h"

namespace {
namespace fs = std::filesystem;
using dro::eval::ScorerKind;

fs::path scorer_fixtures() {
  return fs::path(DRO_FIXTURES_DIR) / "scorers";
}

dro::eval::ScorerModels fixture_models() {
  const fs::path s = scorer_fixtures();
  dro::eval::ScorerModels m;
  m.pickscore_model = s / "clip-vit-h-14-tiny";
  m.hpsv2_checkpoint = s / "hpsv2-tiny" / "HPS_v2_compressed.pt";
  m.hpsv2_config = s / "hpsv2-tiny" / "ViT-H-14.json";
  m.open_clip_tokenizer = s / "clip-vit-h-14-tiny";
  m.clip_model = s / "clip-vit-h-14-tiny";
  m.aesthetic_clip_model = s / "clip-vit-l-14-tiny";
  m.aestheticv1_head = s / "aesthetic-tiny" / "sa_0_4_vit_l_14_linear.pth";
  m.aestheticv2_head = s / "aesthetic-tiny" / "sac+logos+ava1-l14-linearMSE.pth";
  m.imagereward_checkpoint = s / "imagereward-tiny" / "ImageReward.pt";
  m.imagereward_vit_config = s / "imagereward-tiny" / "vit_config.json";
  m.bert_tokenizer = s / "bert-base-uncased";
  return m;
}

// Arg: the scorer kind. A batch of 32 of the fixture images (RGBA left out) with their prompts.
void BM_ScoreBatch(benchmark::State& state) {
  if (!fs::exists(scorer_fixtures())) {
    state.SkipWithError("scorer fixtures not found");
    return;
  }
  const auto kind = static_cast<ScorerKind>(state.range(0));
  auto scorer = dro::eval::make_scorer(kind, fixture_models(), {});
  std::vector<fs::path> files;
  for (const auto& e : dro::io::read_json(scorer_fixtures() / "golden" / "images.json"))
    if (e["mode"] != "RGBA") files.push_back(scorer_fixtures() / e["file"].get<std::string>());
  const std::string prompt = "a photograph of an astronaut riding a horse";
  constexpr int kBatch = 32;
  for (auto _ : state) {
    std::vector<torch::Tensor> pixels;
    std::vector<std::string> notes;
    for (int i = 0; i < kBatch; ++i)
      pixels.push_back(
          scorer->preprocess(dro::vision::decode_image_file(files[i % files.size()]), notes));
    benchmark::DoNotOptimize(
        scorer->score(torch::stack(pixels), std::vector<std::string>(kBatch, prompt)));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  std::string label;
  for (const auto& k : scorer->keys()) label += (label.empty() ? "" : "+") + k.key;
  state.SetLabel(label);
}
BENCHMARK(BM_ScoreBatch)
    ->Arg(static_cast<int>(ScorerKind::kPickScore))
    ->Arg(static_cast<int>(ScorerKind::kHpsv2))
    ->Arg(static_cast<int>(ScorerKind::kClip))
    ->Arg(static_cast<int>(ScorerKind::kAesthetic))
    ->Arg(static_cast<int>(ScorerKind::kImageReward))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// A ViT-B/16 image tower (86 M parameters) at 224 px, batch 4, under inference mode.
void BM_VitB16ImageFeatures(benchmark::State& state) {
  dro::io::OrderedJson cfg = {{"projection_dim", 512},
                              {"vision_config",
                               {{"hidden_size", 768},
                                {"intermediate_size", 3072},
                                {"num_hidden_layers", 12},
                                {"num_attention_heads", 12},
                                {"image_size", 224},
                                {"patch_size", 16},
                                {"hidden_act", "gelu"}}}};
  dro::models::ClipModel model(dro::models::ClipModelConfig::from_json(cfg, "ViT-B/16"),
                               dro::models::ClipTowers{false, true});
  model->eval();
  const torch::Tensor pixels = torch::randn({4, 3, 224, 224});
  torch::InferenceMode guard;
  for (auto _ : state) benchmark::DoNotOptimize(model->get_image_features(pixels));
  state.SetItemsProcessed(state.iterations() * 4);
}
BENCHMARK(BM_VitB16ImageFeatures)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

// ImageReward's model at the official sizes (ImageReward-v1.0: BLIP ViT-L/16 at 224 px, BERT 768
// wide with 12 layers cross-attending to the 197 image tokens, MLP 768-1024-128-64-16-1), random
// weights, batch 2 of 224 px images with 35-token prompts, under inference mode.
void BM_ImageRewardModel(benchmark::State& state) {
  const dro::models::BlipVitConfig vit;
  dro::models::MedBertConfig text;
  text.vocab_size = 30524;
  text.add_cross_attention = true;
  text.encoder_width = vit.embed_dim;
  dro::models::ImageRewardModel model(vit, text, std::vector<int64_t>{768, 1024, 128, 64, 16, 1});
  model->eval();
  constexpr int64_t kBatch = 2;
  const torch::Tensor pixels = torch::randn({kBatch, 3, 224, 224});
  const torch::Tensor ids = torch::randint(1000, 30000, {kBatch, 35}, torch::kInt64);
  const torch::Tensor mask = torch::ones({kBatch, 35}, torch::kInt64);
  torch::InferenceMode guard;
  for (auto _ : state) benchmark::DoNotOptimize(model->score(pixels, ids, mask));
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel(dro::cat("threads ", torch::get_num_threads()));
}
BENCHMARK(BM_ImageRewardModel)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);

dro::vision::PilImage test_image(int side) {
  dro::io::Image im(side, side, 3);
  for (size_t k = 0; k < im.pixels.size(); ++k)
    im.pixels[k] = static_cast<uint8_t>((k * 7 + k / 1531) % 251);
  return dro::vision::from_pixels(std::move(im));
}

// CLIPImageProcessor at 224 px (PIL bicubic resize, crop, normalise) of a 512x512 RGB image.
void BM_PreprocessClipImageProcessor(benchmark::State& state) {
  const auto img = test_image(512);
  dro::vision::ClipImageProcessor proc;
  for (auto _ : state) benchmark::DoNotOptimize(proc.preprocess(img).pixel_values);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PreprocessClipImageProcessor)->Unit(benchmark::kMillisecond)->UseRealTime();

// open_clip's ResizeMaxSize + pad at 224 px (antialiased bicubic on the float tensor).
void BM_PreprocessOpenClip(benchmark::State& state) {
  const auto img = test_image(512);
  dro::vision::OpenClipTransformOptions o;
  for (auto _ : state)
    benchmark::DoNotOptimize(dro::vision::open_clip_transform(img, o).pixel_values);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PreprocessOpenClip)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
