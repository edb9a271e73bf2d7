#include "dro/data/expert_dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"

// Declarations only: io/image.cpp compiles the stb implementation (from-memory API only).
#include <stb_image.h>

namespace dro::data {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A uniform double in [0, 1) from a 64-bit hash.
double unit_from(uint64_t h) {
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

uint32_t be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Reads an image file's header only (PNG's IHDR, JPEG's markers up to the frame header, BMP's
// header) and, for a PNG, walks its chunk list to the IEND chunk, so a file that is empty, not an
// image or cut short is found at scan time without decoding any pixels. Returns "" when the file
// looks sound, else what is wrong with it.
std::string check_image_header(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open the file";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (size == 0) return "empty file";
  // The JPEG frame header follows any APP segments (EXIF, ICC), normally well inside 64 KiB; a
  // JPEG with longer metadata is read whole.
  auto read = [&](uint64_t n) {
    std::string b(n, '\0');
    in.clear();
    in.seekg(0);
    in.read(b.data(), static_cast<std::streamsize>(n));
    b.resize(static_cast<size_t>(in.gcount()));
    return b;
  };
  std::string head = read(std::min<uint64_t>(size, 64 * 1024));
  auto info = [](const std::string& b) {
    int w = 0, h = 0, n = 0;
    return stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(b.data()),
                                 static_cast<int>(b.size()), &w, &h, &n) != 0 &&
           w > 0 && h > 0;
  };
  bool ok = info(head);
  const bool jpeg = head.size() >= 2 && head[0] == '\xFF' && head[1] == '\xD8';
  if (!ok && jpeg && size > head.size() && size < (uint64_t(1) << 31)) ok = info(head = read(size));
  if (!ok)
    return cat("not a readable PNG/JPEG image (stb_image: ", stbi_failure_reason(),
               "; corrupt file?)");
  static const char kPng[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  if (head.compare(0, 8, std::string(kPng, 8)) != 0) return "";
  uint64_t at = 8;
  for (;;) {
    unsigned char chunk[8];
    in.clear();
    in.seekg(static_cast<std::streamoff>(at));
    if (at + 12 > size || !in.read(reinterpret_cast<char*>(chunk), 8))
      return cat("PNG ends at byte ", size, " before its IEND chunk (truncated download or copy?)");
    const uint64_t length = be32(chunk);
    const std::string type(reinterpret_cast<const char*>(chunk + 4), 4);
    if (at + 12 + length > size)
      return cat("PNG chunk '", type, "' at byte ", at, " needs ", 12 + length,
                 " bytes but the file ends at byte ", size, " (truncated download or copy?)");
    if (type == "IEND") return "";
    at += 12 + length;
  }
}

// How many names a warning lists before "...".
constexpr size_t kListed = 5;

std::string list_names(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < kListed; ++i) s += cat(i ? ", " : "", names[i]);
  if (names.size() > kListed) s += cat(", ... (", names.size() - kListed, " more)");
  return s;
}

}  // namespace

ExpertDataset ExpertDataset::scan(const fs::path& root, bool skip_bad, bool report) {
  if (!fs::is_directory(root))
    throw IoError(cat("[data] --train-dataset ", root.string(), " is not a folder"));
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  ExpertDataset d;
  for (const auto& dir : dirs) {
    const fs::path cap = dir / "caption.txt";
    const std::string name = dir.filename().string();
    // train.py globs ROOT/*/caption.txt: hidden folders and folders without a caption (__MACOSX,
    // .ipynb_checkpoints, a stray output folder) are not examples.
    if (name.empty() || name[0] == '.' || !fs::is_regular_file(cap)) {
      d.ignored_.push_back(name);
      continue;
    }
    fs::path image;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const char* ext : {".png", ".jpg", ".jpeg"}) {
      for (const auto& f : files)
        if (lower(f.extension().string()) == ext) {
          image = f;
          break;
        }
      if (!image.empty()) break;
    }
    if (image.empty()) {
      d.reject(cat(dir.string(), ": no .png/.jpg image"), "folders", skip_bad, report);
      continue;
    }
    std::string prompt = io::read_file(cap);
    while (!prompt.empty() && (prompt.back() == '\n' || prompt.back() == '\r')) prompt.pop_back();
    d.add(Entry{image, prompt, {}, 1}, "", skip_bad, report);
  }
  const std::string ignored =
      d.ignored_.empty() ? ""
                         : cat(d.ignored_.size(), " sub-folder", d.ignored_.size() > 1 ? "s" : "",
                               " hidden or without caption.txt: ", list_names(d.ignored_));
  if (d.entries_.empty())
    throw IoError(cat("[data] ", root.string(), ": no examples (expected sub-folders each holding ",
                      "caption.txt and one .png/.jpg image",
                      ignored.empty() ? "" : cat("; ignored ", ignored),
                      d.skipped_ ? cat("; skipped ", d.skipped_, " bad folder(s)") : "", ")"));
  if (report && !d.ignored_.empty())
    std::cerr << "[data] warning: " << root.string() << ": ignoring " << ignored
              << " (train.py's glob skips them too)\n";
  return d;
}

