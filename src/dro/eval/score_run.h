// `dro score`: scores the images of generated test sets in the official layout
// (`DIR/<prompt>/<image>.png` + `caption.txt`, as `dro sample` writes and score.py reads) with the
// chosen scorers, one scorer at a time (so only one model is in memory), in batches, and writes
// one JSON object per image to a JSONL file:
//   {"dir": DIR, "image": "<prompt>/<image>.png", "prompt": caption, "pickscore": 21.3, ...,
//    "weights": {"pickscore": sha256, ...}}
// Resumable: rows already holding a score of the same scorer and weights (and prompt) are kept and
// not recomputed. Progress goes to `OUT.part-<rank>.jsonl` as each batch completes (appended and
// flushed), so a crash loses at most one batch; at the end rank 0 merges everything into OUT
// atomically and writes the summary (mean and std per scorer per directory) beside it.
// Data-parallel under a launcher: each rank scores a shard, rank 0 merges.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "dro/eval/scorer.h"
#include "dro/io/json.h"

namespace dro::dist {
class Group;
}

namespace dro::eval {

// One image of a test set.
struct ScoreItem {
  std::string dir;    // the --dir as given
  std::string image;  // path relative to dir, '/'-separated
  std::filesystem::path path;
  std::string prompt;  // caption.txt verbatim
  // A member of an archive: the image is bytes [offset, offset + size) of `path` (offset < 0: the
  // whole file).
  int64_t offset = -1, size = 0;
};

struct ListOptions {
  bool first_png_only = false;   // score.py: only the first *.png of each prompt folder
  bool skip_bad_images = false;  // an empty prompt folder is a warning instead of an error
};

// The images of `dir` in a fixed order: prompt folders (those holding caption.txt) sorted by name,
// then their *.png / *.jpg / *.jpeg files sorted by name. UsageError/IoError naming the folder for
// a missing folder, no caption.txt anywhere, or (unless skipping) a prompt folder without images.
std::vector<ScoreItem> list_score_items(const std::string& dir, const ListOptions& options,
                                        std::vector<std::string>* warnings);

// A scorer to run: its kind and, for the aesthetic kind, which heads.
struct ScorerRequest {
  ScorerKind kind;
  bool aesthetic_v1 = false;
  bool aesthetic_v2 = false;
};

struct ScoreRunOptions {
  std::vector<std::string> dirs;
  std::vector<ScoreItem> items;  // listed by the caller (manifests, archives), scored after the dirs
  std::filesystem::path out;  // the JSONL
  int batch_size = 32;
  int workers = 2;  // threads decoding and preprocessing images
  ListOptions list;
  bool replace_small_images = true;  // score.py: an image under 10 px becomes black 512x512 RGB
  bool quiet = false;
};

struct KeyStats {
  int64_t count = 0;
  double mean = 0.0;
  double std = 0.0;  // population standard deviation (numpy's default, ddof = 0)
};

struct ScoreRunResult {
  // stats[dir][key]
  std::map<std::string, std::map<std::string, KeyStats>> stats;
  std::vector<std::string> key_order;
  std::vector<ScoreKeyInfo> scorers;
  int64_t images = 0;
  int64_t scored = 0;      // image x scorer-key values computed by this run (all ranks)
  int64_t reused = 0;      // values kept from an earlier run
  int64_t bad_images = 0;  // skipped with --skip-bad-images
  std::filesystem::path summary_json, summary_md;
};

// Runs everything described above. `group` may be a single-process group.
ScoreRunResult run_scores(const std::vector<ScorerRequest>& scorers, const ScorerModels& models,
                          const ScorerOptions& options, const ScoreRunOptions& run,
                          dist::Group& group);

// The summary as a Markdown table (rows = directories, columns = scorers: mean ± std).
std::string format_summary(const ScoreRunResult& result);

}  // namespace dro::eval
