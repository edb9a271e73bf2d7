// LoRA on a diffusers UNet: which layers take adapters (peft's target_modules), the adapters a
// training run holds (peft's initialisation, a second set for the lagged policy), and merging
// adapters into the weights. The file layouts are in lora_file.h.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/models/unet.h"
#include "dro/nn/lora.h"

namespace dro::models {

struct LoraOptions {
  int64_t rank = 0;  // 0: no LoRA
  double alpha = 0;  // 0: the rank (scale 1, as diffusers' training scripts)
  double dropout = 0;
  std::vector<std::string> targets;  // empty: default_lora_targets()
  double scale() const {
    return (alpha > 0 ? alpha : static_cast<double>(rank)) / static_cast<double>(rank);
  }
};

// to_q, to_k, to_v, to_out.0: the attention projections.
const std::vector<std::string>& default_lora_targets();
// "a, b,c" -> {"a", "b", "c"} (--lora-targets); the defaults for an empty list.
std::vector<std::string> parse_lora_targets(const std::string& list);
// The same list as one canonical "a,b,c" string (what a run's config records).
std::string canonical_lora_targets(const std::string& list);

// Whether `pattern` names module `name`: the pattern, a glob where '*' and '?' may cross dots,
// matches the whole name or a dotted tail of it ("to_q", "ff.net.*", "down_blocks.1.*.to_k").
bool lora_pattern_matches(const std::string& pattern, const std::string& name);

// A layer of the UNet that can take an adapter.
struct LoraTarget {
  // The module name, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q".
  std::string name;
  nn::LinearImpl* linear = nullptr;
  nn::Conv2dImpl* conv = nullptr;
  nn::LoraSlots* slots() const { return linear ? &linear->lora : &conv->lora; }
  const torch::Tensor& weight() const { return linear ? linear->weight : conv->weight; }
  int64_t in_features() const;  // in (linear) or in * kh * kw (conv)
  int64_t out_features() const;
};
// Every linear and conv layer of `unet`, in module order.
std::vector<LoraTarget> lora_capable_layers(UNet2DConditionModelImpl& unet);

// One layer's adapter as files hold it; the update is (alpha / rank) * up @ down.
struct LoraLayer {
  torch::Tensor down, up;
  double alpha = 0;  // 0: the rank
  int64_t rank() const { return down.size(0); }
  double scale() const {
    return (alpha > 0 ? alpha : static_cast<double>(rank())) / static_cast<double>(rank());
  }
};
using LoraLayers = std::map<std::string, LoraLayer>;  // by UNet module name

// Trained adapters attached to a UNet for the life of the object (detached by the destructor).
class UnetLora {
 public:
  // Adapters on the layers `o.targets` match, in `dtype` on `device`: down drawn as peft does
  // (kaiming-uniform, a = sqrt(5)) from `seed`, up zero. UsageError for a pattern that matches
  // no layer, a rank above a layer's size, or a layer that cannot take one.
  UnetLora(UNet2DConditionModelImpl& unet, const LoraOptions& o, torch::Dtype dtype,
           const torch::Device& device, uint64_t seed);
  ~UnetLora();
  UnetLora(const UnetLora&) = delete;
  UnetLora& operator=(const UnetLora&) = delete;

  const LoraOptions& options() const { return options_; }
  // Trainable tensors and their peft names ("<module>.lora_A.weight", "<module>.lora_B.weight").
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  const std::vector<std::string>& names() const { return names_; }
  size_t layer_count() const { return targets_.size(); }
  int64_t parameter_count() const;
  // The dropout masks' generator (needed when dropout > 0).
  void set_dropout_generator(std::shared_ptr<at::Generator> gen);

  // A second set of adapters that the LoraSlot::kPolicy forwards apply (the lagged policy).
  void add_policy_slot();
  bool has_policy_slot() const { return !policy_.empty(); }
  void copy_to_policy();
  const std::vector<torch::Tensor>& policy_parameters() const { return policy_; }

  // The adapters as a file holds them, from `values` (parameters() or, e.g., their EMA).
  LoraLayers layers(const std::vector<torch::Tensor>& values) const;

 private:
  LoraOptions options_;
  std::vector<LoraTarget> targets_;
  std::vector<std::shared_ptr<nn::LoraWeights>> trained_;
  std::vector<torch::Tensor> params_, policy_;
  std::vector<std::string> names_;
};

// W += multiplier * scale * up @ down for every layer (computed in float32).
void merge_lora(UNet2DConditionModelImpl& unet, const LoraLayers& layers, double multiplier);

}  // namespace dro::models
