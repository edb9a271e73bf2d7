#include "dro/models/unet_config.h"

namespace dro::models {
namespace {

// An int or a per-block list of ints, expanded to `n` entries.
std::vector<int64_t> per_block(const io::OrderedJson& j, const std::string& key, int64_t fallback,
                               size_t n, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::vector<int64_t>(n, fallback);
  if (it->is_number_integer()) return std::vector<int64_t>(n, it->get<int64_t>());
  if (it->is_array()) {
    std::vector<int64_t> v;
    for (const auto& e : *it) {
      if (!e.is_number_integer())
        throw UsageError(cat("[config] ", where, ": '", key, "' entries must be integers (nested ",
                             "lists per layer are not supported), found ", e.dump()));
      v.push_back(e.get<int64_t>());
    }
    if (v.size() != n)
      throw UsageError(cat("[config] ", where, ": '", key, "' has ", v.size(), " entries but there are ",
                           n, " down blocks"));
    return v;
  }
  throw UsageError(cat("[config] ", where, ": '", key, "' must be an int or a list, found ", it->dump()));
}

void reject_if_set(const io::OrderedJson& j, const std::string& key, const std::string& where,
                   const io::OrderedJson& allowed = nullptr) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null() || *it == allowed) return;
  throw UsageError(cat("[config] ", where, ": '", key, "' = ", it->dump(),
                       " is not supported (only the settings Stable Diffusion 1.5 / SDXL use are)"));
}

}  // namespace

