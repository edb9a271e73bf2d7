// The training data of the preference baselines (Diffusion-DPO, Diffusion-KTO), read from the
// manifests users have; image paths are relative to the manifest's folder.
//   pairs:  JSONL/CSV rows {caption, chosen, rejected} (dro world's feedback/pairs.jsonl) or
//           Pick-a-Pic rows {caption, image_0, image_1, label_0} (label_0 1: image_0 preferred,
//           0: image_1, 0.5: a tie, dropped and counted);
//   labels: JSONL/CSV rows {caption, image, label} (label 1/0, true/false or desirable /
//           undesirable; dro world's feedback/labels.jsonl) or the Diffusion-KTO CSV
//           {file_path, caption, label} with exclusive_win / exclusive_lose (other labels are
//           dropped and counted).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace dro::data {

struct PreferencePair {
  std::string caption;
  std::filesystem::path chosen, rejected;
};

struct LabelledImage {
  std::string caption;
  std::filesystem::path image;
  bool desirable = true;
};

struct PairData {
  std::vector<PreferencePair> pairs;
  int64_t ties_dropped = 0;
};

struct LabelData {
  std::vector<LabelledImage> images;
  int64_t dropped = 0;  // rows whose label is neither desirable nor undesirable
  int64_t desirable() const;
};

// IoError naming the file and the entry for a missing field, an unknown label or a missing image.
PairData read_pairs(const std::filesystem::path& file);
LabelData read_labels(const std::filesystem::path& file);

}  // namespace dro::data
