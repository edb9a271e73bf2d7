// Weight files of one diffusers / transformers component folder (unet/, vae/, text_encoder/ ...):
// a single `<stem>.safetensors`, a `variant` file (`<stem>.fp16.safetensors`) or shards listed in
// `<stem>.safetensors.index.json`. Pickle files get an error that says how to convert them.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/safetensors.h"

namespace dro::io {

// The weights of a component, resolved to files. Tensors are views into the mapped files.
class ComponentWeights {
 public:
  // Resolves the weight files of `dir`. `variant` ("fp16", ...) selects `<stem>.<variant>.*`;
  // when empty and only a variant exists, that variant is used.
  static ComponentWeights open(const std::filesystem::path& dir, const std::string& variant = "");

  const std::vector<std::filesystem::path>& files() const { return paths_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor get(const std::string& name) const;
  const std::string& variant() const { return variant_; }

 private:
  std::vector<std::filesystem::path> paths_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
  std::string variant_;
};

// The file stems diffusers and transformers use.
inline const char* kDiffusersWeightsStem = "diffusion_pytorch_model";
inline const char* kTransformersWeightsStem = "model";

}  // namespace dro::io
