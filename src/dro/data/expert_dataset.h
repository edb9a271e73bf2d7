// The expert demonstrations of Diffusion-DRO in the official folder layout: ROOT/<id>/ holding
// caption.txt and one image (.png, or .jpg/.jpeg), one level deep, in sorted folder order.
// The training transform follows the official TrainingDataset: RGB, resize the shorter side to
// the resolution (antialiased bilinear), random horizontal flip, center (or random) crop,
// normalise to [-1, 1]; SDXL's add_time_ids = (orig_h, orig_w, crop_top, crop_left, res, res).
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/data/preference_data.h"

namespace dro::data {

struct ExpertItem {
  std::string prompt;
  torch::Tensor image;         // [3, res, res] float32 in [-1, 1]
  torch::Tensor add_time_ids;  // [6] float32
  torch::Tensor rejected;      // a pair's second (not preferred) image, as `image`, or undefined
  float label = 1;             // +1 desirable, -1 undesirable (labelled images); +1 otherwise
  int64_t index = -1;          // position in the dataset
};

struct TransformOptions {
  int64_t resolution = 512;
  bool random_flip = true;
  bool random_crop = false;
};

class ExpertDataset {
 public:
  // Scans `root`: every sub-folder holding caption.txt is an example, and its image's header is
  // read now (no pixels decoded) so a corrupt or truncated file is named before training starts.
  // Hidden sub-folders and those without caption.txt (__MACOSX, .ipynb_checkpoints) are ignored,
  // as the official glob ignores them, with one warning naming them. IoError naming the folder
  // when it is missing or holds no example, or naming the sub-folder whose image is missing or
  // unreadable (unless `skip_bad`, which decodes every image, counts the bad ones and warns).
  // `report` false: no warnings (the other ranks of a data-parallel run, which scan the same files).
  static ExpertDataset scan(const std::filesystem::path& root, bool skip_bad = false, bool report = true);
  // Preference pairs (chosen first) or labelled images from their manifest `source`; every image's
  // header is checked as scan() does (IoError naming the entry, or skipped and counted).
  static ExpertDataset from_pairs(const PairData& pairs, const std::string& source, bool skip_bad = false,
                                  bool report = true);
  static ExpertDataset from_labels(const LabelData& labels, const std::string& source, bool skip_bad = false,
                                   bool report = true);

  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  const std::string& prompt(int64_t i) const { return entries_[i].prompt; }
  const std::filesystem::path& image_path(int64_t i) const { return entries_[i].image; }
  int64_t skipped() const { return skipped_; }
  bool paired() const { return paired_; }
  // +1 desirable, -1 undesirable; +1 for every example of an expert folder or of pairs.
  float label(int64_t i) const { return entries_[i].label; }
  int64_t desirable() const;  // examples labelled +1
  // Names of the sub-folders ignored as hidden or without caption.txt, in sorted order.
  const std::vector<std::string>& ignored_folders() const { return ignored_; }

  // Loads and transforms example i. `flip_draw` and `crop_draw` are uniform numbers in [0, 1)
  // deciding the random flip and crop, so the caller controls all randomness.
  ExpertItem load(int64_t i, const TransformOptions& t, double flip_draw, double crop_x_draw,
                  double crop_y_draw) const;

 private:
  struct Entry {
    std::filesystem::path image;
    std::string prompt;
    std::filesystem::path rejected;  // pairs only
    float label = 1;
  };
  // Adds an entry after checking its images; false when skipped.
  bool add(Entry e, const std::string& where, bool skip_bad, bool report);
  // A bad example: IoError naming it, or with skip_bad counted (and warned about when `report`).
  void reject(const std::string& problem, const char* unit, bool skip_bad, bool report);
  std::vector<Entry> entries_;
  bool paired_ = false;
  std::vector<std::string> ignored_;
  int64_t skipped_ = 0;
};

// Endless, deterministic stream of shuffled examples: epoch e visits the dataset in a permutation
// drawn from a generator seeded by (seed, e); the flip/crop draws of the example at (e, position)
// come from a hash of (seed, e, position). The stream position alone is the state, so resuming
// needs only (epoch, position). Examples are decoded ahead on worker threads (ordered), so image
// decoding overlaps with training and never changes the results. With `desirable_ratio` in (0, 1)
// (labelled images) each slot of an epoch's order is a desirable image with that probability,
// drawn in turn (cycling) from the epoch's shuffled desirable and undesirable images.
class ExpertLoader {
 public:
  ExpertLoader(const ExpertDataset* dataset, TransformOptions transform, uint64_t seed,
               int64_t num_workers = 2, int64_t shard = 0, int64_t num_shards = 1,
               double desirable_ratio = 0);
  ~ExpertLoader();

  // Next `n` examples, stacked: images [n, 3, res, res], add_time_ids [n, 6], labels [n] float32;
  // rejected [n, 3, res, res] for pairs, else undefined.
  struct Batch {
    std::vector<std::string> prompts;
    torch::Tensor images, add_time_ids, rejected, labels;
    std::vector<int64_t> indices;
  };
  Batch next(int64_t n);

  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  // Continues from a saved (epoch, position); drops any prefetched work.
  void seek(int64_t epoch, int64_t position);
  int64_t epoch_length() const;

 private:
  std::vector<int64_t> order(int64_t epoch) const;
  void fill();
  const ExpertDataset* dataset_;
  TransformOptions transform_;
  uint64_t seed_;
  int64_t workers_, shard_, num_shards_;
  double desirable_ratio_;
  int64_t epoch_ = 0, position_ = 0;         // next example to hand out
  int64_t ahead_epoch_ = 0, ahead_pos_ = 0;  // next example to schedule
  std::vector<int64_t> ahead_order_;
  int64_t ahead_order_epoch_ = -1;
  std::deque<std::future<ExpertItem>> queue_;
};

}  // namespace dro::data
