#include "dro/serve/feedback_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"

namespace dro::serve {
namespace fs = std::filesystem;

std::string new_id() {
  static std::mutex m;
  static std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string id(32, '0');
  std::lock_guard<std::mutex> lock(m);
  for (int i = 0; i < 32; i += 8) {
    uint32_t r = rd();
    for (int k = 0; k < 8; ++k, r >>= 4) id[i + k] = hex[r & 15];
  }
  return id;
}

bool is_id(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

namespace {

void write_all(int fd, const std::string& bytes, const fs::path& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw IoError(cat("[feedback] ", path.string(), ": write failed: ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

AppendLog::AppendLog(const fs::path& file) : path_(file) {
  std::error_code ec;
  if (!file.parent_path().empty()) fs::create_directories(file.parent_path(), ec);
  const bool existed = fs::exists(file);
  fd_ = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(cat("[feedback] cannot open ", file.string(), " for appending: ", std::strerror(errno)));
  // A crash between write() and fsync can leave a line without its newline: end it, so the next
  // record starts on a line of its own (readers skip the torn one).
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && st.st_size > 0) {
    std::ifstream in(file, std::ios::binary);
    in.seekg(st.st_size - 1);
    char last = '\n';
    in.get(last);
    if (last != '\n') {
      write_all(fd_, "\n", path_);
      ::fsync(fd_);
    }
  }
  if (!existed && !file.parent_path().empty()) io::sync_directory(file.parent_path());
}

AppendLog::~AppendLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendLog::append(const io::OrderedJson& record) {
  const std::string line = record.dump() + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  write_all(fd_, line, path_);
  if (::fsync(fd_) != 0) throw IoError(cat("[feedback] ", path_.string(), ": fsync failed: ", std::strerror(errno)));
}

LogContents read_log(const fs::path& file) {
  LogContents c;
  std::ifstream in(file, std::ios::binary);
  if (!in) return c;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      auto j = io::OrderedJson::parse(line);
      if (j.is_object())
        c.records.push_back(std::move(j));
      else
        ++c.bad_lines;
    } catch (const nlohmann::json::exception&) {
      ++c.bad_lines;
    }
  }
  return c;
}

io::OrderedJson FeedbackEvent::to_json() const {
  io::OrderedJson j;
  j["v"] = 1;
  j["time"] = time ? time : now_seconds();
  j["event"] = event;
  j["session"] = session;
  j["prompt"] = prompt;
  j["shown"] = io::OrderedJson::array();
  for (const auto& s : shown) j["shown"].push_back({{"id", s.id}, {"model", s.model}, {"seed", s.seed}});
  if (event == "keep") j["kept"] = kept;
  if (event == "download") j["image"] = image;
  j["settings"] = settings;
  return j;
}

FeedbackEvent FeedbackEvent::from_json(const io::OrderedJson& j, const std::string& where) {
  FeedbackEvent e;
  e.event = io::get_required<std::string>(j, "event", where);
  e.session = io::get_or<std::string>(j, "session", "", where);
  e.prompt = io::get_required<std::string>(j, "prompt", where);
  e.time = io::get_or<int64_t>(j, "time", 0, where);
  if (j.contains("settings") && j["settings"].is_object()) e.settings = j["settings"];
  if (!j.contains("shown") || !j["shown"].is_array())
    throw UsageError(cat("[feedback] ", where, ": field 'shown' must be a list"));
  for (const auto& s : j["shown"]) {
    ShownImage im;
    im.id = io::get_required<std::string>(s, "id", where);
    im.model = io::get_or<std::string>(s, "model", "", where);
    im.seed = io::get_or<uint64_t>(s, "seed", 0, where);
    if (!is_id(im.id)) throw UsageError(cat("[feedback] ", where, ": image id '", im.id, "' is not an id"));
    e.shown.push_back(im);
  }
  auto among_shown = [&](const std::string& id) {
    for (const auto& s : e.shown)
      if (s.id == id) return true;
    return false;
  };
  if (e.event == "keep") {
    e.kept = io::get_required<std::string>(j, "kept", where);
    if (!among_shown(e.kept)) throw UsageError(cat("[feedback] ", where, ": the kept image is not among those shown"));
  } else if (e.event == "download") {
    e.image = io::get_required<std::string>(j, "image", where);
    if (!among_shown(e.image))
      throw UsageError(cat("[feedback] ", where, ": the downloaded image is not among those shown"));
  } else if (e.event != "skip") {
    throw UsageError(cat("[feedback] ", where, ": unknown event '", e.event, "' (keep, skip or download)"));
  }
  return e;
}

FeedbackStore::FeedbackStore(const fs::path& dir) : dir_(dir), log_(dir / "feedback.jsonl") {
  std::error_code ec;
  fs::create_directories(dir_ / "images", ec);
  if (ec) throw IoError(cat("[feedback] cannot create ", (dir_ / "images").string(), ": ", ec.message()));
}

void FeedbackStore::save_image(const std::string& id, const std::string& png) {
  if (!is_id(id)) throw UsageError(cat("[feedback] '", id, "' is not an image id"));
  const fs::path p = dir_ / "images" / (id + ".png");
  if (!fs::exists(p)) io::write_file_atomically(p, png);  // fsyncs the file and the folder
}

bool FeedbackStore::has_image(const std::string& id) const {
  return is_id(id) && fs::exists(dir_ / "images" / (id + ".png"));
}

void FeedbackStore::record(const FeedbackEvent& event) {
  for (const auto& s : event.shown)
    if (!has_image(s.id)) throw IoError(cat("[feedback] image ", s.id, " is not saved; the event is not recorded"));
  log_.append(event.to_json());
}

io::OrderedJson ExportSummary::to_json() const {
  return {{"events", events},       {"keeps", keeps},
          {"skips", skips},         {"downloads", downloads},
          {"pairs", pairs},         {"labels_desirable", desirable},
          {"labels_undesirable", undesirable}, {"expert_images", expert},
          {"bad_lines", bad_lines}, {"bad_events", bad_events},
          {"missing_images", missing_images}};
}

namespace {

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw IoError(cat("[export] cannot write ", p.string(), " (disk full?)"));
}

std::string padded(size_t i, int digits) {
  std::string s = std::to_string(i);
  return std::string(std::max<int>(0, digits - static_cast<int>(s.size())), '0') + s;
}

}  // namespace

ExportSummary export_feedback(const fs::path& feedback_dir, const fs::path& out, bool overwrite) {
  const fs::path log = feedback_dir / "feedback.jsonl";
  if (!fs::exists(log))
    throw UsageError(cat("[export] ", log.string(), " not found: no feedback recorded in ", feedback_dir.string()));
  std::error_code ec;
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)) && !overwrite)
    throw UsageError(cat("[export] ", out.string(), " exists and is not empty; choose another --out or pass --overwrite"));

  ExportSummary sum;
  const LogContents contents = read_log(log);
  sum.bad_lines = contents.bad_lines;
  std::vector<FeedbackEvent> events;
  for (size_t i = 0; i < contents.records.size(); ++i) {
    try {
      FeedbackEvent e = FeedbackEvent::from_json(contents.records[i], cat(log.string(), " record ", i + 1));
      bool complete = true;
      for (const auto& s : e.shown)
        if (!fs::exists(feedback_dir / "images" / (s.id + ".png"))) complete = false;
      if (!complete) {
        ++sum.missing_images;
        continue;
      }
      events.push_back(std::move(e));
    } catch (const Error&) {
      ++sum.bad_events;
    }
  }

  // An image is desirable once kept or downloaded, undesirable when only ever passed over.
  std::set<std::string> good;
  std::map<std::string, std::string> caption_of, session_of;
  std::vector<std::string> order;  // first appearance
  for (const auto& e : events) {
    ++sum.events;
    if (e.event == "keep") ++sum.keeps, good.insert(e.kept);
    if (e.event == "skip") ++sum.skips;
    if (e.event == "download") ++sum.downloads, good.insert(e.image);
    for (const auto& s : e.shown)
      if (caption_of.emplace(s.id, e.prompt).second) {
        session_of[s.id] = e.session;
        order.push_back(s.id);
      }
  }

  const fs::path stage = out.parent_path() / (out.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(stage, ec);
  fs::create_directories(stage / "images");
  try {
    auto rel = [](const std::string& id) { return "images/" + id + ".png"; };
    for (const auto& id : order)
      fs::copy_file(feedback_dir / "images" / (id + ".png"), stage / rel(id), fs::copy_options::overwrite_existing);
    {
      std::ofstream pairs(stage / "pairs.jsonl"), labels(stage / "labels.jsonl");
      std::set<std::pair<std::string, std::string>> seen;
      for (const auto& e : events) {
        if (e.event != "keep") continue;
        for (const auto& s : e.shown) {
          if (s.id == e.kept || good.count(s.id) || !seen.emplace(e.kept, s.id).second) continue;
          pairs << io::OrderedJson{{"session", e.session}, {"caption", e.prompt}, {"chosen", rel(e.kept)},
                                   {"rejected", rel(s.id)}}
                       .dump()
                << "\n";
          ++sum.pairs;
        }
      }
      for (const auto& id : order) {
        const bool d = good.count(id) > 0;
        labels << io::OrderedJson{{"session", session_of[id]}, {"caption", caption_of[id]}, {"image", rel(id)},
                                  {"label", d ? 1 : 0}}
                      .dump()
               << "\n";
        ++(d ? sum.desirable : sum.undesirable);
      }
      pairs.close();
      labels.close();
      if (!pairs || !labels) throw IoError(cat("[export] writing ", stage.string(), "/*.jsonl failed (disk full?)"));
    }
    // The expert folder, in the order images were first shown.
    std::vector<std::string> kept;
    for (const auto& id : order)
      if (good.count(id)) kept.push_back(id);
    const int digits = static_cast<int>(std::to_string(std::max<size_t>(kept.size(), 1) - 1).size());
    fs::create_directories(stage / "expert");
    for (size_t i = 0; i < kept.size(); ++i) {
      const std::string name = padded(i, digits);
      fs::create_directories(stage / "expert" / name);
      fs::copy_file(stage / rel(kept[i]), stage / "expert" / name / (name + ".png"));
      write_bytes(stage / "expert" / name / "caption.txt", caption_of[kept[i]]);
    }
    sum.expert = static_cast<int64_t>(kept.size());
    write_bytes(stage / "summary.json", sum.to_json().dump(2) + "\n");
    if (fs::exists(out)) fs::remove_all(out);
    fs::rename(stage, out);
  } catch (...) {
    fs::remove_all(stage, ec);
    throw;
  }
  return sum;
}

}  // namespace dro::serve