bool ExpertDataset::add(Entry e, const std::string& where, bool skip_bad, bool report) {
  std::string problem;
  for (const fs::path* image : {&e.image, &e.rejected}) {
    if (image->empty() || !problem.empty()) continue;
    if (const std::string bad = check_image_header(*image); !bad.empty()) {
      problem = cat(image->string(), ": ", bad);
    } else if (skip_bad) {
      // Decode once now so a corrupt file is skipped here rather than failing mid-training.
      try {
        io::read_image(*image, 3);
      } catch (const IoError& err) {
        problem = err.what();
      }
    }
  }
  if (!problem.empty()) {
    reject(where.empty() ? problem : cat(where, ": ", problem), where.empty() ? "folders" : "entries", skip_bad,
           report);
    return false;
  }
  entries_.push_back(std::move(e));
  return true;
}

void ExpertDataset::reject(const std::string& problem, const char* unit, bool skip_bad, bool report) {
  if (!skip_bad) throw IoError(cat("[data] ", problem, " (pass --skip-bad-images to skip such ", unit, ")"));
  ++skipped_;
  if (report) std::cerr << "[data] warning: skipping " << problem << "\n";
}

int64_t ExpertDataset::desirable() const {
  return std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.label > 0; });
}

ExpertDataset ExpertDataset::from_pairs(const PairData& pairs, const std::string& source, bool skip_bad,
                                        bool report) {
  ExpertDataset d;
  d.paired_ = true;
  for (size_t i = 0; i < pairs.pairs.size(); ++i) {
    const auto& p = pairs.pairs[i];
    d.add(Entry{p.chosen, p.caption, p.rejected, 1}, cat(source, " pair ", i + 1), skip_bad, report);
  }
  if (d.entries_.empty())
    throw IoError(cat("[data] ", source, ": no usable preference pairs (", d.skipped_, " skipped)"));
  return d;
}

ExpertDataset ExpertDataset::from_labels(const LabelData& labels, const std::string& source, bool skip_bad,
                                         bool report) {
  ExpertDataset d;
  for (size_t i = 0; i < labels.images.size(); ++i) {
    const auto& im = labels.images[i];
    d.add(Entry{im.image, im.caption, {}, im.desirable ? 1.f : -1.f}, cat(source, " image ", i + 1), skip_bad,
          report);
  }
  if (d.entries_.empty())
    throw IoError(cat("[data] ", source, ": no usable labelled images (", d.skipped_, " skipped)"));
  return d;
}

namespace {

// Reads and transforms one image; the crop offsets and the original size go to `time_ids`.
torch::Tensor transform(const fs::path& path, const TransformOptions& t, double flip_draw, double crop_x_draw,
                        double crop_y_draw, torch::Tensor* time_ids) {
  io::Image img = io::read_image(path, 3);
  if (img.width < 10 || img.height < 10)  // the official loader replaces such images by black
    img = io::Image(static_cast<int>(t.resolution), static_cast<int>(t.resolution), 3);
  const int64_t orig_h = img.height, orig_w = img.width;
  const int res = static_cast<int>(t.resolution);
  io::Image r = io::resize_shorter_side(img, res);
  if (t.random_flip && flip_draw < 0.5) r = io::flip_horizontal(r);
  int y0, x0;
  if (t.random_crop) {
    y0 = static_cast<int>(std::floor(crop_y_draw * (r.height - res + 1)));
    x0 = static_cast<int>(std::floor(crop_x_draw * (r.width - res + 1)));
  } else {
    y0 = std::max(0, static_cast<int>(std::lround((r.height - res) / 2.0)));
    x0 = std::max(0, static_cast<int>(std::lround((r.width - res) / 2.0)));
  }
  r = io::crop(r, x0, y0, res, res);
  if (time_ids)
    *time_ids = torch::tensor({float(orig_h), float(orig_w), float(y0), float(x0), float(res), float(res)});
  return io::to_tensor(r, io::PixelRange::kMinusOneOne);
}

}  // namespace

ExpertItem ExpertDataset::load(int64_t i, const TransformOptions& t, double flip_draw,
                               double crop_x_draw, double crop_y_draw) const {
  const auto& e = entries_.at(i);
  ExpertItem item;
  item.prompt = e.prompt;
  item.image = transform(e.image, t, flip_draw, crop_x_draw, crop_y_draw, &item.add_time_ids);
  // A pair's second image: the same flip and the same crop draws (its own size may differ).
  if (!e.rejected.empty()) item.rejected = transform(e.rejected, t, flip_draw, crop_x_draw, crop_y_draw, nullptr);
  item.label = e.label;
  item.index = i;
  return item;
}

