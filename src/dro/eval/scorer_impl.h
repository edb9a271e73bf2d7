// Internal to eval/: the scorer classes' constructors and the helpers they share.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "dro/eval/scorer.h"
#include "dro/models/clip_model.h"

namespace dro::eval::detail {

std::unique_ptr<Scorer> make_pickscore(const ScorerModels& models, const ScorerOptions& options);
// HPSv2 (scale 100, the HPSv2 checkpoint) or CLIP score (scale 1, the laion open_clip weights).
std::unique_ptr<Scorer> make_open_clip_scorer(bool hpsv2, const ScorerModels& models,
                                              const ScorerOptions& options);
std::unique_ptr<Scorer> make_aesthetic(const ScorerModels& models, const ScorerOptions& options,
                                       bool v1, bool v2);
std::unique_ptr<Scorer> make_imagereward(const ScorerModels& models, const ScorerOptions& options);

// The sha256 of a weights file, memoised per (path, size, mtime) in this process and in
// $XDG_CACHE_HOME/dro/sha256.json (~/.cache/...) so multi-GB files are hashed once.
std::string weights_sha256(const std::filesystem::path& file);

// `path` must exist (as a file, or a folder when `folder`); UsageError naming `flag` otherwise.
void require_path(const std::filesystem::path& path, const std::string& flag, bool folder);

// Loading options for a scorer model: device and dtype of `options`.
nn::LoadOptions load_options(const ScorerOptions& options);

// x / ||x|| along the last dimension, in float32.
torch::Tensor l2_normalize(const torch::Tensor& x);

}  // namespace dro::eval::detail

namespace dro::eval::detail {

// A state dict from one file: .safetensors, or a torch.save checkpoint read safely.
std::map<std::string, torch::Tensor> read_state_dict(const std::filesystem::path& file);

}  // namespace dro::eval::detail
