// Loading and saving module weights by checkpoint key. Our modules register children and
// parameters under the diffusers / transformers names, so `named_parameters()` equals the key set
// of the weights file and loading is a checked key-for-key copy.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>

#include <torch/torch.h>

#include "dro/io/json.h"
#include "dro/io/weights.h"

namespace dro::nn {

struct LoadOptions {
  torch::Dtype dtype = torch::kFloat32;  // floating-point weights are converted to this
  torch::Device device = torch::kCPU;
  // Maps a key found in the file to our key (legacy names); identity when empty.
  std::function<std::string(const std::string&)> rename;
  // File keys that are known to carry no weights for us (e.g. text_model.embeddings.position_ids).
  std::set<std::string> ignore;
};

// Copies every parameter and buffer of `module` from `weights`. Throws IoError listing missing,
// unexpected and wrongly shaped keys by name (up to a few of each) and never leaves a
// silently-partial model. `where` names the component in messages. Moves the module to
// options.device / options.dtype first.
void load_weights(torch::nn::Module& module, const io::ComponentWeights& weights,
                  const LoadOptions& options, const std::string& where);

// The same from tensors already in memory (e.g. a checkpoint whose keys were mapped to ours);
// `source` names the file(s) they came from in messages.
void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const LoadOptions& options, const std::string& where,
                  const std::string& source = "");

// Writes `config.json` (the config as loaded, unchanged) and `<stem>.safetensors` (every parameter
// and persistent buffer, in `dtype` when given) into `dir`, each atomically.
void save_component(const std::filesystem::path& dir, const torch::nn::Module& module,
                    const io::OrderedJson& config, const std::string& stem,
                    c10::optional<torch::Dtype> dtype = c10::nullopt);

// Parameters and buffers as one name -> tensor list (what save_component writes).
std::vector<std::pair<std::string, torch::Tensor>> state_tensors(const torch::nn::Module& module);

}  // namespace dro::nn
