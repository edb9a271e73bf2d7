// The implicit feedback `dro serve` collects, on disk, and its export to the trainer's layouts.
//
//   FEEDBACK/feedback.jsonl   one event a line, appended and fsync'd before the request is answered:
//                             {"v": 1, "time", "event": "keep" | "skip" | "download", "session",
//                              "prompt", "shown": [{"id", "model", "seed"}], "kept" (keep),
//                              "image" (download), "settings": {steps, guidance, sampler}}
//   FEEDBACK/images/<id>.png  every image an event names, written (atomically, fsync'd) before it
//
// The log is never rewritten: a crash can at worst leave a torn last line, which the next writer
// ends with a newline and readers skip (and count). What this is not: a database; the export reads
// the whole log.
//
// Export (`dro serve export`), written to OUT.partial-<pid> and renamed to OUT when complete:
//   OUT/images/<id>.png       every image a pair or label names
//   OUT/pairs.jsonl           {"session", "caption", "chosen", "rejected"}: a keep event's kept
//                             image against each image shown with it (Diffusion-DPO)
//   OUT/labels.jsonl          {"session", "caption", "image", "label"}: 1 for kept or downloaded
//                             images, 0 for images shown and never kept nor downloaded (Diffusion-KTO)
//   OUT/expert/NNN/NNN.png    the kept (or downloaded) images with caption.txt (SFT, Diffusion-DRO)
//   OUT/summary.json          counts
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::serve {

// A fresh random id of 32 lower-case hex digits (128 bits from the system's entropy source).
std::string new_id();
// True for exactly the ids new_id() makes: nothing else is ever joined to a path.
bool is_id(const std::string& s);

// An append-only JSON-lines file: each record is one write() of one line, then fsync. Thread-safe.
class AppendLog {
 public:
  // Opens (creates) `file` and its folder; ends a torn last line left by a crash. IoError on failure.
  explicit AppendLog(const std::filesystem::path& file);
  ~AppendLog();
  AppendLog(const AppendLog&) = delete;
  AppendLog& operator=(const AppendLog&) = delete;

  // Returns once the line is on disk; IoError (nothing acknowledged) otherwise.
  void append(const io::OrderedJson& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::mutex mutex_;
};

struct LogContents {
  std::vector<io::OrderedJson> records;
  int64_t bad_lines = 0;  // torn or malformed lines, skipped
};
// Reads every well-formed line of a log; a missing file is an empty log.
LogContents read_log(const std::filesystem::path& file);

struct ShownImage {
  std::string id, model;
  uint64_t seed = 0;
};

struct FeedbackEvent {
  std::string event;  // keep | skip | download
  std::string session, prompt;
  std::vector<ShownImage> shown;
  std::string kept;   // keep: the id kept (one of shown)
  std::string image;  // download: the id downloaded (one of shown)
  io::OrderedJson settings = io::OrderedJson::object();
  int64_t time = 0;   // seconds since the epoch

  io::OrderedJson to_json() const;
  // UsageError naming `where` and the field when a record is not a valid event.
  static FeedbackEvent from_json(const io::OrderedJson& j, const std::string& where);
};

// FEEDBACK/: the event log and the images it names.
class FeedbackStore {
 public:
  explicit FeedbackStore(const std::filesystem::path& dir);
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path log_path() const { return dir_ / "feedback.jsonl"; }
  // Writes images/<id>.png (fsync'd) unless it is there already.
  void save_image(const std::string& id, const std::string& png);
  bool has_image(const std::string& id) const;
  // Appends the event once its images are on disk; returns after the fsync.
  void record(const FeedbackEvent& event);
  // Appends any other record (the study's votes go to their own log: StudyLog).
  AppendLog& log() { return log_; }

 private:
  std::filesystem::path dir_;
  AppendLog log_;
};

struct ExportSummary {
  int64_t events = 0, keeps = 0, skips = 0, downloads = 0;
  int64_t pairs = 0, desirable = 0, undesirable = 0, expert = 0;
  int64_t bad_lines = 0, bad_events = 0, missing_images = 0;
  io::OrderedJson to_json() const;
};

// Writes the three training layouts from FEEDBACK (see the top of this file). UsageError when
// `out` exists and is not empty (unless overwrite) or when there is no feedback log.
ExportSummary export_feedback(const std::filesystem::path& feedback_dir, const std::filesystem::path& out,
                              bool overwrite = false);

}  // namespace dro::serve
