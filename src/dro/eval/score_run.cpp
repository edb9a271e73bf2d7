#include "dro/eval/score_run.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <future>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include "dro/core/error.h"
#include "dro/core/progress.h"
#include "dro/dist/process_group.h"
#include "dro/io/atomic_file.h"
#include "dro/vision/decode.h"

namespace dro::eval {

namespace fs = std::filesystem;

namespace {

bool has_image_extension(const fs::path& p, bool png_only) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (png_only) return ext == ".png";
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

std::string row_id(const std::string& dir, const std::string& image) {
  return dir + '\n' + image;
}

// Appends JSON lines to a file, each batch flushed and fsync'd, so a crash keeps whole lines.
class AppendLog {
 public:
  explicit AppendLog(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IoError(cat("[score] ", path.string(), ": cannot open for appending"));
  }
  ~AppendLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  AppendLog(const AppendLog&) = delete;
  AppendLog& operator=(const AppendLog&) = delete;
  void write(const std::string& lines) {
    size_t done = 0;
    while (done < lines.size()) {
      const ssize_t n = ::write(fd_, lines.data() + done, lines.size() - done);
      if (n <= 0) throw IoError(cat("[score] ", path_.string(), ": write failed (disk full?)"));
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd_) != 0) throw IoError(cat("[score] ", path_.string(), ": fsync failed"));
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// Reads the rows of a JSONL file into `table` (merging keys into existing rows). A line that is
// not a JSON object (a torn last line after a crash) is skipped and counted.
int64_t read_rows(const fs::path& path, std::map<std::string, io::OrderedJson>& table,
                  std::vector<std::string>& order) {
  std::ifstream in(path);
  if (!in) return 0;
  int64_t bad = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    io::OrderedJson j;
    try {
      j = io::OrderedJson::parse(line);
    } catch (const std::exception&) {
      ++bad;
      continue;
    }
    if (!j.is_object() || !j.contains("dir") || !j.contains("image") || !j["dir"].is_string() ||
        !j["image"].is_string()) {
      ++bad;
      continue;
    }
    const std::string id = row_id(j["dir"].get<std::string>(), j["image"].get<std::string>());
    auto it = table.find(id);
    if (it == table.end()) {
      order.push_back(id);
      table.emplace(id, std::move(j));
      continue;
    }
    io::OrderedJson& row = it->second;
    for (auto kv = j.begin(); kv != j.end(); ++kv) {
      if (kv.key() == "weights" && kv.value().is_object()) {
        if (!row.contains("weights") || !row["weights"].is_object())
          row["weights"] = io::OrderedJson::object();
        for (auto w = kv.value().begin(); w != kv.value().end(); ++w)
          row["weights"][w.key()] = w.value();
      } else {
        row[kv.key()] = kv.value();
      }
    }
  }
  return bad;
}

fs::path part_path(const fs::path& out, int rank) {
  return fs::path(out.string() + ".part-" + std::to_string(rank) + ".jsonl");
}

std::vector<fs::path> existing_parts(const fs::path& out) {
  std::vector<fs::path> parts;
  const fs::path folder = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  if (!fs::is_directory(folder)) return parts;
  const std::string prefix = out.filename().string() + ".part-";
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() > 6 && name.substr(name.size() - 6) == ".jsonl")
      parts.push_back(e.path());
  }
  std::sort(parts.begin(), parts.end());
  return parts;
}

// A row's value for `key` is current when it was made by the same weights for the same caption.
bool is_current(const io::OrderedJson& row, const std::string& key, const std::string& sha,
                const std::string& prompt) {
  if (!row.contains(key) || !row[key].is_number()) return false;
  if (!row.contains("prompt") || row["prompt"] != prompt) return false;
  return row.contains("weights") && row["weights"].is_object() && row["weights"].contains(key) &&
         row["weights"][key] == sha;
}

struct Prepared {
  torch::Tensor pixels;
  std::vector<std::string> notes;
  std::string error;  // non-empty: the image could not be used
};

