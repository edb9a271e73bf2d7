#include "dro/models/image_reward.h"

#include <map>

#include "dro/core/error.h"
#include "dro/io/weights.h"

namespace dro::models {

namespace {

namespace fs = std::filesystem;

// The Sequential indices of the MLP's Linear layers (Dropout at 1, 3, 5).
constexpr int kMlpLinearIndices[] = {0, 2, 4, 6, 7};
constexpr const char* kPositionIdsKey = "blip.text_encoder.embeddings.position_ids";

std::vector<int64_t> mlp_widths_from(const std::map<std::string, torch::Tensor>& tensors,
                                     const fs::path& file, int64_t hidden_size) {
  std::vector<int64_t> widths = {hidden_size};
  for (int i : kMlpLinearIndices) {
    const std::string key = cat("mlp.layers.", i, ".weight");
    auto it = tensors.find(key);
    if (it == tensors.end())
      throw IoError(cat("[imagereward] ", file.string(), ": missing '", key,
                        "' (ImageReward's MLP head: Linear layers mlp.layers.0, 2, 4, 6, 7)"));
    const torch::Tensor& w = it->second;
    if (w.dim() != 2 || w.size(1) != widths.back())
      throw IoError(cat(
          "[imagereward] ", file.string(), ": '", key, "' has shape ", w.sizes(),
          "; expected [out, ", widths.back(), "]",
          i == 0 ? " (the head takes the text encoder's hidden_size from med_config.json)" : ""));
    widths.push_back(w.size(0));
  }
  if (widths.back() != 1)
    throw IoError(cat("[imagereward] ", file.string(), ": the MLP head ends with ", widths.back(),
                      " outputs (mlp.layers.7.weight); ImageReward's gives one"));
  return widths;
}

}  // namespace

BlipImpl::BlipImpl(const BlipVitConfig& vit, const MedBertConfig& text) {
  visual_encoder = register_module("visual_encoder", BlipVisionTransformer(vit));
  text_encoder = register_module("text_encoder", MedBertModel(text));
}

ImageRewardMlpImpl::ImageRewardMlpImpl(const std::vector<int64_t>& widths) {
  if (widths.size() != 6)
    throw UsageError(
        cat("[imagereward] the MLP needs 6 widths (5 Linear layers), got ", widths.size()));
  layers = register_module("layers", torch::nn::Sequential());
  for (size_t k = 0; k < 5; ++k) {
    layers->push_back(torch::nn::Linear(widths[k], widths[k + 1]));
    if (k < 3) layers->push_back(torch::nn::Dropout());  // identity at evaluation
  }
}

torch::Tensor ImageRewardMlpImpl::forward(const torch::Tensor& x) {
  return layers->forward(x);
}

ImageRewardModelImpl::ImageRewardModelImpl(const BlipVitConfig& vit, const MedBertConfig& text,
                                           const std::vector<int64_t>& mlp_widths) {
  blip = register_module("blip", Blip(vit, text));
  mlp = register_module("mlp", ImageRewardMlp(mlp_widths));
}

torch::Tensor ImageRewardModelImpl::image_embeds(const torch::Tensor& pixels) {
  return blip->visual_encoder(pixels);
}

torch::Tensor ImageRewardModelImpl::text_features(const torch::Tensor& input_ids,
                                                  const torch::Tensor& attention_mask,
                                                  const torch::Tensor& image_embeds) {
  return blip->text_encoder(input_ids, attention_mask, image_embeds)
      .select(1, 0)
      .to(torch::kFloat32);
}

torch::Tensor ImageRewardModelImpl::raw_reward(const torch::Tensor& text_features) {
  const torch::Device device = mlp->parameters().front().device();
  return mlp(text_features.to(device, torch::kFloat32)).squeeze(1);
}

torch::Tensor ImageRewardModelImpl::score(const torch::Tensor& pixels,
                                          const torch::Tensor& input_ids,
                                          const torch::Tensor& attention_mask) {
  const torch::Tensor img = image_embeds(pixels);
  // ImageReward.py: (rewards - self.mean) / self.std, Python floats on a float32 tensor.
  return (raw_reward(text_features(input_ids, attention_mask, img)) - kImageRewardMean) /
         kImageRewardStd;
}

ImageRewardModel load_image_reward(const fs::path& checkpoint, const BlipVitConfig& vit,
                                   MedBertConfig text, const nn::LoadOptions& options) {
  vit.validate("the ViT config");
  text.encoder_width =
      vit.embed_dim;  // blip_pretrain.py: encoder_config.encoder_width = vision_width
  const auto weights = io::ComponentWeights::open_file(checkpoint);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : weights.names()) tensors.emplace(name, weights.get(name));

  const std::vector<int64_t> widths = mlp_widths_from(tensors, checkpoint, text.hidden_size);
  // embeddings.position_ids is a buffer the reference reads positions from; absent (as in files
  // written without non-persistent buffers) it is the arange the model would hold.
  torch::Tensor position_ids;
  if (auto it = tensors.find(kPositionIdsKey); it != tensors.end()) {
    const torch::Tensor& p = it->second;
    if (p.dim() != 2 || p.size(0) != 1 || p.size(1) != text.max_position_embeddings ||
        torch::isFloatingType(p.scalar_type()))
      throw IoError(cat("[imagereward] ", checkpoint.string(), ": '", kPositionIdsKey, "' is ",
                        p.scalar_type(), " ", p.sizes(), "; expected int64 [1, ",
                        text.max_position_embeddings,
                        "] (max_position_embeddings of med_config.json)"));
    const torch::Tensor pl = p.to(torch::kInt64);
    if (pl.min().item<int64_t>() < 0 || pl.max().item<int64_t>() >= text.max_position_embeddings)
      throw IoError(cat("[imagereward] ", checkpoint.string(), ": '", kPositionIdsKey,
                        "' holds positions outside [0, ", text.max_position_embeddings, ")"));
    position_ids = pl.clone();
  }

  ImageRewardModel model(vit, text, widths);
  model->eval();
  nn::LoadOptions o = options;
  o.dtype = torch::kFloat32;
  o.ignore.insert(kPositionIdsKey);
  // BLIP_Pretrain's contrastive projections: stored, never used by ImageReward's score().
  for (const char* k : {"blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight",
                        "blip.text_proj.bias"})
    o.ignore.insert(k);
  try {
    nn::load_weights(*model, tensors, o, "ImageReward", checkpoint.string());
  } catch (const IoError& e) {
    // load_weights' generic hint speaks of a config.json, which ImageReward has none of.
    std::string msg = e.what();
    const std::string generic = "\n  (is the config.json from the same model as the weights?)";
    if (auto at = msg.find(generic); at != std::string::npos) msg.erase(at, generic.size());
    throw IoError(
        cat(msg, "\n  (the BLIP ViT was built as ", vit.describe(),
            ": its sizes come from --imagereward-vit-config, default the official ViT-L/16 "
            "at 224 px; the BERT sizes from med_config.json)"));
  }
  if (position_ids.defined()) model->blip->text_encoder->embeddings->position_ids = position_ids;
  if (options.dtype != torch::kFloat32) model->blip->to(options.dtype);
  return model;
}

}  // namespace dro::models
