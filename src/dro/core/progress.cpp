#include "dro/core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>

namespace dro {

Progress::Progress(std::string label, int64_t total, bool quiet, int64_t initial)
    : label_(std::move(label)), total_(total), done_(initial), initial_(initial), quiet_(quiet),
      tty_(::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()), last_draw_(start_) {
  draw(true);
}

Progress::~Progress() { finish(); }

double Progress::rate() const {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return s > 0 ? (done_ - initial_) / s : 0.0;
}

void Progress::tick(int64_t n, const std::string& extra) {
  done_ += n;
  if (!extra.empty()) extra_ = extra;
  draw(done_ >= total_);
}

void Progress::draw(bool force) {
  if (quiet_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (!force && since < (tty_ ? 0.2 : 5.0)) return;
  last_draw_ = now;
  drawn_done_ = done_;
  std::ostringstream os;
  os << label_ << " " << done_ << "/" << total_;
  if (total_ > 0) {
    const int width = 24;
    const int filled = static_cast<int>(width * std::min<double>(1.0, double(done_) / total_));
    os << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "]";
  }
  const double r = rate();
  char buf[64];
  if (r > 0) {
    std::snprintf(buf, sizeof(buf), r >= 1 ? " %.2f it/s" : " %.2f s/it", r >= 1 ? r : 1.0 / r);
    os << buf;
    const int64_t eta = static_cast<int64_t>((total_ - done_) / r);
    if (done_ < total_) {
      std::snprintf(buf, sizeof(buf), " ETA %lld:%02lld", static_cast<long long>(eta / 60),
                    static_cast<long long>(eta % 60));
      os << buf;
    }
  }
  if (!extra_.empty()) os << " | " << extra_;
  if (tty_) std::cerr << "\r\033[K" << os.str() << std::flush;
  else std::cerr << os.str() << "\n";
}

void Progress::finish() {
  if (finished_) return;
  if (drawn_done_ != done_) draw(true);
  finished_ = true;
  if (!quiet_ && tty_) std::cerr << "\n";
}

}  // namespace dro