UNetConfig UNetConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  UNetConfig c;
  c.raw = j;
  auto ss = j.find("sample_size");
  if (ss != j.end() && ss->is_array()) {
    if (ss->empty() || !(*ss)[0].is_number_integer())
      throw UsageError(cat("[config] ", where, ": 'sample_size' must be an int or [h, w]"));
    c.sample_size = (*ss)[0].get<int64_t>();
  } else {
    c.sample_size = get_or<int64_t>(j, "sample_size", 64, where);
  }
  c.in_channels = get_or<int64_t>(j, "in_channels", 4, where);
  c.out_channels = get_or<int64_t>(j, "out_channels", 4, where);
  c.center_input_sample = get_or<bool>(j, "center_input_sample", false, where);
  c.flip_sin_to_cos = get_or<bool>(j, "flip_sin_to_cos", true, where);
  c.freq_shift = get_or<int64_t>(j, "freq_shift", 0, where);
  c.down_block_types = get_or<std::vector<std::string>>(
      j, "down_block_types",
      {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}, where);
  c.up_block_types = get_or<std::vector<std::string>>(
      j, "up_block_types",
      {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}, where);
  auto mb = j.find("mid_block_type");
  if (mb == j.end()) c.mid_block_type = "UNetMidBlock2DCrossAttn";
  else if (mb->is_null()) c.mid_block_type = "";
  else c.mid_block_type = get_or<std::string>(j, "mid_block_type", "", where);
  c.block_out_channels = get_or<std::vector<int64_t>>(j, "block_out_channels", {320, 640, 1280, 1280}, where);
  const size_t n = c.down_block_types.size();
  if (n == 0) throw UsageError(cat("[config] ", where, ": 'down_block_types' is empty"));
  if (c.block_out_channels.size() != n)
    throw UsageError(cat("[config] ", where, ": 'block_out_channels' has ", c.block_out_channels.size(),
                         " entries but 'down_block_types' has ", n));
  if (c.up_block_types.size() != n)
    throw UsageError(cat("[config] ", where, ": 'up_block_types' has ", c.up_block_types.size(),
                         " entries but 'down_block_types' has ", n));
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
      throw UsageError(cat("[config] ", where, ": down block type '", t,
                           "' is not supported (CrossAttnDownBlock2D, DownBlock2D)"));
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
      throw UsageError(cat("[config] ", where, ": up block type '", t,
                           "' is not supported (CrossAttnUpBlock2D, UpBlock2D)"));
  if (!c.mid_block_type.empty() && c.mid_block_type != "UNetMidBlock2DCrossAttn")
    throw UsageError(cat("[config] ", where, ": mid_block_type '", c.mid_block_type,
                         "' is not supported (UNetMidBlock2DCrossAttn or null)"));

  auto oca = j.find("only_cross_attention");
  if (oca != j.end() && oca->is_array()) {
    for (const auto& e : *oca) c.only_cross_attention.push_back(e.get<bool>());
    if (c.only_cross_attention.size() != n)
      throw UsageError(cat("[config] ", where, ": 'only_cross_attention' length must be ", n));
  } else {
    c.only_cross_attention.assign(n, get_or<bool>(j, "only_cross_attention", false, where));
  }
  c.layers_per_block = per_block(j, "layers_per_block", 2, n, where);
  c.downsample_padding = get_or<int64_t>(j, "downsample_padding", 1, where);
  c.mid_block_scale_factor = get_or<double>(j, "mid_block_scale_factor", 1.0, where);
  c.dropout = get_or<double>(j, "dropout", 0.0, where);
  c.act_fn = get_or<std::string>(j, "act_fn", "silu", where);
  if (c.act_fn != "silu")
    throw UsageError(cat("[config] ", where, ": act_fn '", c.act_fn, "' is not supported (silu)"));
  c.norm_num_groups = get_or<int64_t>(j, "norm_num_groups", 32, where);
  c.norm_eps = get_or<double>(j, "norm_eps", 1e-5, where);
  c.cross_attention_dim = per_block(j, "cross_attention_dim", 1280, n, where);
  c.transformer_layers_per_block = per_block(j, "transformer_layers_per_block", 1, n, where);
  auto rev = j.find("reverse_transformer_layers_per_block");
  if (rev != j.end() && !rev->is_null())
    c.reverse_transformer_layers_per_block = per_block(j, "reverse_transformer_layers_per_block", 1, n, where);
  // diffusers: num_attention_heads defaults to attention_head_dim, which SD configs use to mean
  // the number of heads (a naming mistake kept for compatibility).
  auto nah = j.find("num_attention_heads");
  if (nah != j.end() && !nah->is_null())
    c.num_attention_heads = per_block(j, "num_attention_heads", 8, n, where);
  else
    c.num_attention_heads = per_block(j, "attention_head_dim", 8, n, where);
  c.use_linear_projection = get_or<bool>(j, "use_linear_projection", false, where);
  c.upcast_attention = get_or<bool>(j, "upcast_attention", false, where);
  c.resnet_time_scale_shift = get_or<std::string>(j, "resnet_time_scale_shift", "default", where);
  if (c.resnet_time_scale_shift != "default")
    throw UsageError(cat("[config] ", where, ": resnet_time_scale_shift '", c.resnet_time_scale_shift,
                         "' is not supported (default)"));
  c.resnet_out_scale_factor = get_or<double>(j, "resnet_out_scale_factor", 1.0, where);
  c.addition_embed_type = get_or<std::string>(j, "addition_embed_type", "", where);
  if (!c.addition_embed_type.empty() && c.addition_embed_type != "text_time")
    throw UsageError(cat("[config] ", where, ": addition_embed_type '", c.addition_embed_type,
                         "' is not supported (null or text_time)"));
  c.addition_time_embed_dim = get_or<int64_t>(j, "addition_time_embed_dim", 0, where);
  c.projection_class_embeddings_input_dim =
      get_or<int64_t>(j, "projection_class_embeddings_input_dim", 0, where);
  if (c.addition_embed_type == "text_time" &&
      (c.addition_time_embed_dim <= 0 || c.projection_class_embeddings_input_dim <= 0))
    throw UsageError(cat("[config] ", where, ": addition_embed_type text_time needs ",
                         "addition_time_embed_dim and projection_class_embeddings_input_dim"));
  c.conv_in_kernel = get_or<int64_t>(j, "conv_in_kernel", 3, where);
  c.conv_out_kernel = get_or<int64_t>(j, "conv_out_kernel", 3, where);
  c.time_embedding_act_fn = get_or<std::string>(j, "time_embedding_act_fn", "", where);
  c.time_embedding_dim = get_or<int64_t>(j, "time_embedding_dim", 0, where);
  reject_if_set(j, "class_embed_type", where);
  reject_if_set(j, "num_class_embeds", where);
  reject_if_set(j, "encoder_hid_dim", where);
  reject_if_set(j, "encoder_hid_dim_type", where);
  reject_if_set(j, "time_cond_proj_dim", where);
  reject_if_set(j, "timestep_post_act", where);
  reject_if_set(j, "cross_attention_norm", where);
  reject_if_set(j, "dual_cross_attention", where, false);
  reject_if_set(j, "time_embedding_type", where, "positional");
  reject_if_set(j, "attention_type", where, "default");
  reject_if_set(j, "resnet_skip_time_act", where, false);
  reject_if_set(j, "class_embeddings_concat", where, false);
  return c;
}

UNetConfig UNetConfig::load(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  return from_json(io::read_json(path), path.string());
}

}  // namespace dro::models
