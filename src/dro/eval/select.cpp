#include "dro/eval/select.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/io/table.h"
#include "dro/vision/decode.h"

namespace dro::eval {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

std::string text_field(const io::OrderedJson& j, const std::string& key, const std::string& where) {
  if (!j.contains(key)) throw IoError(cat("[select] ", where, ": no '", key, "'"));
  if (!j[key].is_string()) throw IoError(cat("[select] ", where, ": '", key, "' must be a string"));
  return j[key].get<std::string>();
}

struct Collector {
  SelectListing listing;
  std::set<std::pair<std::string, std::string>> seen;  // (image identity, caption)
  std::map<std::string, int> per_image;                 // row names already used

  void add(ScoreItem item, const std::string& identity) {
    ++listing.references;
    if (!seen.emplace(identity, item.prompt).second) return;
    // One row per (image, caption): a second caption of the same image gets its own row name.
    const int n = per_image[item.dir + "\n" + item.image]++;
    if (n > 0) item.image += cat("#", n);
    listing.items.push_back(std::move(item));
  }
};

void list_folder(const std::string& input, Collector& c) {
  std::vector<std::string> warnings;
  for (auto& it : list_score_items(input, ListOptions{}, &warnings)) {
    const std::string identity = fs::weakly_canonical(it.path).string();
    c.add(it, identity);
  }
  c.listing.warnings.insert(c.listing.warnings.end(), warnings.begin(), warnings.end());
}

void list_manifest(const std::string& input, Collector& c) {
  const fs::path file = input;
  const fs::path base = file.parent_path();
  const auto rows = io::read_table(file, "select");
  int64_t r = 0;
  for (const auto& j : rows) {
    ++r;
    const std::string where = cat(file.string(), " entry ", r);
    const std::string caption = text_field(j, "caption", where);
    std::vector<std::pair<std::string, std::string>> images;  // (column, uid column)
    if (j.contains("image_0") || j.contains("image_1"))
      images = {{"image_0", "image_0_uid"}, {"image_1", "image_1_uid"}};
    else if (j.contains("chosen") || j.contains("rejected"))
      images = {{"chosen", ""}, {"rejected", ""}};
    else
      images = {{"image", "uid"}};
    for (const auto& [col, uid_col] : images) {
      const std::string rel = text_field(j, col, where);
      ScoreItem it;
      it.dir = input;
      it.image = rel;
      it.path = fs::path(rel).is_absolute() ? fs::path(rel) : base / rel;
      it.prompt = caption;
      if (!fs::is_regular_file(it.path)) throw IoError(cat("[select] ", where, ": ", col, " ", it.path.string(), " does not exist"));
      std::string identity = fs::weakly_canonical(it.path).string();
      if (!uid_col.empty() && j.contains(uid_col) && j[uid_col].is_string() && !j[uid_col].get<std::string>().empty())
        identity = "uid:" + j[uid_col].get<std::string>();
      c.add(std::move(it), identity);
    }
  }
}

// ustar / GNU / pax headers, regular files only.
void list_tar(const fs::path& shard, Collector& c) {
  std::ifstream in(shard, std::ios::binary);
  if (!in) throw IoError(cat("[select] cannot read ", shard.string()));
  struct Member {
    int64_t offset, size;
  };
  std::map<std::string, std::map<std::string, Member>> by_key;  // key -> extension -> member
  std::vector<std::string> key_order;
  char h[512];
  int64_t pos = 0;
  std::string long_name;
  const auto file_size = static_cast<int64_t>(fs::file_size(shard));
  while (in.read(h, 512)) {
    pos += 512;
    if (std::all_of(h, h + 512, [](char ch) { return ch == 0; })) break;  // end of archive
    auto octal = [&](int off, int len) {
      int64_t v = 0;
      for (int i = off; i < off + len && h[i]; ++i) {
        if (h[i] == ' ') continue;
        if (h[i] < '0' || h[i] > '7')
          throw IoError(cat("[select] ", shard.string(), ": bad tar header at byte ", pos - 512, " (not a tar file?)"));
        v = v * 8 + (h[i] - '0');
      }
      return v;
    };
    const int64_t size = octal(124, 12);
    const char type = h[156];
    if (size < 0 || pos + size > file_size)
      throw IoError(cat("[select] ", shard.string(), ": member at byte ", pos - 512, " runs past the end (truncated?)"));
    std::string name(h, strnlen(h, 100));
    if (std::memcmp(h + 257, "ustar", 5) == 0 && h[345]) name = std::string(h + 345, strnlen(h + 345, 155)) + "/" + name;
    const int64_t data = pos;
    const int64_t padded = (size + 511) / 512 * 512;
    if (type == 'L' || type == 'x') {  // GNU long name / pax header for the next member
      std::string body(static_cast<size_t>(size), '\0');
      in.read(body.data(), size);
      in.seekg(data + padded);
      if (type == 'L') {
        long_name = body.c_str();
      } else {
        const auto p = body.find(" path=");
        if (p != std::string::npos) long_name = body.substr(p + 6, body.find('\n', p) - p - 6);
      }
      pos = data + padded;
      continue;
    }
    if (!long_name.empty()) name = long_name, long_name.clear();
    if (type == '0' || type == '\0') {
      const std::string base = fs::path(name).filename().string();
      const auto dot = base.find('.');
      if (dot != std::string::npos && dot > 0) {
        const std::string key = (fs::path(name).parent_path() / base.substr(0, dot)).string();
        const std::string ext = lower(base.substr(dot + 1));
        if (!by_key.count(key)) key_order.push_back(key);
        by_key[key][ext] = {data, size};
      }
    }
    in.seekg(data + padded);
    pos = data + padded;
  }
  auto read_at = [&](const Member& m) {
    std::string b(static_cast<size_t>(m.size), '\0');
    in.clear();
    in.seekg(m.offset);
    in.read(b.data(), m.size);
    return b;
  };
  for (const auto& key : key_order) {
    const auto& members = by_key[key];
    const Member* image = nullptr;
    std::string ext;
    for (const char* e : {"png", "jpg", "jpeg"})
      if (members.count(e)) {
        image = &members.at(e);
        ext = e;
        break;
      }
    if (!image) continue;
    std::string caption;
    if (members.count("txt")) {
      caption = read_at(members.at("txt"));
    } else if (members.count("json")) {
      const std::string where = cat(shard.string(), ": ", key, ".json");
      io::OrderedJson j;
      try {
        j = io::OrderedJson::parse(read_at(members.at("json")));
      } catch (const std::exception& e) {
        throw IoError(cat("[select] ", where, ": not JSON (", e.what(), ")"));
      }
      caption = text_field(j, "caption", where);
    } else {
      throw IoError(cat("[select] ", shard.string(), ": ", key, ".", ext, " has no ", key, ".txt or ", key, ".json caption"));
    }
    while (!caption.empty() && (caption.back() == '\n' || caption.back() == '\r')) caption.pop_back();
    ScoreItem it;
    it.dir = shard.string();
    it.image = key + "." + ext;
    it.path = shard;
    it.prompt = caption;
    it.offset = image->offset;
    it.size = image->size;
    c.add(std::move(it), cat(shard.string(), ":", key));
  }
}

}  // namespace

