// A one-line progress display on stderr for long work: "label  37/200 [#####.....] 2.31 it/s ETA 1:10
// | extra". Redraws in place on a terminal; prints at most one line every few seconds otherwise
// (logs stay readable). Quiet mode prints nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dro {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet = false, int64_t initial = 0);
  ~Progress();
  // Advances by `n` and sets the trailing text (e.g. "loss 1.2e-3 lr 1e-4").
  void tick(int64_t n = 1, const std::string& extra = "");
  void set_extra(const std::string& extra) { extra_ = extra; }
  void finish();
  double rate() const;  // items per second since construction
  int64_t done() const { return done_; }

 private:
  void draw(bool force);
  std::string label_;
  int64_t total_, done_, initial_;
  int64_t drawn_done_ = -1;  // done_ at the last line drawn
  bool quiet_, tty_, finished_ = false;
  std::string extra_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace dro
