// AutoencoderKL configuration (diffusers `vae/config.json`) with diffusers' defaults.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::models {

struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<std::string> down_block_types;
  std::vector<std::string> up_block_types;
  std::vector<int64_t> block_out_channels;
  int64_t layers_per_block = 1;
  std::string act_fn = "silu";
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  int64_t sample_size = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;
  bool force_upcast = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  io::OrderedJson raw;

  static VaeConfig from_json(const io::OrderedJson& j, const std::string& where);
  static VaeConfig load(const std::filesystem::path& component_dir);
  // Image pixels per latent pixel: 2^(number of blocks - 1).
  int64_t scale_factor() const { return int64_t(1) << (block_out_channels.size() - 1); }
};

}  // namespace dro::models
