// LoRA on a diffusers UNet: which layers take adapters (peft's target_modules), the adapters a
// training run holds, and the two file layouts the ecosystem reads:
//  * diffusers / peft (`pipe.load_lora_weights()`): "unet.<module>.lora_A.weight" / "lora_B.weight",
//    with the attention projections spelled "lora.down" / "lora.up" as diffusers' own training
//    scripts save them; no alpha is stored, so alpha / r is folded into lora_B;
//  * webui / kohya (ComfyUI, AUTOMATIC1111, stable-diffusion.cpp): "lora_unet_<module with _>
//    .lora_down.weight" / ".lora_up.weight" / ".alpha", with diffusers module names for SD1.5 and
//    the original (ldm) names for SDXL, as kohya's sd-scripts write them.
// Both are read back with either naming, plus the older diffusers spellings.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/safetensors.h"
#include "dro/models/unet.h"
#include "dro/nn/lora.h"

namespace dro::models {

struct LoraOptions {
  int64_t rank = 0;     // 0: no LoRA
  double alpha = 0;     // 0: the rank (scale 1, as diffusers' training scripts)
  double dropout = 0;
  std::vector<std::string> targets;  // empty: default_lora_targets()
  double scale() const { return (alpha > 0 ? alpha : static_cast<double>(rank)) / static_cast<double>(rank); }
};

// to_q, to_k, to_v, to_out.0: the attention projections.
const std::vector<std::string>& default_lora_targets();

// Whether `pattern` names module `name`: the pattern, a glob where '*' and '?' may cross dots,
// matches the whole name or a dotted tail of it ("to_q", "ff.net.*", "down_blocks.1.*.to_k").
bool lora_pattern_matches(const std::string& pattern, const std::string& name);

// A layer of the UNet that can take an adapter.
struct LoraTarget {
  std::string name;  // module name, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
  nn::LinearImpl* linear = nullptr;
  nn::Conv2dImpl* conv = nullptr;
  nn::LoraSlots* slots() const { return linear ? &linear->lora : &conv->lora; }
  const torch::Tensor& weight() const { return linear ? linear->weight : conv->weight; }
  int64_t in_features() const;   // in (linear) or in * kh * kw (conv)
  int64_t out_features() const;
};
// Every linear and conv layer of `unet`, in module order.
std::vector<LoraTarget> lora_capable_layers(UNet2DConditionModelImpl& unet);

// One layer's adapter as files hold it; the update is (alpha / rank) * up @ down.
struct LoraLayer {
  torch::Tensor down, up;
  double alpha = 0;  // 0: the rank
  int64_t rank() const { return down.size(0); }
  double scale() const { return (alpha > 0 ? alpha : static_cast<double>(rank())) / static_cast<double>(rank()); }
};
using LoraLayers = std::map<std::string, LoraLayer>;  // by UNet module name

// Trained adapters attached to a UNet for the life of the object (detached by the destructor).
class UnetLora {
 public:
  // Adapters on the layers `o.targets` match, in `dtype` on `device`: down drawn as peft does
  // (kaiming-uniform, a = sqrt(5)) from `seed`, up zero. UsageError for a pattern that matches
  // no layer, a rank above a layer's size, or a layer that cannot take one.
  UnetLora(UNet2DConditionModelImpl& unet, const LoraOptions& o, torch::Dtype dtype, const torch::Device& device,
           uint64_t seed);
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

// The original Stable Diffusion (ldm) name of a diffusers UNet module, e.g.
// "down_blocks.1.attentions.0.proj_in" -> "input_blocks.4.1.proj_in"; "" for names it has none.
std::string ldm_module_name(const std::string& name, const UNetConfig& config);

// Writes `layers` in the diffusers / peft layout (alpha folded into up), tensors in `dtype`.
void save_lora_diffusers(const std::filesystem::path& path, const LoraLayers& layers, torch::Dtype dtype);
// Writes `layers` in the kohya layout, module names as sd-scripts writes them for `config`.
void save_lora_kohya(const std::filesystem::path& path, const LoraLayers& layers, const UNetConfig& config,
                     torch::Dtype dtype);

// Reads a LoRA safetensors file in either layout (and the older diffusers spellings) for `unet`:
// IoError naming the key for a key that names no layer of this UNet, a shape that does not fit
// the layer, or a down without its up. Text-encoder adapters are skipped with a warning.
LoraLayers load_lora_file(const std::filesystem::path& path, UNet2DConditionModelImpl& unet);

// W += multiplier * scale * up @ down for every layer (computed in float32).
void merge_lora(UNet2DConditionModelImpl& unet, const LoraLayers& layers, double multiplier);

// "FILE" or "FILE:SCALE" (scale 1 by default) of `dro sample --lora`.
struct LoraSpec {
  std::filesystem::path file;
  double scale = 1.0;
};
LoraSpec parse_lora_spec(const std::string& text);

}  // namespace dro::models