// The bytes of an archive member (pread: safe from several decoding threads).
std::string read_member(const ScoreItem& item) {
  const int fd = ::open(item.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("[score] cannot open ", item.path.string()));
  std::string bytes(static_cast<size_t>(item.size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, item.offset + static_cast<off_t>(done));
    if (n <= 0) {
      ::close(fd);
      throw IoError(cat("[score] ", item.path.string(), ": member ", item.image, " is cut short (truncated archive?)"));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return bytes;
}

Prepared prepare(const Scorer& scorer, const ScoreItem& item, bool replace_small) {
  Prepared p;
  try {
    vision::PilImage img = item.offset < 0 ? vision::decode_image_file(item.path)
                                           : vision::decode_image_bytes(read_member(item), item.path.string() + ":" + item.image);
    if (replace_small && (img.width() < 10 || img.height() < 10)) {
      // misc/dataset.py: "some images are corrupted" - anything under 10 px is scored as black.
      p.notes.push_back(cat("image is ", img.width(), "x", img.height(),
                            " (under 10 px): scored as a black 512x512 RGB image, as score.py does "
                            "(--keep-small-images scores it as it is)"));
      img = vision::from_pixels(io::Image(512, 512, 3));
    }
    p.pixels = scorer.preprocess(img, p.notes);
  } catch (const Error& e) {
    p.error = e.what();
  }
  return p;
}

std::string fmt(double v, int precision = 4) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision) << v;
  return os.str();
}

}  // namespace

std::vector<ScoreItem> list_score_items(const std::string& dir, const ListOptions& options,
                                        std::vector<std::string>* warnings) {
  const fs::path root(dir);
  if (!fs::is_directory(root))
    throw UsageError(
        cat("[score] --dir ", dir, ": ", fs::exists(root) ? "is not a folder" : "does not exist"));
  std::vector<fs::path> prompt_dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::is_regular_file(e.path() / "caption.txt"))
      prompt_dirs.push_back(e.path());
  std::sort(prompt_dirs.begin(), prompt_dirs.end());
  if (prompt_dirs.empty())
    throw IoError(cat("[score] ", dir, ": no prompt folders (expected ", dir,
                      "/<prompt>/caption.txt beside the images, as dro sample writes)"));
  std::vector<ScoreItem> items;
  for (const auto& pd : prompt_dirs) {
    const std::string prompt = io::read_file(pd / "caption.txt");
    std::vector<fs::path> images;
    for (const auto& e : fs::directory_iterator(pd))
      if (e.is_regular_file() && has_image_extension(e.path(), options.first_png_only))
        images.push_back(e.path());
    std::sort(images.begin(), images.end());
    if (images.empty()) {
      const std::string msg = cat("[score] ", pd.string(), ": a prompt folder without ",
                                  options.first_png_only ? "a .png image" : "images (.png, .jpg)");
      if (!options.skip_bad_images) throw IoError(msg + " (--skip-bad-images skips it)");
      if (warnings) warnings->push_back(msg + ": skipped");
      continue;
    }
    if (options.first_png_only) images.resize(1);
    for (const auto& img : images) {
      ScoreItem it;
      it.dir = dir;
      it.image = pd.filename().string() + "/" + img.filename().string();
      it.path = img;
      it.prompt = prompt;
      items.push_back(std::move(it));
    }
  }
  return items;
}

