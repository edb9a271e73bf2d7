// UNet2DConditionModel configuration (diffusers `unet/config.json`), with diffusers' defaults and
// per-block values expanded to lists. What SD1.5 and SDXL use is supported; any other setting that
// changes the computation is rejected by name instead of being ignored.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::models {

struct UNetConfig {
  int64_t sample_size = 64;
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  int64_t freq_shift = 0;
  std::vector<std::string> down_block_types;
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";  // "" when null (no mid block)
  std::vector<std::string> up_block_types;
  std::vector<bool> only_cross_attention;   // per down block
  std::vector<int64_t> block_out_channels;
  std::vector<int64_t> layers_per_block;    // per down block
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  double dropout = 0.0;
  std::string act_fn = "silu";
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  std::vector<int64_t> cross_attention_dim;              // per down block
  std::vector<int64_t> transformer_layers_per_block;     // per down block
  std::vector<int64_t> reverse_transformer_layers_per_block;  // per up block (empty: mirrored)
  std::vector<int64_t> num_attention_heads;  // per down block (diffusers' attention_head_dim quirk applied)
  bool use_linear_projection = false;
  bool upcast_attention = false;
  std::string resnet_time_scale_shift = "default";
  double resnet_out_scale_factor = 1.0;
  std::string addition_embed_type;  // "" or "text_time"
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;
  std::string time_embedding_act_fn;  // "" when null
  int64_t time_embedding_dim = 0;     // 0: block_out_channels[0] * 4
  io::OrderedJson raw;                // every field as loaded, written back unchanged on save

  static UNetConfig from_json(const io::OrderedJson& j, const std::string& where);
  static UNetConfig load(const std::filesystem::path& component_dir);
  int64_t time_embed_dim() const { return time_embedding_dim ? time_embedding_dim : block_out_channels[0] * 4; }
};

}  // namespace dro::models
