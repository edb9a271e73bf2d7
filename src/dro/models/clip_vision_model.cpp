#include "dro/models/clip_vision_model.h"

#include "dro/core/error.h"

namespace dro::models {

ClipVisionConfig ClipVisionConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  ClipVisionConfig c;
  c.hidden_size = get_or<int64_t>(j, "hidden_size", c.hidden_size, where);
  c.intermediate_size = get_or<int64_t>(j, "intermediate_size", c.intermediate_size, where);
  c.projection_dim = get_or<int64_t>(j, "projection_dim", c.projection_dim, where);
  c.num_hidden_layers = get_or<int64_t>(j, "num_hidden_layers", c.num_hidden_layers, where);
  c.num_attention_heads = get_or<int64_t>(j, "num_attention_heads", c.num_attention_heads, where);
  c.num_channels = get_or<int64_t>(j, "num_channels", c.num_channels, where);
  c.image_size = get_or<int64_t>(j, "image_size", c.image_size, where);
  c.patch_size = get_or<int64_t>(j, "patch_size", c.patch_size, where);
  c.hidden_act = get_or<std::string>(j, "hidden_act", c.hidden_act, where);
  c.layer_norm_eps = get_or<double>(j, "layer_norm_eps", c.layer_norm_eps, where);
  c.validate(where);
  return c;
}

void ClipVisionConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) throw UsageError(cat("[config] ", where, ": ", key, " must be positive, got ", v));
  };
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_channels, "num_channels");
  positive(image_size, "image_size");
  positive(patch_size, "patch_size");
  if (hidden_size % num_attention_heads != 0)
    throw UsageError(cat("[config] ", where, ": hidden_size ", hidden_size,
                         " is not divisible by num_attention_heads ", num_attention_heads));
  if (image_size % patch_size != 0)
    throw UsageError(cat("[config] ", where, ": image_size ", image_size,
                         " is not a multiple of patch_size ", patch_size));
  if (!text::is_clip_activation(hidden_act))
    throw UsageError(cat("[config] ", where, ": hidden_act '", hidden_act, "' is not supported (",
                         text::kClipActivations, ")"));
}

ClipVisionEmbeddingsImpl::ClipVisionEmbeddingsImpl(const ClipVisionConfig& c) {
  class_embedding = register_parameter("class_embedding", torch::zeros({c.hidden_size}));
  patch_embedding = register_module(
      "patch_embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, c.hidden_size, c.patch_size)
                            .stride(c.patch_size)
                            .bias(false)));
  position_embedding = register_module("position_embedding",
                                       torch::nn::Embedding(c.num_patches() + 1, c.hidden_size));
}

torch::Tensor ClipVisionEmbeddingsImpl::forward(const torch::Tensor& pixel_values) {
  const int64_t b = pixel_values.size(0);
  torch::Tensor patches = patch_embedding(pixel_values);  // [B, D, g, g]
  patches = patches.flatten(2).transpose(1, 2);           // [B, g*g, D]
  torch::Tensor cls = class_embedding.to(patches.dtype()).view({1, 1, -1}).expand({b, 1, -1});
  return torch::cat({cls, patches}, 1) + position_embedding->weight;  // [B, 1 + g*g, D]
}

ClipVisionTransformerImpl::ClipVisionTransformerImpl(ClipVisionConfig c) : config_(std::move(c)) {
  auto ln = [&] {
    return torch::nn::LayerNorm(
        torch::nn::LayerNormOptions({config_.hidden_size}).eps(config_.layer_norm_eps));
  };
  embeddings = register_module("embeddings", ClipVisionEmbeddings(config_));
  pre_layrnorm = register_module("pre_layrnorm", ln());
  encoder = register_module("encoder", text::ClipEncoder(config_.encoder_sizes()));
  post_layernorm = register_module("post_layernorm", ln());
}

ClipVisionOutput ClipVisionTransformerImpl::forward(const torch::Tensor& pixel_values) {
  const auto& c = config_;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != c.num_channels ||
      pixel_values.size(2) != c.image_size || pixel_values.size(3) != c.image_size)
    throw UsageError(cat("[clip-vision] pixel_values must be [B, ", c.num_channels, ", ",
                         c.image_size, ", ", c.image_size, "], got ", pixel_values.sizes()));
  const auto& w = embeddings->patch_embedding->weight;
  torch::Tensor h = embeddings(pixel_values.to(w.device(), w.scalar_type()));
  h = pre_layrnorm(h);
  const torch::Tensor no_mask;
  for (auto& layer : encoder->typed_layers) h = layer(h, no_mask);
  ClipVisionOutput out;
  out.last_hidden_state = h;
  out.pooled = post_layernorm(h.select(1, 0));  // [B, D]
  return out;
}

}  // namespace dro::models
