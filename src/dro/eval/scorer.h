// The preference scorers behind `dro score` (and later `dro eval` / `dro select`): each turns
// decoded images into model inputs exactly as its reference preprocessing does, and scores
// images[i] against prompts[i] as misc/scores.py of the official code does. A scorer may produce
// several keys from one forward pass (Aesthetic v1 and v2 share their CLIP embedding).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/json.h"

namespace dro::vision {
struct PilImage;
}

namespace dro::eval {

// What a score is and where it came from; recorded beside every output.
struct ScoreKeyInfo {
  std::string key;      // the JSONL key: pickscore, hpsv2, hpsv2.1, clip, aestheticv1, aestheticv2,
                        // imagereward
  std::string name;     // human name, e.g. "PickScore"
  std::string version;  // e.g. "PickScore_v1 (CLIP ViT-H/14)"
  std::string units;    // what the number means
  std::vector<std::filesystem::path> weight_files;
  std::string weights_sha256;  // of the weight file; several files: sha256 of "name:sha\n" lines
  io::OrderedJson to_json() const;
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  // The keys this scorer fills, in output order.
  virtual const std::vector<ScoreKeyInfo>& keys() const = 0;
  // One image as decoded from its file -> model input [C, S, S] float32 on the CPU. Thread-safe.
  // Where the reference would fail or changes the input silently, a sentence goes to `notes`.
  virtual torch::Tensor preprocess(const vision::PilImage& image,
                                   std::vector<std::string>& notes) const = 0;
  // pixels: [B, C, S, S] stacked preprocess() outputs; prompts: B captions as read from
  // caption.txt. Returns [keys().size()][B] scores.
  virtual std::vector<std::vector<double>> score(const torch::Tensor& pixels,
                                                 const std::vector<std::string>& prompts) = 0;
};

// Where the model files are (all local paths; nothing is downloaded). Empty = not given.
struct ScorerModels {
  std::filesystem::path pickscore_model;       // CLIPModel folder (PickScore_v1)
  std::filesystem::path pickscore_processor;   // preprocessor + tokenizer files (default: model)
  std::filesystem::path hpsv2_checkpoint;      // HPS_v2_compressed.pt / HPS_v2.1_compressed.pt
  std::filesystem::path hpsv2_config;          // open_clip model config (default: ViT-H-14)
  std::filesystem::path open_clip_tokenizer;   // vocab.json + merges.txt
  std::filesystem::path clip_model;            // open_clip folder (laion ViT-H-14)
  std::filesystem::path aesthetic_clip_model;  // CLIPModel folder (openai ViT-L/14)
  std::filesystem::path aestheticv1_head;
  std::filesystem::path aestheticv2_head;
  std::filesystem::path imagereward_checkpoint;  // ImageReward.pt (THUDM/ImageReward)
  std::filesystem::path imagereward_med_config;  // med_config.json (default: beside the checkpoint)
  std::filesystem::path imagereward_vit_config;  // ViT sizes (default: official ViT-L/16, 224 px)
  std::filesystem::path bert_tokenizer;          // vocab.txt + tokenizer_config.json

  // Keys as the flags without dashes, in snake_case or kebab-case: {"pickscore_model": "..."}.
  // Relative paths are taken from `base` (the file's folder). UsageError for unknown keys.
  static ScorerModels from_json(const io::OrderedJson& j, const std::filesystem::path& base,
                                const std::string& where);
  // Fills every empty field of *this from `other`.
  void fill_from(const ScorerModels& other);
};

struct ScorerOptions {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;  // bf16 / fp16 only on CUDA
  std::string hps_version = "v2.0";      // or v2.1
};

// Scorer names as the flags spell them.
enum class ScorerKind { kPickScore, kHpsv2, kClip, kAesthetic, kImageReward };

// Loads one scorer; `aesthetic_v1` / `aesthetic_v2` choose the aesthetic heads. UsageError naming
// the flag when a needed path is missing, IoError for a bad file.
std::unique_ptr<Scorer> make_scorer(ScorerKind kind, const ScorerModels& models,
                                    const ScorerOptions& options, bool aesthetic_v1 = true,
                                    bool aesthetic_v2 = true);

// The JSONL keys a scorer kind would produce, without loading it.
std::vector<std::string> planned_keys(ScorerKind kind, const ScorerOptions& options,
                                      bool aesthetic_v1, bool aesthetic_v2);

}  // namespace dro::eval
