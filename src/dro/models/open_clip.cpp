#include "dro/models/open_clip.h"

#include <regex>
#include <set>
#include <sstream>

#include "dro/core/error.h"

namespace dro::models {

namespace {

int64_t image_size_of(const io::OrderedJson& v, const std::string& where) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[0] == v[1])
    return v[0].get<int64_t>();
  throw UsageError(cat("[open_clip] ", where, ": vision_cfg.image_size must be an integer or a ",
                       "square [S, S], got ", v.dump()));
}

// Keys whose presence with a non-default value means an architecture we do not build.
void refuse_unsupported(const io::OrderedJson& cfg, const std::string& section,
                        const std::map<std::string, io::OrderedJson>& allowed_values,
                        const std::string& where) {
  for (const auto& [key, ok] : allowed_values) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null() || *it == ok) continue;
    throw UsageError(cat("[open_clip] ", where, ": ", section, ".", key, " = ", it->dump(),
                         " is not supported (only the standard CLIP ViT + text transformer)"));
  }
}

}  // namespace

OpenClipConfig OpenClipConfig::from_json(const io::OrderedJson& j_in, const std::string& where) {
  if (!j_in.is_object()) throw UsageError(cat("[open_clip] ", where, ": not a JSON object"));
  const io::OrderedJson& j = j_in.contains("model_cfg") ? j_in["model_cfg"] : j_in;
  OpenClipConfig c;
  c.raw = j_in;
  if (!j.contains("vision_cfg") || !j.contains("text_cfg") || !j.contains("embed_dim"))
    throw UsageError(
        cat("[open_clip] ", where,
            ": expected an open_clip model config with embed_dim, vision_cfg, text_cfg"));
  const auto& v = j["vision_cfg"];
  const auto& t = j["text_cfg"];
  refuse_unsupported(j, "model", {{"custom_text", false}}, where);
  refuse_unsupported(v, "vision_cfg",
                     {{"timm_model_name", nullptr},
                      {"ls_init_value", nullptr},
                      {"global_average_pool", false},
                      {"attentional_pool", false},
                      {"input_patchnorm", false},
                      {"no_ln_pre", false},
                      {"final_ln_after_pool", false},
                      {"pool_type", "tok"},
                      {"act_kwargs", nullptr},
                      {"norm_kwargs", nullptr}},
                     where);
  refuse_unsupported(t, "text_cfg",
                     {{"hf_model_name", nullptr},
                      {"ls_init_value", nullptr},
                      {"embed_cls", false},
                      {"no_causal_mask", false},
                      {"proj_bias", false},
                      {"pool_type", "argmax"},
                      {"final_ln_after_pool", false},
                      {"act_kwargs", nullptr},
                      {"norm_kwargs", nullptr}},
                     where);
  const bool quick_gelu = io::get_or<bool>(j, "quick_gelu", false, where);
  const std::string act = quick_gelu ? "quick_gelu" : "gelu";

  ClipVisionConfig& vc = c.clip.vision;
  vc.hidden_size = io::get_required<int64_t>(v, "width", where + " vision_cfg");
  vc.num_hidden_layers = io::get_required<int64_t>(v, "layers", where + " vision_cfg");
  vc.patch_size = io::get_required<int64_t>(v, "patch_size", where + " vision_cfg");
  vc.image_size = image_size_of(v.value("image_size", io::OrderedJson(224)), where);
  const int64_t head_width = io::get_or<int64_t>(v, "head_width", 64, where + " vision_cfg");
  if (head_width <= 0 || vc.hidden_size % head_width != 0)
    throw UsageError(cat("[open_clip] ", where, ": vision_cfg.width ", vc.hidden_size,
                         " is not a multiple of head_width ", head_width));
  vc.num_attention_heads = vc.hidden_size / head_width;
  vc.intermediate_size = static_cast<int64_t>(
      vc.hidden_size * io::get_or<double>(v, "mlp_ratio", 4.0, where + " vision_cfg"));
  vc.hidden_act = act;
  vc.layer_norm_eps = 1e-5;  // open_clip's LayerNorm default
  vc.validate(where + " vision_cfg");

  text::ClipTextConfig& tc = c.clip.text;
  tc.hidden_size = io::get_or<int64_t>(t, "width", 512, where + " text_cfg");
  tc.num_attention_heads = io::get_or<int64_t>(t, "heads", 8, where + " text_cfg");
  tc.num_hidden_layers = io::get_or<int64_t>(t, "layers", 12, where + " text_cfg");
  tc.vocab_size = io::get_or<int64_t>(t, "vocab_size", 49408, where + " text_cfg");
  tc.max_position_embeddings = io::get_or<int64_t>(t, "context_length", 77, where + " text_cfg");
  tc.intermediate_size = static_cast<int64_t>(
      tc.hidden_size * io::get_or<double>(t, "mlp_ratio", 4.0, where + " text_cfg"));
  tc.hidden_act = act;
  tc.layer_norm_eps = 1e-5;
  tc.eos_token_id = 2;  // transformers' spelling of open_clip's argmax(ids) pooling
  if (tc.hidden_size <= 0 || tc.num_attention_heads <= 0 || tc.hidden_size % tc.num_attention_heads)
    throw UsageError(cat("[open_clip] ", where, ": text_cfg.width ", tc.hidden_size,
                         " is not divisible by heads ", tc.num_attention_heads));
  c.context_length = tc.max_position_embeddings;
  c.clip.projection_dim = io::get_required<int64_t>(j, "embed_dim", where);
  c.clip.raw = j;

  if (j_in.contains("preprocess_cfg") && j_in["preprocess_cfg"].is_object()) {
    const auto& p = j_in["preprocess_cfg"];
    auto triple = [&](const char* key, std::array<double, 3>& out) {
      if (!p.contains(key)) return;
      const auto& a = p[key];
      if (!a.is_array() || a.size() != 3)
        throw UsageError(
            cat("[open_clip] ", where, ": preprocess_cfg.", key, " must be 3 numbers"));
      for (int i = 0; i < 3; ++i) out[i] = a[i].get<double>();
    };
    triple("mean", c.mean);
    triple("std", c.std);
  }
  return c;
}

