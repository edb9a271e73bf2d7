// LoRA files: the two layouts the ecosystem reads, written and read back for a given UNet.
//  * diffusers / peft (`pipe.load_lora_weights()`): "unet.<module>.lora_A.weight" /
//  "lora_B.weight",
//    with the attention projections spelled "lora.down" / "lora.up" as diffusers' own training
//    scripts save them; no alpha is stored, so alpha / r is folded into lora_B;
//  * webui / kohya (ComfyUI, AUTOMATIC1111, stable-diffusion.cpp): "lora_unet_<module with _>
//    .lora_down.weight" / ".lora_up.weight" / ".alpha", with diffusers module names for SD1.5 and
//    the original (ldm) names for SDXL, as kohya's sd-scripts write them.
// Both are read back with either naming, plus the older diffusers spellings.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/models/lora.h"
#include "dro/models/unet.h"

namespace dro::models {

// The original Stable Diffusion (ldm) name of a diffusers UNet module, e.g.
// "down_blocks.1.attentions.0.proj_in" -> "input_blocks.4.1.proj_in"; "" for names it has none.
std::string ldm_module_name(const std::string& name, const UNetConfig& config);

// Writes `layers` in the diffusers / peft layout (alpha folded into up), tensors in `dtype`.
void save_lora_diffusers(const std::filesystem::path& path, const LoraLayers& layers,
                         torch::Dtype dtype);
// Writes `layers` in the kohya layout, module names as sd-scripts writes them for `config`.
void save_lora_kohya(const std::filesystem::path& path, const LoraLayers& layers,
                     const UNetConfig& config, torch::Dtype dtype);

// Reads a LoRA safetensors file in either layout (and the older diffusers spellings) for `unet`:
// IoError naming the key for a key that names no layer of this UNet, a shape that does not fit
// the layer, or a down without its up. Text-encoder adapters are skipped with a warning.
LoraLayers load_lora_file(const std::filesystem::path& path, UNet2DConditionModelImpl& unet);

// "FILE" or "FILE:SCALE" (scale 1 by default) of `dro sample --lora`.
struct LoraSpec {
  std::filesystem::path file;
  double scale = 1.0;
};
LoraSpec parse_lora_spec(const std::string& text);

// Reads and merges each file into `unet` in order, one progress line each on stderr.
void merge_lora_files(UNet2DConditionModelImpl& unet, const std::vector<LoraSpec>& files);

}  // namespace dro::models
