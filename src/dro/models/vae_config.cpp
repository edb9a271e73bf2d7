#include "dro/models/vae_config.h"

namespace dro::models {

VaeConfig VaeConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  VaeConfig c;
  c.raw = j;
  c.in_channels = get_or<int64_t>(j, "in_channels", 3, where);
  c.out_channels = get_or<int64_t>(j, "out_channels", 3, where);
  c.down_block_types = get_or<std::vector<std::string>>(j, "down_block_types", {"DownEncoderBlock2D"}, where);
  c.up_block_types = get_or<std::vector<std::string>>(j, "up_block_types", {"UpDecoderBlock2D"}, where);
  c.block_out_channels = get_or<std::vector<int64_t>>(j, "block_out_channels", {64}, where);
  c.layers_per_block = get_or<int64_t>(j, "layers_per_block", 1, where);
  c.act_fn = get_or<std::string>(j, "act_fn", "silu", where);
  c.latent_channels = get_or<int64_t>(j, "latent_channels", 4, where);
  c.norm_num_groups = get_or<int64_t>(j, "norm_num_groups", 32, where);
  c.sample_size = get_or<int64_t>(j, "sample_size", 32, where);
  c.scaling_factor = get_or<double>(j, "scaling_factor", 0.18215, where);
  c.shift_factor = io::get_optional<double>(j, "shift_factor", where);
  c.force_upcast = get_or<bool>(j, "force_upcast", true, where);
  c.use_quant_conv = get_or<bool>(j, "use_quant_conv", true, where);
  c.use_post_quant_conv = get_or<bool>(j, "use_post_quant_conv", true, where);
  c.mid_block_add_attention = get_or<bool>(j, "mid_block_add_attention", true, where);
  const size_t n = c.block_out_channels.size();
  if (n == 0) throw UsageError(cat("[config] ", where, ": 'block_out_channels' is empty"));
  if (c.down_block_types.size() != n || c.up_block_types.size() != n)
    throw UsageError(cat("[config] ", where, ": 'down_block_types' and 'up_block_types' must have ",
                         n, " entries like 'block_out_channels'"));
  for (const auto& t : c.down_block_types)
    if (t != "DownEncoderBlock2D")
      throw UsageError(cat("[config] ", where, ": down block type '", t, "' is not supported"));
  for (const auto& t : c.up_block_types)
    if (t != "UpDecoderBlock2D")
      throw UsageError(cat("[config] ", where, ": up block type '", t, "' is not supported"));
  if (c.act_fn != "silu")
    throw UsageError(cat("[config] ", where, ": act_fn '", c.act_fn, "' is not supported (silu)"));
  auto lm = j.find("latents_mean");
  if (lm != j.end() && !lm->is_null())
    throw UsageError(cat("[config] ", where, ": 'latents_mean' is not supported"));
  return c;
}

VaeConfig VaeConfig::load(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  return from_json(io::read_json(path), path.string());
}

}  // namespace dro::models
