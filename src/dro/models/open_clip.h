// open_clip checkpoints (what HPSv2 and the laion `open_clip_pytorch_model.bin` files are) on our
// CLIPModel: the open_clip model config (`open_clip_config.json` {"model_cfg": ...} or a bare
// `model_configs/ViT-H-14.json`) becomes a ClipModelConfig, and the open_clip state dict
// (`visual.*`, `transformer.resblocks.N.attn.in_proj_weight`, `token_embedding`, `ln_final`,
// `text_projection`, `logit_scale`) is mapped key for key onto transformers' names (in_proj rows
// split into q/k/v, the [W, E] projections transposed). The computation is the same: open_clip's
// text tower pools at argmax(ids) and its causal mask is ours. Supported: the standard CLIP
// (ViT image tower, transformer text tower) configs; timm / Hugging Face towers, layer scale,
// attentional pooling, SigLIP biases and the like are refused by name.
#pragma once

#include <array>
#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

#include "dro/models/clip_model.h"

namespace dro::models {

struct OpenClipConfig {
  ClipModelConfig clip;  // the same model in CLIPModel terms
  std::array<double, 3> mean{0.48145466, 0.4578275, 0.40821073};  // preprocess_cfg, else OpenAI's
  std::array<double, 3> std{0.26862954, 0.26130258, 0.27577711};
  int64_t context_length = 77;
  io::OrderedJson raw;

  // `j` is either {"model_cfg": {...}, "preprocess_cfg": {...}} or the model config itself.
  static OpenClipConfig from_json(const io::OrderedJson& j, const std::string& where);
  static OpenClipConfig load(const std::filesystem::path& path);
  // open_clip's bundled model_configs/ViT-H-14.json (HPSv2, laion2B-s32B-b79K).
  static OpenClipConfig vit_h_14();
};

// Maps an open_clip state dict onto CLIPModel keys for the towers in `towers` (the other tower's
// keys are dropped unread). IoError naming `where` and the open_clip keys for unknown, missing or
// wrongly shaped entries. A `module.` prefix on every key (DDP checkpoints) is removed.
std::map<std::string, torch::Tensor> open_clip_to_clip_keys(
    const std::map<std::string, torch::Tensor>& state, ClipTowers towers, const std::string& where);

// Builds the model of `config` and loads an open_clip state dict into it (eval mode).
ClipModel load_open_clip_model(const OpenClipConfig& config,
                               const std::map<std::string, torch::Tensor>& state, ClipTowers towers,
                               const std::string& where, nn::LoadOptions options = {});

}  // namespace dro::models
