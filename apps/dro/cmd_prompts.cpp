// dro prompts: writes test-set prompts in the official layout DIR/<idx>/caption.txt, as the
// official tools/hpdv2_benchmark.py (HPDv2's four style files) and for a plain prompt list.
#include <algorithm>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"

namespace dro::app {
namespace fs = std::filesystem;

namespace {

std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n\f\v");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n\f\v") - b + 1);
}

// Writes the non-empty captions (stripped) as OUT/<i>/caption.txt, i over the kept ones with as
// many digits as the count of all captions needs (the official script's naming); returns the
// number skipped as empty.
int64_t write_layout(const std::vector<std::string>& captions, const fs::path& out) {
  if (fs::exists(out) && !fs::is_empty(out))
    throw UsageError(cat("[prompts] --out ", out.string(), " exists and is not empty"));
  const int digits = static_cast<int>(std::to_string(captions.size()).size());
  int64_t kept = 0, skipped = 0;
  for (const auto& c : captions) {
    const std::string s = strip(c);
    if (s.empty()) {
      ++skipped;
      continue;
    }
    std::string name = std::to_string(kept++);
    name = std::string(static_cast<size_t>(std::max(0, digits - static_cast<int>(name.size()))), '0') + name;
    io::write_file_atomically(out / name / "caption.txt", s);
  }
  std::cout << "[prompts] wrote " << kept << " prompts to " << out.string() << " (" << skipped
            << " empty caption(s) skipped, duplicates kept)\n";
  return skipped;
}

}  // namespace

Action register_prompts(CLI::App& app) {
  auto* cmd = app.add_subcommand("prompts", "Write test-set prompts in the official layout OUT/<idx>/caption.txt");
  cmd->require_subcommand(1);
  auto* hpd = cmd->add_subcommand(
      "hpdv2", "HPDv2's benchmark prompts, as tools/hpdv2_benchmark.py: anime, concept-art, paintings and photo "
               "JSON lists (from zhwang/HPDv2, benchmark/*.json) concatenated in that order, empty captions skipped");
  auto json_dir = std::make_shared<std::string>();
  auto hpd_out = std::make_shared<std::string>();
  hpd->add_option("--json", *json_dir, "folder holding anime.json, concept-art.json, paintings.json, photo.json")->required();
  hpd->add_option("--out", *hpd_out, "output folder")->required();
  auto run_hpd = [json_dir, hpd_out]() {
    std::vector<std::string> captions;
    for (const char* style : {"anime", "concept-art", "paintings", "photo"}) {
      const fs::path f = fs::path(*json_dir) / (std::string(style) + ".json");
      if (!fs::exists(f)) throw UsageError(cat("[prompts] ", f.string(), " is missing"));
      const auto j = io::read_json(f);
      if (!j.is_array()) throw IoError(cat("[prompts] ", f.string(), ": expected a JSON list of captions"));
      for (size_t i = 0; i < j.size(); ++i) {
        if (!j[i].is_string()) throw IoError(cat("[prompts] ", f.string(), ": entry ", i, " is not a string"));
        captions.push_back(j[i].get<std::string>());
      }
    }
    write_layout(captions, *hpd_out);
  };
  auto* list = cmd->add_subcommand("list", "one prompt per line of a text file");
  auto file = std::make_shared<std::string>();
  auto list_out = std::make_shared<std::string>();
  list->add_option("--file", *file, "text file, one prompt per line")->required();
  list->add_option("--out", *list_out, "output folder")->required();
  auto run_list = [file, list_out]() {
    std::ifstream in(*file);
    if (!in) throw IoError(cat("[prompts] cannot read ", *file));
    std::vector<std::string> captions;
    std::string line;
    while (std::getline(in, line)) captions.push_back(line);
    write_layout(captions, *list_out);
  };
  return [hpd, run_hpd, run_list]() {
    if (hpd->parsed())
      run_hpd();
    else
      run_list();
    return 0;
  };
}

}  // namespace dro::app
