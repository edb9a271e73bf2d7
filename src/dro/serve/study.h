// The blind A/B study of `dro serve`, as the paper's user study: two models' images of the same
// prompt and seed in a random left/right order; the user picks one. Trials are made and kept in
// memory; votes are appended to FEEDBACK/study.jsonl (fsync'd, as the feedback log):
//   {"v": 1, "time", "trial", "session", "prompt", "seed", "left", "right", "winner"}
// where left/right/winner are model names (never sent to the page).
// Results per pair of models (a before b by name): the share of votes won by a with a 95%
// bootstrap interval over votes and the two-sided sign test (eval::win_rate, each vote one unit),
// and per prompt the votes and a's wins.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dro/io/json.h"
#include "dro/serve/feedback_log.h"

namespace dro::serve {

struct Trial {
  std::string id, prompt, left, right;  // left/right: model names
  std::string left_image, right_image;  // image ids
  uint64_t seed = 0;
};

struct Vote {
  std::string trial, session, prompt, left, right, winner;
  uint64_t seed = 0;
  int64_t time = 0;
  io::OrderedJson to_json() const;
  static Vote from_json(const io::OrderedJson& j, const std::string& where);
};

// Left/right order: true puts `a` on the left. Drawn from the system's entropy source.
bool coin_flip();

class StudyLog {
 public:
  explicit StudyLog(const std::filesystem::path& file);
  // Keeps a trial until it is voted on (the oldest are dropped beyond `max_open`).
  void open_trial(const Trial& t, size_t max_open = 10000);
  std::optional<Trial> find_trial(const std::string& id) const;
  // Records `choice` (left | right) on an open trial and closes it; UsageError for an unknown or
  // already-voted trial or another choice. Returns the vote after the fsync.
  Vote vote(const std::string& trial, const std::string& choice, const std::string& session);
  std::vector<Vote> votes() const;
  const std::filesystem::path& path() const { return log_.path(); }

 private:
  AppendLog log_;
  mutable std::mutex mutex_;
  std::map<std::string, Trial> open_;
  std::vector<std::string> open_order_;
  std::vector<Vote> votes_;
};

// The results view: {"votes", "pairs": [{"a", "b", "votes", "a_wins", "b_wins", "win_rate",
// "ci_low", "ci_high", "p_value", "per_prompt": [{"prompt", "votes", "a_wins"}]}]}.
io::OrderedJson study_results(const std::vector<Vote>& votes, int64_t bootstrap = 1000, uint64_t seed = 0);

}  // namespace dro::serve
