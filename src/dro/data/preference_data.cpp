#include "dro/data/preference_data.h"

#include <algorithm>

#include "dro/core/error.h"
#include "dro/io/table.h"

namespace dro::data {
namespace fs = std::filesystem;

namespace {

std::string field(const io::OrderedJson& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw IoError(cat("[data] ", where, ": no '", key, "'"));
  if (!j[key].is_string()) throw IoError(cat("[data] ", where, ": '", key, "' must be a string"));
  return j[key].get<std::string>();
}

fs::path image_path(const fs::path& base, const std::string& rel, const char* key, const std::string& where) {
  const fs::path p = fs::path(rel).is_absolute() ? fs::path(rel) : base / rel;
  if (!fs::is_regular_file(p)) throw IoError(cat("[data] ", where, ": ", key, " ", p.string(), " does not exist"));
  return p;
}

// A number given as JSON number, boolean or numeric string; NaN when it is none of those.
double number(const io::OrderedJson& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
  if (v.is_string()) {
    try {
      size_t used = 0;
      const std::string s = v.get<std::string>();
      const double d = std::stod(s, &used);
      if (used == s.size()) return d;
    } catch (const std::exception&) {
    }
  }
  return NAN;
}

}  // namespace

int64_t LabelData::desirable() const {
  return std::count_if(images.begin(), images.end(), [](const LabelledImage& i) { return i.desirable; });
}

PairData read_pairs(const fs::path& file) {
  PairData out;
  const fs::path base = file.parent_path();
  int64_t n = 0;
  for (const auto& j : io::read_table(file, "data")) {
    const std::string where = cat(file.string(), " entry ", ++n);
    PreferencePair p;
    p.caption = field(j, "caption", where);
    if (j.contains("chosen") || j.contains("rejected")) {
      p.chosen = image_path(base, field(j, "chosen", where), "chosen", where);
      p.rejected = image_path(base, field(j, "rejected", where), "rejected", where);
    } else {
      if (!j.contains("label_0")) throw IoError(cat("[data] ", where, ": neither chosen/rejected nor image_0/image_1/label_0"));
      const double label = number(j["label_0"]);
      if (label == 0.5) {
        ++out.ties_dropped;
        continue;
      }
      if (label != 0.0 && label != 1.0)
        throw IoError(cat("[data] ", where, ": label_0 ", j["label_0"].dump(), " (expected 1, 0 or 0.5)"));
      const fs::path a = image_path(base, field(j, "image_0", where), "image_0", where);
      const fs::path b = image_path(base, field(j, "image_1", where), "image_1", where);
      p.chosen = label == 1.0 ? a : b;
      p.rejected = label == 1.0 ? b : a;
    }
    out.pairs.push_back(std::move(p));
  }
  if (out.pairs.empty()) throw IoError(cat("[data] ", file.string(), ": no preference pairs"));
  return out;
}

LabelData read_labels(const fs::path& file) {
  LabelData out;
  const fs::path base = file.parent_path();
  int64_t n = 0;
  for (const auto& j : io::read_table(file, "data")) {
    const std::string where = cat(file.string(), " entry ", ++n);
    LabelledImage im;
    im.caption = field(j, "caption", where);
    const char* key = j.contains("file_path") ? "file_path" : "image";
    im.image = image_path(base, field(j, key, where), key, where);
    if (!j.contains("label")) throw IoError(cat("[data] ", where, ": no 'label'"));
    const auto& l = j["label"];
    const std::string text = l.is_string() ? l.get<std::string>() : "";
    if (text == "exclusive_win" || text == "desirable") {
      im.desirable = true;
    } else if (text == "exclusive_lose" || text == "undesirable") {
      im.desirable = false;
    } else if (const double v = number(l); v == 1.0 || v == 0.0) {
      im.desirable = v == 1.0;
    } else if (key == std::string("file_path")) {
      ++out.dropped;  // the Diffusion-KTO CSV's other labels (ties and such)
      continue;
    } else {
      throw IoError(cat("[data] ", where, ": label ", l.dump(), " (expected 1/0, true/false, desirable/undesirable, "
                        "exclusive_win/exclusive_lose)"));
    }
    out.images.push_back(std::move(im));
  }
  if (out.images.empty()) throw IoError(cat("[data] ", file.string(), ": no labelled images"));
  return out;
}

}  // namespace dro::data