SelectListing list_select_items(const std::vector<std::string>& inputs) {
  Collector c;
  for (const auto& input : inputs) {
    const fs::path p = input;
    const std::string ext = lower(p.extension().string());
    if (!fs::exists(p)) throw UsageError(cat("[select] --input ", input, ": no such file or folder"));
    if (fs::is_directory(p)) {
      std::vector<fs::path> shards;
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file() && lower(e.path().extension().string()) == ".tar") shards.push_back(e.path());
      std::sort(shards.begin(), shards.end());
      if (!shards.empty()) {
        for (const auto& s : shards) list_tar(s, c);
      } else {
        list_folder(input, c);
      }
    } else if (ext == ".jsonl" || ext == ".csv") {
      list_manifest(input, c);
    } else if (ext == ".tar") {
      list_tar(p, c);
    } else {
      throw UsageError(cat("[select] --input ", input, ": expected a folder, a .jsonl/.csv manifest or a .tar shard"));
    }
  }
  if (c.listing.items.empty()) throw UsageError("[select] the inputs hold no (image, caption) pairs");
  return c.listing;
}

std::vector<Selected> top_k(const std::vector<ScoreItem>& items, const std::vector<io::OrderedJson>& rows,
                            const std::string& key, int64_t k) {
  std::map<std::pair<std::string, std::string>, double> score;
  for (const auto& r : rows)
    if (r.contains(key) && r[key].is_number())
      score[{r.value("dir", std::string()), r.value("image", std::string())}] = r[key].get<double>();
  std::vector<Selected> all;
  for (const auto& it : items) {
    auto s = score.find({it.dir, it.image});
    if (s == score.end()) continue;  // an unreadable image skipped while scoring
    all.push_back({it, s->second});
  }
  std::stable_sort(all.begin(), all.end(), [](const Selected& a, const Selected& b) { return a.score > b.score; });
  if (static_cast<int64_t>(all.size()) > k) all.resize(static_cast<size_t>(k));
  return all;
}

void write_selected(const std::vector<Selected>& selected, const fs::path& out) {
  fs::create_directories(out);
  const int digits = static_cast<int>(std::to_string(selected.size()).size());
  // A folder left by a selection of another size would mix two layouts: refuse it.
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || n.empty() || !std::all_of(n.begin(), n.end(), ::isdigit)) continue;
    if (static_cast<int>(n.size()) != digits || std::stoull(n) >= selected.size())
      throw UsageError(cat("[select] ", out.string(), " holds ", e.path().string(), " from a selection of another size; "
                           "choose another --out (the scores in --score-out are reused)"));
  }
  for (size_t i = 0; i < selected.size(); ++i) {
    std::string name = std::to_string(i);
    name = std::string(static_cast<size_t>(std::max(0, digits - static_cast<int>(name.size()))), '0') + name;
    const fs::path dir = out / name;
    const fs::path png = dir / (name + ".png"), cap = dir / "caption.txt";
    const auto& it = selected[i].item;
    if (fs::exists(png) && fs::exists(cap) && io::read_file(cap) == it.prompt) continue;
    fs::create_directories(dir);
    std::string bytes;
    if (it.offset >= 0) {
      std::ifstream in(it.path, std::ios::binary);
      bytes.resize(static_cast<size_t>(it.size));
      in.seekg(it.offset);
      in.read(bytes.data(), it.size);
    } else {
      bytes = io::read_file(it.path);
    }
    const auto img = vision::convert_to_rgb(vision::decode_image_bytes(bytes, it.path.string() + ":" + it.image));
    io::write_png(png, img);
    io::write_file_atomically(cap, it.prompt);
  }
}

}  // namespace dro::eval
