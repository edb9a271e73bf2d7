// HPSv2 and CLIP score as misc/scores.py computes them, on HPSv2's bundled open_clip ViT-H-14:
// the light-augmentation validation transform (ResizeMaxSize + pad), open_clip's tokenizer (77
// tokens, padded with 0), L2-normalised image and text features; HPSv2 = 100 x cosine with the
// HPSv2 checkpoint loaded over the model, CLIP score = the plain cosine with the laion weights.
#include "dro/core/error.h"
#include "dro/core/sha256.h"
#include "dro/eval/scorer_impl.h"
#include "dro/io/weights.h"
#include "dro/models/open_clip.h"
#include "dro/text/open_clip_tokenizer.h"
#include "dro/vision/decode.h"
#include "dro/vision/open_clip_transform.h"

namespace dro::eval::detail {

namespace {

namespace fs = std::filesystem;

// The weights file of an open_clip folder: open_clip_model.safetensors before
// open_clip_pytorch_model.bin (the same weights in the laion repos).
fs::path open_clip_weights(const fs::path& dir) {
  for (const char* name : {"open_clip_model.safetensors", "open_clip_pytorch_model.bin"})
    if (fs::is_regular_file(dir / name)) return dir / name;
  throw IoError(cat("[clip] ", dir.string(), ": no open_clip_model.safetensors or ",
                    "open_clip_pytorch_model.bin (the open_clip files of e.g. ",
                    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K)"));
}

class OpenClipScorer : public Scorer {
 public:
  OpenClipScorer(bool hpsv2, const ScorerModels& m, const ScorerOptions& o)
      : hpsv2_(hpsv2), device_(o.device) {
    models::OpenClipConfig config = models::OpenClipConfig::vit_h_14();
    fs::path weights;
    fs::path tokenizer_dir = m.open_clip_tokenizer;
    ScoreKeyInfo info;
    if (hpsv2) {
      if (o.hps_version != "v2.0" && o.hps_version != "v2.1")
        throw UsageError(
            cat("[hpsv2] --hps-version must be v2.0 or v2.1, got '", o.hps_version, "'"));
      require_path(m.hpsv2_checkpoint, "--hpsv2-checkpoint", false);
      if (!m.hpsv2_config.empty()) {
        require_path(m.hpsv2_config, "--hpsv2-config", false);
        config = models::OpenClipConfig::load(m.hpsv2_config);
      }
      weights = m.hpsv2_checkpoint;
      info.key = o.hps_version == "v2.1" ? "hpsv2.1" : "hpsv2";
      info.name = "HPSv2";
      info.version = cat("HPS ", o.hps_version, " (", weights.filename().string(), ")");
      info.units = "100 x cosine(image, prompt) features (hpsv2.score() itself gives the cosine)";
    } else {
      require_path(m.clip_model, "--clip-model", true);
      if (fs::is_regular_file(m.clip_model / "open_clip_config.json"))
        config = models::OpenClipConfig::load(m.clip_model / "open_clip_config.json");
      weights = open_clip_weights(m.clip_model);
      info.key = "clip";
      info.name = "CLIP score";
      info.version = cat("open_clip ViT-H-14 (", m.clip_model.filename().string(), ")");
      info.units = "cosine(image, prompt) features in [-1, 1] (not x100, not clamped at 0)";
    }
    // open_clip's BPE table is CLIP's: the laion repo's vocab.json / merges.txt hold it.
    if (tokenizer_dir.empty())
      for (const fs::path& d : {m.clip_model, m.pickscore_processor, m.pickscore_model})
        if (!d.empty() && fs::is_regular_file(d / "vocab.json") &&
            fs::is_regular_file(d / "merges.txt")) {
          tokenizer_dir = d;
          break;
        }
    if (tokenizer_dir.empty())
      throw UsageError(
          "[score] --open-clip-tokenizer is required (a folder with vocab.json and "
          "merges.txt, e.g. of laion/CLIP-ViT-H-14-laion2B-s32B-b79K)");
    require_path(tokenizer_dir, "--open-clip-tokenizer", true);
    tokenizer_ =
        std::make_unique<text::OpenClipTokenizer>(text::OpenClipTokenizer::load(tokenizer_dir));
    context_length_ = config.context_length;
    transform_.image_size = static_cast<int>(config.clip.vision.image_size);
    transform_.mean = config.mean;
    transform_.stdev = config.std;
    transform_.drop_alpha = true;
    transform_.pad_unscaled = true;
    model_ = models::load_open_clip_model(config, read_state_dict(weights), {}, weights.string(),
                                          load_options(o));
    info.weight_files = {weights};
    info.weights_sha256 = weights_sha256(weights);
    keys_ = {info};
  }

  const std::vector<ScoreKeyInfo>& keys() const override { return keys_; }

  torch::Tensor preprocess(const vision::PilImage& image,
                           std::vector<std::string>& notes) const override {
    auto r = vision::open_clip_transform(image, transform_);
    if (r.reference_rgba)
      notes.push_back(
          "RGBA image: the reference keeps 4 channels and fails its 3-channel check; "
          "the alpha channel was dropped (as convert('RGB') does)");
    if (r.reference_not_square)
      notes.push_back(
          "non-square image whose longest side already equals the model size: the "
          "reference neither resizes nor pads it and then fails; it was padded");
    return r.pixel_values;
  }

  std::vector<std::vector<double>> score(const torch::Tensor& pixels,
                                         const std::vector<std::string>& prompts) override {
    torch::NoGradGuard no_grad;
    const torch::Tensor ids = tokenizer_->tokenize(prompts, context_length_).to(device_);
    const torch::Tensor img = l2_normalize(model_->get_image_features(pixels.to(device_)));
    const torch::Tensor txt = l2_normalize(model_->get_text_features(ids));
    torch::Tensor s = (img * txt).sum(-1);
    if (hpsv2_) s = s * 100;
    s = s.to(torch::kCPU, torch::kDouble).contiguous();
    return {std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel())};
  }

 private:
  bool hpsv2_;
  torch::Device device_;
  int64_t context_length_ = 77;
  vision::OpenClipTransformOptions transform_;
  std::unique_ptr<text::OpenClipTokenizer> tokenizer_;
  models::ClipModel model_{nullptr};
  std::vector<ScoreKeyInfo> keys_;
};

}  // namespace

std::unique_ptr<Scorer> make_open_clip_scorer(bool hpsv2, const ScorerModels& models,
                                              const ScorerOptions& options) {
  return std::make_unique<OpenClipScorer>(hpsv2, models, options);
}

}  // namespace dro::eval::detail
