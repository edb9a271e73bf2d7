// ImageReward as misc/scores.py computes it (ImageReward.load("ImageReward-v1.0")): the image
// through ImageReward's torchvision transform (Resize bicubic on the PIL image, CenterCrop with
// round-half-even offsets, convert("RGB"), Normalize with the CLIP constants), the prompt through
// BLIP's BertTokenizer (bert-base-uncased plus [DEC] and [ENC]; padding="max_length",
// truncation, max_length 35; [CLS] stays at position 0), the BLIP ViT, the cross-attending BERT,
// the MLP on the first text token, and (reward - mean) / std.
#include "dro/core/error.h"
#include "dro/core/sha256.h"
#include "dro/eval/scorer_impl.h"
#include "dro/models/image_reward.h"
#include "dro/text/bert_tokenizer.h"
#include "dro/vision/decode.h"
#include "dro/vision/torchvision_transform.h"

namespace dro::eval::detail {

namespace {

namespace fs = std::filesystem;

// ImageReward.py score(): self.blip.tokenizer(..., max_length=35).
constexpr int64_t kMaxLength = 35;

class ImageRewardScorer : public Scorer {
 public:
  ImageRewardScorer(const ScorerModels& m, const ScorerOptions& o) : device_(o.device) {
    require_path(m.imagereward_checkpoint, "--imagereward-checkpoint", false);
    // The hub repo THUDM/ImageReward holds med_config.json beside ImageReward.pt.
    fs::path med = m.imagereward_med_config;
    if (med.empty() &&
        fs::is_regular_file(m.imagereward_checkpoint.parent_path() / "med_config.json"))
      med = m.imagereward_checkpoint.parent_path() / "med_config.json";
    require_path(med, "--imagereward-med-config", false);
    require_path(m.bert_tokenizer, "--bert-tokenizer", true);
    models::BlipVitConfig vit;  // the official ViT-L/16 at 224 px
    if (!m.imagereward_vit_config.empty()) {
      require_path(m.imagereward_vit_config, "--imagereward-vit-config", false);
      vit = models::BlipVitConfig::load(m.imagereward_vit_config);
    }
    const models::MedBertConfig text = models::MedBertConfig::load(med);

    // blip.py init_tokenizer(): bert-base-uncased, then bos_token [DEC] and [ENC].
    tokenizer_ = std::make_unique<text::BertTokenizer>(text::BertTokenizer::load(m.bert_tokenizer));
    tokenizer_->add_special_token("[DEC]");
    tokenizer_->add_special_token("[ENC]");
    if (tokenizer_->size() > text.vocab_size)
      throw UsageError(cat("[imagereward] the tokenizer of ", m.bert_tokenizer.string(), " has ",
                           tokenizer_->size(), " ids ([DEC] and [ENC] included) but ", med.string(),
                           " has vocab_size ", text.vocab_size, " (ImageReward: 30524)"));
    if (kMaxLength > text.max_position_embeddings)
      throw UsageError(cat("[imagereward] ", med.string(), ": max_position_embeddings ",
                           text.max_position_embeddings, " is below ImageReward's ", kMaxLength,
                           " tokens"));
    model_ = models::load_image_reward(m.imagereward_checkpoint, vit, text, load_options(o));
    image_size_ = static_cast<int>(vit.image_size);

    const fs::path& ckpt = m.imagereward_checkpoint;
    ScoreKeyInfo info;
    info.key = "imagereward";
    info.name = "ImageReward";
    info.version = cat("ImageReward (", ckpt.filename().string(), "; BLIP ", vit.describe(),
                       ", BERT ", text.hidden_size, " wide, ", text.num_hidden_layers, " layers)");
    info.units = cat("(MLP reward of BLIP's image-conditioned [CLS] feature - ",
                     models::kImageRewardMean, ") / ", models::kImageRewardStd,
                     ": standardised by ImageReward-v1.0's mean and std (about N(0, 1) over its "
                     "training prompts; higher is better)");
    info.weight_files = {ckpt, med};
    if (!m.imagereward_vit_config.empty()) info.weight_files.push_back(m.imagereward_vit_config);
    std::string lines;
    for (const auto& f : info.weight_files)
      lines += cat(f.filename().string(), ":", weights_sha256(f), "\n");
    info.weights_sha256 = sha256_hex(lines);
    keys_ = {info};
  }

  const std::vector<ScoreKeyInfo>& keys() const override { return keys_; }

  torch::Tensor preprocess(const vision::PilImage& image,
                           std::vector<std::string>&) const override {
    return vision::imagereward_transform(image, image_size_).pixel_values;
  }

  std::vector<std::vector<double>> score(const torch::Tensor& pixels,
                                         const std::vector<std::string>& prompts) override {
    torch::NoGradGuard no_grad;
    const auto text = tokenizer_->encode_batch(prompts, kMaxLength);
    const torch::Tensor s =
        model_
            ->score(pixels.to(device_), text.input_ids.to(device_), text.attention_mask.to(device_))
            .to(torch::kCPU, torch::kDouble)
            .contiguous();
    return {std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel())};
  }

 private:
  torch::Device device_;
  int image_size_ = 224;
  std::unique_ptr<text::BertTokenizer> tokenizer_;
  models::ImageRewardModel model_{nullptr};
  std::vector<ScoreKeyInfo> keys_;
};

}  // namespace

std::unique_ptr<Scorer> make_imagereward(const ScorerModels& models, const ScorerOptions& options) {
  return std::make_unique<ImageRewardScorer>(models, options);
}

}  // namespace dro::eval::detail
