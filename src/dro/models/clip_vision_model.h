// CLIP vision transformer as transformers' CLIPVisionTransformer (the `vision_model.` prefix of a
// CLIPModel checkpoint): patch + class + position embeddings, pre-layernorm, the same pre-norm
// encoder layers as the text tower, and post-layernorm on the class token. Module names are the
// checkpoint keys. Not here: interpolated position embeddings for other image sizes, dropout.
#pragma once

#include <string>

#include <torch/torch.h>

#include "dro/io/json.h"
#include "dro/text/clip_text_model.h"

namespace dro::models {

// transformers CLIPVisionConfig, with its defaults.
struct ClipVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t projection_dim = 512;  // unused by CLIPModel (it takes the top-level projection_dim)
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;

  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  text::ClipEncoderSizes encoder_sizes() const {
    return {hidden_size,       intermediate_size, num_attention_heads,
            num_hidden_layers, hidden_act,        layer_norm_eps};
  }
  // Validated: positive sizes, heads dividing the width, patch dividing the image, known act.
  static ClipVisionConfig from_json(const io::OrderedJson& j, const std::string& where);
  void validate(const std::string& where) const;
};

struct ClipVisionEmbeddingsImpl : torch::nn::Module {
  explicit ClipVisionEmbeddingsImpl(const ClipVisionConfig& config);
  // pixel_values: [B, C, H, W] -> [B, 1 + patches, D]
  torch::Tensor forward(const torch::Tensor& pixel_values);

  torch::Tensor class_embedding;                     // [D]
  torch::nn::Conv2d patch_embedding{nullptr};        // [D, C, p, p], no bias
  torch::nn::Embedding position_embedding{nullptr};  // [1 + patches, D]
};
TORCH_MODULE(ClipVisionEmbeddings);

struct ClipVisionOutput {
  torch::Tensor last_hidden_state;  // [B, 1 + patches, D], encoder output (no post-layernorm)
  torch::Tensor pooled;             // [B, D], post_layernorm(class token)
};

struct ClipVisionTransformerImpl : torch::nn::Module {
  explicit ClipVisionTransformerImpl(ClipVisionConfig config);
  // pixel_values: [B, C, image_size, image_size] float. UsageError for another shape.
  ClipVisionOutput forward(const torch::Tensor& pixel_values);
  const ClipVisionConfig& config() const { return config_; }

  ClipVisionEmbeddings embeddings{nullptr};
  torch::nn::LayerNorm pre_layrnorm{nullptr};  // [D]; the spelling is transformers'
  text::ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm post_layernorm{nullptr};  // [D]

 private:
  ClipVisionConfig config_;
};
TORCH_MODULE(ClipVisionTransformer);

}  // namespace dro::models
