// Weight files of one diffusers / transformers component folder (unet/, vae/, text_encoder/ ...):
// a single `<stem>.safetensors`, a `variant` file (`<stem>.fp16.safetensors`) or shards listed in
// `<stem>.safetensors.index.json`; failing those, the PyTorch files of the same layouts
// (`diffusion_pytorch_model.bin`, `pytorch_model.bin`, `pytorch_model.bin.index.json`), read by
// io/torch_checkpoint.h without executing them. Also single files of either kind (scorer heads).
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
  // when empty and only a variant exists, that variant is used. safetensors files win over
  // PyTorch files when both are present.
  static ComponentWeights open(const std::filesystem::path& dir, const std::string& variant = "");
  // One explicit file: safetensors, a torch.save checkpoint (.pt/.pth/.bin/.ckpt: its state dict
  // as io::find_torch_state_dict finds it, or the dict under `key`), or a sharded `*.index.json`.
  static ComponentWeights open_file(const std::filesystem::path& path, const std::string& key = "");

  const std::vector<std::filesystem::path>& files() const { return paths_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  // For tensors from PyTorch files `begin` is 0 and `end` the tensor's byte size.
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor get(const std::string& name) const;
  const std::string& variant() const { return variant_; }
  // The nested key a PyTorch checkpoint's state dict came from ("" for the top level).
  const std::string& state_dict_key() const { return state_dict_key_; }
  // Non-tensor entries of PyTorch state dicts that were left out (e.g. "n_averaged").
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  void add_file(const std::filesystem::path& path, const std::string& key);

  struct Loaded {
    TensorInfo info;
    torch::Tensor tensor;
  };
  std::vector<std::filesystem::path> paths_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;  // null for a PyTorch file
  std::map<std::string, size_t> where_;                  // tensor name -> index into files_
  std::map<std::string, Loaded> loaded_;                 // tensors read from PyTorch files
  std::string variant_;
  std::string state_dict_key_;
  std::vector<std::string> skipped_;
};

// The file stems diffusers and transformers use (safetensors; the PyTorch files of transformers
// are `pytorch_model.bin`).
inline const char* kDiffusersWeightsStem = "diffusion_pytorch_model";
inline const char* kTransformersWeightsStem = "model";
inline const char* kTransformersPickleStem = "pytorch_model";

}  // namespace dro::io