OpenClipConfig OpenClipConfig::load(const std::filesystem::path& path) {
  return from_json(io::read_json(path), path.string());
}

OpenClipConfig OpenClipConfig::vit_h_14() {
  const io::OrderedJson j = {{"embed_dim", 1024},
                             {"vision_cfg",
                              {{"image_size", 224},
                               {"layers", 32},
                               {"width", 1280},
                               {"head_width", 80},
                               {"patch_size", 14}}},
                             {"text_cfg",
                              {{"context_length", 77},
                               {"vocab_size", 49408},
                               {"width", 1024},
                               {"heads", 16},
                               {"layers", 24}}}};
  return from_json(j, "built-in ViT-H-14");
}

std::map<std::string, torch::Tensor> open_clip_to_clip_keys(
    const std::map<std::string, torch::Tensor>& state_in, ClipTowers towers,
    const std::string& where) {
  // DDP checkpoints prefix every key with "module."
  bool all_module = !state_in.empty();
  for (const auto& [k, t] : state_in) all_module = all_module && k.rfind("module.", 0) == 0;

  static const std::regex block(R"(^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$)");
  static const std::map<std::string, std::string> in_block = {
      {"ln_1.weight", "layer_norm1.weight"},
      {"ln_1.bias", "layer_norm1.bias"},
      {"ln_2.weight", "layer_norm2.weight"},
      {"ln_2.bias", "layer_norm2.bias"},
      {"attn.out_proj.weight", "self_attn.out_proj.weight"},
      {"attn.out_proj.bias", "self_attn.out_proj.bias"},
      {"mlp.c_fc.weight", "mlp.fc1.weight"},
      {"mlp.c_fc.bias", "mlp.fc1.bias"},
      {"mlp.c_proj.weight", "mlp.fc2.weight"},
      {"mlp.c_proj.bias", "mlp.fc2.bias"}};
  static const std::map<std::string, std::string> plain = {
      {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
      {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
      {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
      {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"},
      {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"},
      {"visual.ln_post.weight", "vision_model.post_layernorm.weight"},
      {"visual.ln_post.bias", "vision_model.post_layernorm.bias"},
      {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.weight", "text_model.final_layer_norm.weight"},
      {"ln_final.bias", "text_model.final_layer_norm.bias"},
      {"logit_scale", "logit_scale"}};

  std::map<std::string, torch::Tensor> out;
  std::vector<std::string> unknown, bad_shape;
  for (const auto& [raw_key, t] : state_in) {
    const std::string key = all_module ? raw_key.substr(7) : raw_key;
    if (key == "attn_mask")
      continue;  // open_clip's causal mask buffer (not stored by new versions)
    const bool is_visual = key.rfind("visual.", 0) == 0;
    const bool is_text = !is_visual && key != "logit_scale";
    if ((is_visual && !towers.vision) || (is_text && !towers.text)) continue;

    if (auto p = plain.find(key); p != plain.end()) {
      out[p->second] = t;
      continue;
    }
    if (key == "visual.proj" || key == "text_projection") {
      if (t.dim() != 2) {
        bad_shape.push_back(cat(key, " ", t.sizes()));
        continue;
      }
      out[key == "visual.proj" ? "visual_projection.weight" : "text_projection.weight"] = t.t();
      continue;
    }
    std::smatch m;
    if (std::regex_match(key, m, block)) {
      const std::string prefix =
          cat(m[1].matched ? "vision_model" : "text_model", ".encoder.layers.", m[2].str(), ".");
      const std::string rest = m[3].str();
      if (auto b = in_block.find(rest); b != in_block.end()) {
        out[prefix + b->second] = t;
        continue;
      }
      if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
        // nn.MultiheadAttention packs q, k, v as rows [0:W], [W:2W], [2W:3W].
        if (t.size(0) % 3 != 0) {
          bad_shape.push_back(cat(key, " ", t.sizes()));
          continue;
        }
        const int64_t w = t.size(0) / 3;
        const std::string kind = rest == "attn.in_proj_weight" ? "weight" : "bias";
        const char* names[3] = {"q_proj", "k_proj", "v_proj"};
        for (int i = 0; i < 3; ++i)
          out[cat(prefix, "self_attn.", names[i], ".", kind)] = t.narrow(0, i * w, w);
        continue;
      }
    }
    unknown.push_back(raw_key);
  }
  if (!unknown.empty() || !bad_shape.empty()) {
    std::ostringstream os;
    os << "[open_clip] " << where << ": not an open_clip CLIP state dict of this config:";
    if (!unknown.empty()) {
      os << "\n  unexpected " << unknown.size() << ":";
      for (size_t i = 0; i < unknown.size() && i < 8; ++i) os << " '" << unknown[i] << "'";
      if (unknown.size() > 8) os << " and " << unknown.size() - 8 << " more";
    }
    for (const auto& b : bad_shape) os << "\n  wrong shape: " << b;
    throw IoError(os.str());
  }
  return out;
}

namespace {

// Our CLIPModel key -> the open_clip key it comes from (for messages about missing keys).
std::string open_clip_name(const std::string& ours) {
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(
           R"(^vision_model\.encoder\.layers\.(\d+)\.self_attn\.[qkv]_proj\.(weight|bias)$)"),
       "visual.transformer.resblocks.$1.attn.in_proj_$2"},
      {std::regex(R"(^text_model\.encoder\.layers\.(\d+)\.self_attn\.[qkv]_proj\.(weight|bias)$)"),
       "transformer.resblocks.$1.attn.in_proj_$2"},
      {std::regex(R"(^vision_model\.encoder\.layers\.(\d+)\.)"),
       "visual.transformer.resblocks.$1."},
      {std::regex(R"(^text_model\.encoder\.layers\.(\d+)\.)"), "transformer.resblocks.$1."},
      {std::regex(R"(layer_norm1)"), "ln_1"},
      {std::regex(R"(layer_norm2)"), "ln_2"},
      {std::regex(R"(self_attn\.out_proj)"), "attn.out_proj"},
      {std::regex(R"(mlp\.fc1)"), "mlp.c_fc"},
      {std::regex(R"(mlp\.fc2)"), "mlp.c_proj"},
      {std::regex(R"(^visual_projection\.weight$)"), "visual.proj"},
      {std::regex(R"(^text_projection\.weight$)"), "text_projection"},
      {std::regex(R"(^vision_model\.embeddings\.class_embedding$)"), "visual.class_embedding"},
      {std::regex(R"(^vision_model\.embeddings\.position_embedding\.weight$)"),
       "visual.positional_embedding"},
      {std::regex(R"(^vision_model\.embeddings\.patch_embedding\.weight$)"), "visual.conv1.weight"},
      {std::regex(R"(^vision_model\.pre_layrnorm)"), "visual.ln_pre"},
      {std::regex(R"(^vision_model\.post_layernorm)"), "visual.ln_post"},
      {std::regex(R"(^text_model\.embeddings\.token_embedding)"), "token_embedding"},
      {std::regex(R"(^text_model\.embeddings\.position_embedding\.weight$)"),
       "positional_embedding"},
      {std::regex(R"(^text_model\.final_layer_norm)"), "ln_final"}};
  std::string s = ours;
  for (const auto& [re, to] : rules) s = std::regex_replace(s, re, to);
  return s;
}

}  // namespace

ClipModel load_open_clip_model(const OpenClipConfig& config,
                               const std::map<std::string, torch::Tensor>& state, ClipTowers towers,
                               const std::string& where, nn::LoadOptions options) {
  ClipModel model(config.clip, towers);
  auto mapped = open_clip_to_clip_keys(state, towers, where);
  // Report keys the file lacks in open_clip's names, as the user's file spells them.
  std::set<std::string> missing;
  for (const auto& [name, t] : nn::state_tensors(*model))
    if (!mapped.count(name)) missing.insert(open_clip_name(name));
  if (!missing.empty()) {
    std::ostringstream os;
    os << "[open_clip] " << where << ": missing " << missing.size()
       << " key(s) of the config's model:";
    size_t i = 0;
    for (const auto& k : missing) {
      if (i++ == 8) {
        os << " and " << missing.size() - 8 << " more";
        break;
      }
      os << " '" << k << "'";
    }
    os << "\n  (is the model config the one these weights were trained with?)";
    throw IoError(os.str());
  }
  load_clip_weights(model, mapped, options, "open_clip model", where);
  return model;
}

}  // namespace dro::models