ExpertLoader::ExpertLoader(const ExpertDataset* dataset, TransformOptions transform, uint64_t seed,
                           int64_t num_workers, int64_t shard, int64_t num_shards, double desirable_ratio)
    : dataset_(dataset),
      transform_(transform),
      seed_(seed),
      workers_(std::max<int64_t>(1, num_workers)),
      shard_(shard),
      num_shards_(num_shards),
      desirable_ratio_(desirable_ratio) {
  if (desirable_ratio_ > 0) {
    const int64_t desirable = dataset_->desirable();
    if (desirable == 0 || desirable == dataset_->size())
      throw UsageError(cat("[data] a desirable ratio of ", desirable_ratio_, " needs desirable and undesirable "
                           "images; the data has ", desirable, " desirable of ", dataset_->size()));
  }
  if (dataset_->size() < num_shards_)
    throw UsageError(cat("[data] ", dataset_->size(), " examples cannot be split over ",
                         num_shards_, " processes"));
}

ExpertLoader::~ExpertLoader() {
  for (auto& f : queue_)
    if (f.valid()) f.wait();
}

int64_t ExpertLoader::epoch_length() const {
  return dataset_->size() / num_shards_;
}

std::vector<int64_t> ExpertLoader::order(int64_t epoch) const {
  auto gen = make_generator(derive_seed(seed_, "shuffle", static_cast<uint64_t>(epoch)));
  auto perm = torch::randperm(dataset_->size(), gen, torch::kLong);
  std::vector<int64_t> all(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + perm.numel());
  if (desirable_ratio_ > 0) {  // each slot desirable with that probability, each class in its shuffled order
    std::vector<int64_t> pos, neg;
    for (int64_t i : all) (dataset_->label(i) > 0 ? pos : neg).push_back(i);
    const auto draws = torch::rand({static_cast<int64_t>(all.size())}, gen, torch::kFloat64);
    const double* u = draws.data_ptr<double>();
    size_t p = 0, n = 0;
    for (size_t i = 0; i < all.size(); ++i)
      all[i] = u[i] < desirable_ratio_ ? pos[p++ % pos.size()] : neg[n++ % neg.size()];
  }
  // Rank `shard` takes every num_shards-th example (equal-size shards, the tail dropped).
  std::vector<int64_t> mine;
  for (int64_t i = shard_; i < epoch_length() * num_shards_; i += num_shards_)
    mine.push_back(all[i]);
  return mine;
}

void ExpertLoader::fill() {
  while (static_cast<int64_t>(queue_.size()) < 2 * workers_) {
    if (ahead_order_epoch_ != ahead_epoch_) {
      ahead_order_ = order(ahead_epoch_);
      ahead_order_epoch_ = ahead_epoch_;
    }
    const int64_t idx = ahead_order_[ahead_pos_];
    const uint64_t h = derive_seed(
        seed_, "augment",
        static_cast<uint64_t>(ahead_epoch_) * 1000003ull + static_cast<uint64_t>(ahead_pos_));
    const double flip = unit_from(derive_seed(h, "flip"));
    const double cx = unit_from(derive_seed(h, "crop_x"));
    const double cy = unit_from(derive_seed(h, "crop_y"));
    const ExpertDataset* ds = dataset_;
    const TransformOptions t = transform_;
    queue_.push_back(std::async(std::launch::async, [ds, t, idx, flip, cx, cy] {
      torch::NoGradGuard no_grad;
      return ds->load(idx, t, flip, cx, cy);
    }));
    if (++ahead_pos_ >= epoch_length()) {
      ahead_pos_ = 0;
      ++ahead_epoch_;
    }
  }
}

ExpertLoader::Batch ExpertLoader::next(int64_t n) {
  Batch b;
  std::vector<torch::Tensor> images, ids, rejected;
  std::vector<float> labels;
  for (int64_t k = 0; k < n; ++k) {
    fill();
    ExpertItem item = queue_.front().get();  // rethrows a decoding error naming the file
    queue_.pop_front();
    b.prompts.push_back(item.prompt);
    b.indices.push_back(item.index);
    images.push_back(item.image);
    ids.push_back(item.add_time_ids);
    if (item.rejected.defined()) rejected.push_back(item.rejected);
    labels.push_back(item.label);
    if (++position_ >= epoch_length()) {
      position_ = 0;
      ++epoch_;
    }
  }
  fill();
  b.images = torch::stack(images);
  b.add_time_ids = torch::stack(ids);
  if (!rejected.empty()) b.rejected = torch::stack(rejected);
  b.labels = torch::tensor(labels, torch::kFloat32);
  return b;
}

void ExpertLoader::seek(int64_t epoch, int64_t position) {
  for (auto& f : queue_)
    if (f.valid()) f.wait();
  queue_.clear();
  epoch_ = ahead_epoch_ = epoch;
  position_ = ahead_pos_ = position;
}

}  // namespace dro::data
