// The ImageReward model (THUDM/ImageReward, ImageReward/ImageReward.py) as its checkpoint
// ImageReward.pt names it: `blip.visual_encoder` (BLIP ViT), `blip.text_encoder` (BLIP's BERT with
// cross-attention to the image tokens), `mlp.layers` (five Linear layers at indices 0, 2, 4, 6, 7
// with dropout between and no activation), and the score
//   (mlp(text_encoder(ids, mask, visual_encoder(pixels))[:, 0]) - mean) / std
// with the constants of ImageReward.py. Not here: BLIP's vision_proj / text_proj (in the file,
// unused by score()), the ranking helpers, training.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/models/blip_vit.h"
#include "dro/models/med_bert.h"
#include "dro/nn/state_dict.h"

namespace dro::models {

// ImageReward.py: self.mean, self.std (ImageReward-v1.0).
constexpr double kImageRewardMean = 0.16717362830052426;
constexpr double kImageRewardStd = 1.0333394966054072;

struct BlipImpl : torch::nn::Module {
  BlipImpl(const BlipVitConfig& vit, const MedBertConfig& text);
  BlipVisionTransformer visual_encoder{nullptr};
  MedBertModel text_encoder{nullptr};
};
TORCH_MODULE(Blip);

// ImageReward.py's MLP: Linear layers of `widths` (widths[0] in, ..., 1 out) at the indices of
// nn.Sequential(Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear).
struct ImageRewardMlpImpl : torch::nn::Module {
  explicit ImageRewardMlpImpl(const std::vector<int64_t>& widths);
  // x: [B, widths[0]] -> [B, 1]
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(ImageRewardMlp);

struct ImageRewardModelImpl : torch::nn::Module {
  ImageRewardModelImpl(const BlipVitConfig& vit, const MedBertConfig& text,
                       const std::vector<int64_t>& mlp_widths);
  // pixels [B, C, S, S] -> the ViT sequence after its final norm: [B, 1 + patches, D]
  torch::Tensor image_embeds(const torch::Tensor& pixels);
  // last_hidden_state[:, 0, :] of the text encoder over the image tokens, float32: [B, H]
  torch::Tensor text_features(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                              const torch::Tensor& image_embeds);
  // mlp(text_features) before the normalisation: [B] float32
  torch::Tensor raw_reward(const torch::Tensor& text_features);
  // (raw_reward - mean) / std: [B] float32, images[i] with prompts[i]
  torch::Tensor score(const torch::Tensor& pixels, const torch::Tensor& input_ids,
                      const torch::Tensor& attention_mask);

  Blip blip{nullptr};
  ImageRewardMlp mlp{nullptr};
};
TORCH_MODULE(ImageRewardModel);

// Reads ImageReward.pt (a torch.save state dict, read without executing it; a .safetensors file
// with the same keys also works), builds the model from `vit` and `text` (whose encoder_width is
// set to the ViT width, as BLIP does) with the MLP widths of the file's mlp.layers.*, and loads
// every tensor by key. Unlike the reference's load_state_dict(strict=False), a missing, unexpected
// or mis-shaped key is an IoError naming the file and the key. The MLP stays float32 (the
// reference calls .float() before it); `options.dtype` applies to the BLIP part.
ImageRewardModel load_image_reward(const std::filesystem::path& checkpoint,
                                   const BlipVitConfig& vit, MedBertConfig text,
                                   const nn::LoadOptions& options);

}  // namespace dro::models
