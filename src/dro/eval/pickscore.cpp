// PickScore as misc/scores.py computes it: the PickScore_v1 CLIPModel (ViT-H/14) on the laion
// processor's pixels (CLIPImageProcessor) and tokens (CLIPTokenizerFast: padding to the longest
// prompt of the batch, truncation to 77), both embeddings L2-normalised, score =
// logit_scale.exp() * cosine.
#include "dro/core/error.h"
#include "dro/core/sha256.h"
#include "dro/eval/scorer_impl.h"
#include "dro/text/clip_tokenizer.h"
#include "dro/vision/clip_image_processor.h"
#include "dro/vision/decode.h"

namespace dro::eval::detail {

namespace {

namespace fs = std::filesystem;

class PickScoreScorer : public Scorer {
 public:
  PickScoreScorer(const ScorerModels& m, const ScorerOptions& o) : device_(o.device) {
    require_path(m.pickscore_model, "--pickscore-model", true);
    const fs::path proc = m.pickscore_processor.empty() ? m.pickscore_model : m.pickscore_processor;
    require_path(proc, "--pickscore-processor", true);
    for (const char* f : {"preprocessor_config.json", "vocab.json", "merges.txt"})
      if (!fs::is_regular_file(proc / f))
        throw UsageError(cat("[pickscore] ", proc.string(), " has no ", f,
                             "; point --pickscore-processor at ",
                             "the processor files (the official code takes them from ",
                             "laion/CLIP-ViT-H-14-laion2B-s32B-b79K)"));
    processor_ = vision::ClipImageProcessor::from_pretrained(proc / "preprocessor_config.json");
    tokenizer_ = std::make_unique<text::ClipTokenizer>(
        text::ClipTokenizer::load(proc, text::ClipTextOptions::fast_tokenizer()));
    fs::path file;
    model_ = models::load_clip_model(m.pickscore_model, {}, load_options(o), &file);
    ScoreKeyInfo info;
    info.key = "pickscore";
    info.name = "PickScore";
    info.version = cat("PickScore (", m.pickscore_model.filename().string(), ")");
    info.units =
        "logit_scale.exp() x cosine(image, prompt) embeddings (PickScore_v1: 100 x cosine)";
    info.weight_files = {file};
    info.weights_sha256 = weights_sha256(file);
    keys_ = {info};
  }

  const std::vector<ScoreKeyInfo>& keys() const override { return keys_; }

  torch::Tensor preprocess(const vision::PilImage& image,
                           std::vector<std::string>&) const override {
    return processor_.preprocess(image).pixel_values;
  }

  std::vector<std::vector<double>> score(const torch::Tensor& pixels,
                                         const std::vector<std::string>& prompts) override {
    torch::NoGradGuard no_grad;
    const auto text = tokenizer_->tokenize_batch(prompts);
    const torch::Tensor img = l2_normalize(model_->get_image_features(pixels.to(device_)));
    const torch::Tensor txt = l2_normalize(
        model_->get_text_features(text.input_ids.to(device_), text.attention_mask.to(device_)));
    const torch::Tensor s = (model_->logit_scale.to(torch::kFloat32).exp() * (img * txt).sum(-1))
                                .to(torch::kCPU, torch::kDouble)
                                .contiguous();
    return {std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel())};
  }

 private:
  torch::Device device_;
  vision::ClipImageProcessor processor_;
  std::unique_ptr<text::ClipTokenizer> tokenizer_;
  models::ClipModel model_{nullptr};
  std::vector<ScoreKeyInfo> keys_;
};

}  // namespace

std::unique_ptr<Scorer> make_pickscore(const ScorerModels& models, const ScorerOptions& options) {
  return std::make_unique<PickScoreScorer>(models, options);
}

}  // namespace dro::eval::detail
