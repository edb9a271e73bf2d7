// transformers' CLIPModel: the text tower (text_model.*), the vision tower (vision_model.*), the
// two bias-free projections and logit_scale, configured from a CLIPModel config.json with
// transformers' quirks (the top-level projection_dim; legacy text_config_dict / vision_config_dict
// that override the sub-configs with class defaults filled in). Either tower may be left out when a
// score needs only the other (its keys in the file are then not read). The same module loads
// open_clip checkpoints through models/open_clip.h.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

#include "dro/models/clip_vision_model.h"
#include "dro/nn/state_dict.h"
#include "dro/text/clip_config.h"
#include "dro/text/clip_text_model.h"

namespace dro::models {

struct ClipModelConfig {
  text::ClipTextConfig text;
  ClipVisionConfig vision;
  int64_t projection_dim = 512;
  double logit_scale_init_value = 2.6592;
  io::OrderedJson raw;

  // From a CLIPModel config.json object; UsageError naming `where` and the key for bad values.
  static ClipModelConfig from_json(const io::OrderedJson& j, const std::string& where);
  static ClipModelConfig load(const std::filesystem::path& config_json);
};

// Which towers to build and load.
struct ClipTowers {
  bool text = true;
  bool vision = true;
};

struct ClipModelImpl : torch::nn::Module {
  ClipModelImpl(ClipModelConfig config, ClipTowers towers = {});

  // pixel_values: [B, 3, S, S] -> image_embeds [B, P] (not normalised), as get_image_features.
  torch::Tensor get_image_features(const torch::Tensor& pixel_values);
  // input_ids / attention_mask: [B, S] -> text_embeds [B, P] (not normalised).
  torch::Tensor get_text_features(const torch::Tensor& input_ids,
                                  const torch::Tensor& attention_mask = {});

  const ClipModelConfig& config() const { return config_; }
  const ClipTowers& towers() const { return towers_; }
  // Checkpoint keys this module holds for the towers it built (prefixes of skipped towers
  // excluded).
  bool wants_key(const std::string& key) const;

  text::ClipTextTransformer text_model{nullptr};
  ClipVisionTransformer vision_model{nullptr};
  torch::nn::Linear visual_projection{nullptr};  // [P, Dv], no bias
  torch::nn::Linear text_projection{nullptr};    // [P, Dt], no bias
  torch::Tensor logit_scale;                     // [] (the score multiplies by its exp())

 private:
  ClipModelConfig config_;
  ClipTowers towers_;
};
TORCH_MODULE(ClipModel);

// Loads a CLIPModel folder (config.json + model.safetensors, else pytorch_model.bin as transformers
// does). The `*.position_ids` buffers older checkpoints carry are ignored; any other missing,
// unexpected or wrongly shaped key is an IoError naming it. Returned in eval mode.
// `weights_file`, when given, receives the (first) weights file read.
ClipModel load_clip_model(const std::filesystem::path& dir, ClipTowers towers = {},
                          nn::LoadOptions options = {},
                          std::filesystem::path* weights_file = nullptr);

// Loads named tensors in CLIPModel keys into `model`, skipping the keys of towers it did not build.
void load_clip_weights(ClipModel& model, const std::map<std::string, torch::Tensor>& tensors,
                       const nn::LoadOptions& options, const std::string& where,
                       const std::string& source);

}  // namespace dro::models