ScoreRunResult run_scores(const std::vector<ScorerRequest>& requests, const ScorerModels& models,
                          const ScorerOptions& options, const ScoreRunOptions& run,
                          dist::Group& group) {
  if (requests.empty()) throw UsageError("[score] no scorer chosen");
  if (run.batch_size < 1) throw UsageError("[score] --batch-size must be at least 1");
  if (run.dirs.empty() && run.items.empty()) throw UsageError("[score] --dir is required");
  const bool main = group.is_main();
  const int rank = group.rank(), world = group.size();
  auto say = [&](const std::string& s) {
    if (main && !run.quiet) std::cerr << s << "\n";
  };
  auto warn = [&](const std::string& s) {
    if (main) std::cerr << "warning: " << s << "\n";
  };

  std::vector<std::string> warnings;
  std::vector<ScoreItem> items;
  std::set<std::string> seen_dirs;
  for (const auto& d : run.dirs) {
    if (!seen_dirs.insert(d).second) throw UsageError(cat("[score] --dir ", d, " is given twice"));
    auto part = list_score_items(d, run.list, &warnings);
    items.insert(items.end(), part.begin(), part.end());
  }
  items.insert(items.end(), run.items.begin(), run.items.end());
  for (const auto& w : warnings) warn(w);
  if (!run.out.parent_path().empty()) fs::create_directories(run.out.parent_path());

  // What earlier runs left: the merged file and the parts of an interrupted run.
  std::map<std::string, io::OrderedJson> table;
  std::vector<std::string> old_order;
  int64_t torn = read_rows(run.out, table, old_order);
  for (const auto& p : existing_parts(run.out)) torn += read_rows(p, table, old_order);
  if (torn)
    warn(cat(torn, " unreadable line(s) in ", run.out.string(),
             " or its parts (an interrupted write?) ignored"));
  group.barrier();  // every rank has read the parts before any rank appends to its own
  AppendLog log(part_path(run.out, rank));

  ScoreRunResult result;
  result.images = static_cast<int64_t>(items.size());
  std::map<std::string, int64_t> note_counts;  // first sentence of a note -> images
  std::map<std::string, std::string> note_example;
  std::set<std::string> bad_paths;

  for (const auto& req : requests) {
    auto scorer = make_scorer(req.kind, models, options, req.aesthetic_v1, req.aesthetic_v2);
    const auto& keys = scorer->keys();
    for (const auto& k : keys) {
      result.key_order.push_back(k.key);
      result.scorers.push_back(k);
    }
    // Items any of this scorer's keys still lacks; rank r takes every world-th of them.
    std::vector<size_t> todo;
    for (size_t i = 0; i < items.size(); ++i) {
      auto it = table.find(row_id(items[i].dir, items[i].image));
      bool current = it != table.end();
      for (const auto& k : keys)
        current = current && is_current(it->second, k.key, k.weights_sha256, items[i].prompt);
      if (!current) todo.push_back(i);
    }
    result.reused += static_cast<int64_t>((items.size() - todo.size()) * keys.size());
    std::vector<size_t> mine;
    for (size_t i = rank; i < todo.size(); i += world) mine.push_back(todo[i]);
    std::string names;
    for (const auto& k : keys) names += (names.empty() ? "" : "+") + k.key;
    say(cat("[score] ", names, ": ", todo.size(), " of ", items.size(), " images to score",
            world > 1 ? cat(" on ", world, " ranks") : std::string(),
            todo.size() < items.size()
                ? cat(" (", items.size() - todo.size(), " kept from ", run.out.string(), ")")
                : std::string()));

    Progress progress(names, static_cast<int64_t>(mine.size()), run.quiet || !main);
    for (size_t start = 0; start < mine.size(); start += run.batch_size) {
      const size_t end = std::min(mine.size(), start + static_cast<size_t>(run.batch_size));
      std::vector<Prepared> prepared(end - start);
      // Decoding and preprocessing in `workers` threads, each taking every workers-th image.
      const int workers = std::max(1, std::min<int>(run.workers, static_cast<int>(end - start)));
      std::vector<std::future<void>> jobs;
      for (int w = 0; w < workers; ++w)
        jobs.push_back(std::async(std::launch::async, [&, w] {
          for (size_t j = w; j < prepared.size(); j += workers)
            prepared[j] = prepare(*scorer, items[mine[start + j]], run.replace_small_images);
        }));
      for (auto& j : jobs) j.get();

      std::vector<torch::Tensor> pixels;
      std::vector<std::string> prompts;
      std::vector<size_t> used;
      for (size_t j = 0; j < prepared.size(); ++j) {
        const ScoreItem& item = items[mine[start + j]];
        if (!prepared[j].error.empty()) {
          if (!run.list.skip_bad_images)
            throw IoError(cat(prepared[j].error, " (--skip-bad-images skips such images)"));
          if (bad_paths.insert(item.path.string()).second)
            std::cerr << "warning: skipped " << item.path.string() << ": " << prepared[j].error
                      << "\n";
          continue;
        }
        for (const auto& n : prepared[j].notes) {
          const std::string head = n.substr(0, n.find(':'));
          if (note_counts[head]++ == 0) note_example[head] = cat(item.path.string(), ": ", n);
        }
        pixels.push_back(prepared[j].pixels);
        prompts.push_back(item.prompt);
        used.push_back(mine[start + j]);
      }
      if (!pixels.empty()) {
        const auto scores = scorer->score(torch::stack(pixels), prompts);
        std::string lines;
        for (size_t u = 0; u < used.size(); ++u) {
          const ScoreItem& item = items[used[u]];
          io::OrderedJson row = {{"dir", item.dir}, {"image", item.image}, {"prompt", item.prompt}};
          io::OrderedJson weights = io::OrderedJson::object();
          for (size_t k = 0; k < keys.size(); ++k) {
            const double v = scores[k][u];
            if (!std::isfinite(v))
              throw Error(cat("[score] ", keys[k].key, " of ", item.path.string(),
                              " is not finite (", v, ")"));
            row[keys[k].key] = v;
            weights[keys[k].key] = keys[k].weights_sha256;
          }
          row["weights"] = weights;
          lines += row.dump() + "\n";
          // Keep this rank's view current too (the merge at the end re-reads every part).
          auto [it, fresh] = table.emplace(row_id(item.dir, item.image), row);
          if (!fresh) {
            it->second["prompt"] = item.prompt;
            for (size_t k = 0; k < keys.size(); ++k) it->second[keys[k].key] = row[keys[k].key];
            if (!it->second.contains("weights") || !it->second["weights"].is_object())
              it->second["weights"] = io::OrderedJson::object();
            for (size_t k = 0; k < keys.size(); ++k)
              it->second["weights"][keys[k].key] = keys[k].weights_sha256;
          } else {
            old_order.push_back(row_id(item.dir, item.image));
          }
        }
        log.write(lines);
        result.scored += static_cast<int64_t>(used.size() * keys.size());
      }
      progress.tick(static_cast<int64_t>(end - start));
    }
    progress.finish();
    scorer.reset();  // free the model before the next one loads
  }
  for (const auto& [head, n] : note_counts)
    warn(cat(n, " image(s): ", note_example[head], n > 1 ? " (and others)" : ""));

  // Counts over the ranks, then rank 0 merges every part into OUT.
  const auto sums = group.all_reduce_sum(
      {static_cast<double>(result.scored), static_cast<double>(bad_paths.size())});
  result.scored = static_cast<int64_t>(sums[0]);
  result.bad_images = static_cast<int64_t>(sums[1]);
  group.barrier();
  if (main) {
    table.clear();
    old_order.clear();
    read_rows(run.out, table, old_order);
    const auto parts = existing_parts(run.out);
    for (const auto& p : parts) read_rows(p, table, old_order);
    // Current items first, in listing order; rows of other folders / earlier files after them.
    std::vector<std::string> order;
    std::set<std::string> placed;
    for (const auto& item : items) {
      const std::string id = row_id(item.dir, item.image);
      if (table.count(id) && placed.insert(id).second) order.push_back(id);
    }
    for (const auto& id : old_order)
      if (placed.insert(id).second) order.push_back(id);
    io::write_atomically(run.out, [&](std::ostream& os) {
      for (const auto& id : order) os << table.at(id).dump() << "\n";
    });
    for (const auto& p : parts) fs::remove(p);

    // Summary over the images of this run's folders.
    for (const auto& dir : run.dirs) {
      for (const auto& key : result.key_order) {
        double sum = 0, sq = 0;
        int64_t n = 0;
        for (const auto& item : items) {
          if (item.dir != dir) continue;
          auto it = table.find(row_id(item.dir, item.image));
          if (it == table.end() || !it->second.contains(key) || !it->second[key].is_number())
            continue;
          const double v = it->second[key].get<double>();
          sum += v;
          sq += v * v;
          ++n;
        }
        KeyStats s;
        s.count = n;
        if (n) {
          s.mean = sum / n;
          s.std = std::sqrt(std::max(0.0, sq / n - s.mean * s.mean));
        }
        result.stats[dir][key] = s;
      }
    }
    const fs::path stem = run.out.parent_path() / run.out.stem();
    result.summary_json = fs::path(stem.string() + ".summary.json");
    result.summary_md = fs::path(stem.string() + ".summary.md");
    io::OrderedJson sj = {{"images", result.images}, {"jsonl", run.out.string()}};
    io::OrderedJson sc = io::OrderedJson::array();
    for (const auto& k : result.scorers) sc.push_back(k.to_json());
    sj["scorers"] = sc;
    io::OrderedJson dirs = io::OrderedJson::object();
    for (const auto& [dir, by_key] : result.stats) {
      io::OrderedJson d = io::OrderedJson::object();
      for (const auto& key : result.key_order) {
        const auto& s = by_key.at(key);
        d[key] = {{"mean", s.mean}, {"std", s.std}, {"count", s.count}};
      }
      dirs[dir] = d;
    }
    sj["summary"] = dirs;
    io::write_json(result.summary_json, sj);
    io::write_file_atomically(result.summary_md, format_summary(result));
  }
  group.barrier();
  if (!main) fs::remove(part_path(run.out, rank));
  return result;
}

std::string format_summary(const ScoreRunResult& r) {
  std::ostringstream os;
  os << "| directory | images |";
  for (const auto& k : r.key_order) os << " " << k << " |";
  os << "\n|---|---|";
  for (size_t i = 0; i < r.key_order.size(); ++i) os << "---|";
  os << "\n";
  for (const auto& [dir, by_key] : r.stats) {
    int64_t n = 0;
    for (const auto& [k, s] : by_key) n = std::max(n, s.count);
    os << "| " << dir << " | " << n << " |";
    for (const auto& k : r.key_order) {
      const auto& s = by_key.at(k);
      os << " " << (s.count ? fmt(s.mean) + " ± " + fmt(s.std) : std::string("-")) << " |";
    }
    os << "\n";
  }
  os << "\nmean ± std (population) over the scored images of each directory.\n";
  for (const auto& k : r.scorers)
    os << "- `" << k.key << "`: " << k.version << "; " << k.units << "; weights sha256 "
       << k.weights_sha256 << "\n";
  return os.str();
}

}  // namespace dro::eval
