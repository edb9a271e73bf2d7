#include "dro/text/clip_config.h"

namespace dro::text {

bool is_clip_activation(const std::string& name) {
  return name == "quick_gelu" || name == "gelu" || name == "gelu_new" || name == "gelu_pytorch_tanh";
}

ClipTextConfig ClipTextConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  ClipTextConfig c;
  c.raw = j;
  auto arch = get_or<std::vector<std::string>>(j, "architectures", {}, where);
  if (!arch.empty()) c.architecture = arch[0];
  if (c.architecture != "CLIPTextModel" && c.architecture != "CLIPTextModelWithProjection")
    throw UsageError(cat("[config] ", where, ": architecture '", c.architecture,
                         "' is not supported (CLIPTextModel, CLIPTextModelWithProjection)"));
  c.vocab_size = get_or<int64_t>(j, "vocab_size", 49408, where);
  c.hidden_size = get_or<int64_t>(j, "hidden_size", 512, where);
  c.intermediate_size = get_or<int64_t>(j, "intermediate_size", 2048, where);
  c.projection_dim = get_or<int64_t>(j, "projection_dim", 512, where);
  c.num_hidden_layers = get_or<int64_t>(j, "num_hidden_layers", 12, where);
  c.num_attention_heads = get_or<int64_t>(j, "num_attention_heads", 8, where);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 77, where);
  c.hidden_act = get_or<std::string>(j, "hidden_act", "quick_gelu", where);
  c.layer_norm_eps = get_or<double>(j, "layer_norm_eps", 1e-5, where);
  c.eos_token_id = get_or<int64_t>(j, "eos_token_id", 2, where);
  if (!is_clip_activation(c.hidden_act))
    throw UsageError(cat("[config] ", where, ": hidden_act '", c.hidden_act,
                         "' is not supported (", kClipActivations, ")"));
  if (c.hidden_size % c.num_attention_heads != 0)
    throw UsageError(cat("[config] ", where, ": hidden_size ", c.hidden_size,
                         " is not divisible by num_attention_heads ", c.num_attention_heads));
  return c;
}

ClipTextConfig ClipTextConfig::load(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  return from_json(io::read_json(path), path.string());
}

}  // namespace dro::text
