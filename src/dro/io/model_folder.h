// A diffusers pipeline folder: model_index.json plus one sub-folder per component
// (scheduler, tokenizer[_2], text_encoder[_2], unet, vae).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::io {

struct ComponentEntry {
  std::string name;        // folder name: "unet", "text_encoder_2", ...
  std::string library;     // "diffusers" / "transformers"
  std::string class_name;  // "UNet2DConditionModel", ...
  std::filesystem::path dir;
};

struct ModelFolder {
  std::filesystem::path root;
  std::string pipeline_class;  // StableDiffusionPipeline / StableDiffusionXLPipeline
  std::vector<ComponentEntry> components;  // in model_index.json order, null entries skipped
  std::vector<std::string> absent;         // listed unused components whose folder is missing
  OrderedJson index;

  // Parses `root/model_index.json` and checks that every listed component folder exists, except
  // those dro never reads (is_unused_component), which may be absent.
  static ModelFolder open(const std::filesystem::path& root);
  bool has(const std::string& name) const;
  const ComponentEntry& component(const std::string& name) const;  // UsageError if absent
  bool is_sdxl() const { return has("text_encoder_2"); }
};

// Components that model_index.json may list but that sampling and training never read
// (safety_checker, feature_extractor, image_encoder): their folders may be absent.
bool is_unused_component(const std::string& name);

// What a path holds, for `dro inspect`.
enum class PathKind { kSafetensorsFile, kComponentFolder, kModelFolder };
PathKind classify_path(const std::filesystem::path& path);

}  // namespace dro::io
