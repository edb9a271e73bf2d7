// CLIP text encoder configuration (transformers `text_encoder/config.json`).
#pragma once

#include <filesystem>
#include <string>

#include "dro/io/json.h"

namespace dro::text {

// Activations of CLIP's MLPs (transformers ACT2FN names): quick_gelu (x * sigmoid(1.702 x), OpenAI
// CLIP), gelu (exact, erf), gelu_new / gelu_pytorch_tanh (the tanh approximation).
bool is_clip_activation(const std::string& name);
inline constexpr const char* kClipActivations = "quick_gelu, gelu, gelu_new, gelu_pytorch_tanh";

struct ClipTextConfig {
  std::string architecture = "CLIPTextModel";  // or CLIPTextModelWithProjection
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t projection_dim = 512;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  int64_t eos_token_id = 2;
  io::OrderedJson raw;

  bool with_projection() const { return architecture == "CLIPTextModelWithProjection"; }
  static ClipTextConfig from_json(const io::OrderedJson& j, const std::string& where);
  static ClipTextConfig load(const std::filesystem::path& component_dir);
};

}  // namespace dro::text
