#include "dro/models/clip_model.h"

#include "dro/core/error.h"
#include "dro/io/weights.h"

namespace dro::models {

namespace {

// transformers 4.47 CLIPTextConfig defaults that differ from the Stable Diffusion text encoders'
// legacy files (bos/eos 49406/49407 since the eos-pooling fix).
io::OrderedJson clip_text_defaults() {
  return {{"vocab_size", 49408},           {"hidden_size", 512},
          {"intermediate_size", 2048},     {"projection_dim", 512},
          {"num_hidden_layers", 12},       {"num_attention_heads", 8},
          {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"},
          {"layer_norm_eps", 1e-5},        {"pad_token_id", 1},
          {"bos_token_id", 49406},         {"eos_token_id", 49407}};
}

io::OrderedJson clip_vision_defaults() {
  return {{"hidden_size", 768},      {"intermediate_size", 3072}, {"projection_dim", 512},
          {"num_hidden_layers", 12}, {"num_attention_heads", 12}, {"num_channels", 3},
          {"image_size", 224},       {"patch_size", 32},          {"hidden_act", "quick_gelu"},
          {"layer_norm_eps", 1e-5}};
}

// transformers CLIPConfig.__init__: a `*_config_dict` is completed with the class defaults and
// then overrides every key of `*_config` (so a key it lacks takes the default, not the sub-config).
io::OrderedJson merged_sub_config(const io::OrderedJson& j, const std::string& name,
                                  const io::OrderedJson& defaults, const std::string& where) {
  io::OrderedJson out = defaults;
  auto cfg = j.find(name);
  if (cfg != j.end() && !cfg->is_null()) {
    if (!cfg->is_object())
      throw UsageError(cat("[config] ", where, ": '", name, "' must be an object"));
    for (auto it = cfg->begin(); it != cfg->end(); ++it)
      if (!it.value().is_null()) out[it.key()] = it.value();
  }
  auto dict = j.find(name + "_dict");
  if (dict != j.end() && !dict->is_null()) {
    if (!dict->is_object())
      throw UsageError(cat("[config] ", where, ": '", name, "_dict' must be an object"));
    for (auto it = defaults.begin(); it != defaults.end(); ++it) out[it.key()] = it.value();
    for (auto it = dict->begin(); it != dict->end(); ++it)
      if (!it.value().is_null()) out[it.key()] = it.value();
  }
  return out;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

ClipModelConfig ClipModelConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  if (!j.is_object()) throw UsageError(cat("[config] ", where, ": not a JSON object"));
  ClipModelConfig c;
  c.raw = j;
  io::OrderedJson text = merged_sub_config(j, "text_config", clip_text_defaults(), where);
  text["architectures"] = io::OrderedJson::array({"CLIPTextModel"});
  c.text = text::ClipTextConfig::from_json(text, where + " text_config");
  c.vision = ClipVisionConfig::from_json(
      merged_sub_config(j, "vision_config", clip_vision_defaults(), where),
      where + " vision_config");
  // The sub-configs' projection_dim is a default nobody reads: CLIPModel takes the top-level one.
  c.projection_dim = io::get_or<int64_t>(j, "projection_dim", 512, where);
  c.logit_scale_init_value = io::get_or<double>(j, "logit_scale_init_value", 2.6592, where);
  if (c.projection_dim <= 0)
    throw UsageError(cat("[config] ", where, ": projection_dim must be positive"));
  return c;
}

ClipModelConfig ClipModelConfig::load(const std::filesystem::path& path) {
  return from_json(io::read_json(path), path.string());
}

ClipModelImpl::ClipModelImpl(ClipModelConfig config, ClipTowers towers)
    : config_(std::move(config)), towers_(towers) {
  if (!towers_.text && !towers_.vision)
    throw UsageError("[clip] a CLIP model needs at least one tower");
  auto proj = [&](int64_t in) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, config_.projection_dim).bias(false));
  };
  if (towers_.text) {
    text_model = register_module("text_model", text::ClipTextTransformer(config_.text));
    text_projection = register_module("text_projection", proj(config_.text.hidden_size));
  }
  if (towers_.vision) {
    vision_model = register_module("vision_model", ClipVisionTransformer(config_.vision));
    visual_projection = register_module("visual_projection", proj(config_.vision.hidden_size));
  }
  logit_scale = register_parameter("logit_scale",
                                   torch::tensor(config_.logit_scale_init_value).to(torch::kFloat));
}

torch::Tensor ClipModelImpl::get_image_features(const torch::Tensor& pixel_values) {
  if (!vision_model) throw UsageError("[clip] this model was loaded without its vision tower");
  return visual_projection(vision_model->forward(pixel_values).pooled);
}

torch::Tensor ClipModelImpl::get_text_features(const torch::Tensor& input_ids,
                                               const torch::Tensor& attention_mask) {
  if (!text_model) throw UsageError("[clip] this model was loaded without its text tower");
  return text_projection(text_model->forward(input_ids, attention_mask).pooled);
}

bool ClipModelImpl::wants_key(const std::string& key) const {
  if (starts_with(key, "text_model.") || starts_with(key, "text_projection.")) return towers_.text;
  if (starts_with(key, "vision_model.") || starts_with(key, "visual_projection."))
    return towers_.vision;
  return true;
}

void load_clip_weights(ClipModel& model, const std::map<std::string, torch::Tensor>& tensors,
                       const nn::LoadOptions& options, const std::string& where,
                       const std::string& source) {
  std::map<std::string, torch::Tensor> kept;
  for (const auto& [k, t] : tensors) {
    // Older checkpoints store the arange position_ids buffers; they carry nothing.
    if (k == "text_model.embeddings.position_ids" || k == "vision_model.embeddings.position_ids")
      continue;
    if (model->wants_key(k)) kept.emplace(k, t);
  }
  nn::load_weights(*model, kept, options, where, source);
  model->eval();
}

ClipModel load_clip_model(const std::filesystem::path& dir, ClipTowers towers,
                          nn::LoadOptions options, std::filesystem::path* weights_file) {
  ClipModel model(ClipModelConfig::load(dir / "config.json"), towers);
  const auto weights = io::ComponentWeights::open(dir);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : weights.names())
    if (model->wants_key(name))
      tensors.emplace(name, weights.get(name));  // the skipped tower unread
  load_clip_weights(model, tensors, options, dir.string(), weights.files().front().string());
  if (weights_file) *weights_file = weights.files().front();
  return model;
}

}  // namespace dro::models
