#include "dro/io/weights.h"

#include <algorithm>

#include "dro/core/error.h"
#include "dro/io/json.h"

namespace dro::io {
namespace fs = std::filesystem;

namespace {

// Candidate files for (stem, variant), in the order diffusers looks for them.
struct Candidate {
  fs::path single;
  fs::path index;
};

Candidate candidate(const fs::path& dir, const std::string& stem, const std::string& variant) {
  if (variant.empty())
    return {dir / (stem + ".safetensors"), dir / (stem + ".safetensors.index.json")};
  return {dir / (stem + "." + variant + ".safetensors"),
          dir / (stem + ".safetensors.index." + variant + ".json")};
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

ComponentWeights ComponentWeights::open(const fs::path& dir, const std::string& variant) {
  if (!fs::is_directory(dir)) throw IoError(cat("[weights] ", dir.string(), ": not a folder"));
  ComponentWeights w;
  const std::vector<std::string> stems = {kDiffusersWeightsStem, kTransformersWeightsStem};
  std::vector<fs::path> shard_paths;
  auto try_variant = [&](const std::string& v) -> bool {
    for (const auto& stem : stems) {
      Candidate c = candidate(dir, stem, v);
      if (fs::exists(c.single)) {
        shard_paths = {c.single};
        return true;
      }
      if (fs::exists(c.index)) {
        OrderedJson idx = read_json(c.index);
        if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
          throw IoError(cat("[weights] ", c.index.string(), ": no 'weight_map' object"));
        std::vector<std::string> shards;
        for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
          if (!it.value().is_string())
            throw IoError(cat("[weights] ", c.index.string(), ": weight_map entry '", it.key(),
                              "' is not a file name"));
          shards.push_back(it.value().get<std::string>());
        }
        std::sort(shards.begin(), shards.end());
        shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
        for (const auto& s : shards) {
          if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
            throw IoError(cat("[weights] ", c.index.string(), ": shard name '", s,
                              "' must be a plain file name"));
          if (!fs::exists(dir / s))
            throw IoError(cat("[weights] ", c.index.string(), ": lists shard '", s,
                              "' which is missing from ", dir.string(), " (incomplete download?)"));
          shard_paths.push_back(dir / s);
        }
        return true;
      }
    }
    return false;
  };

  std::string chosen = variant;
  if (!try_variant(variant)) {
    const auto names = list_dir(dir);
    std::vector<std::string> variants;
    bool has_pickle = false;
    for (const auto& n : names) {
      for (const auto& stem : stems) {
        const std::string prefix = stem + ".";
        if (n.rfind(prefix, 0) == 0 && ends_with(n, ".safetensors") &&
            n.size() > prefix.size() + 12) {
          std::string mid = n.substr(prefix.size(), n.size() - prefix.size() - 12);
          if (mid.find('.') == std::string::npos && mid.find('-') == std::string::npos)
            variants.push_back(mid);
        }
      }
      if (ends_with(n, ".bin") || ends_with(n, ".ckpt") || ends_with(n, ".pt") || ends_with(n, ".pth"))
        has_pickle = true;
    }
    if (variant.empty() && variants.size() == 1 && try_variant(variants[0])) {
      chosen = variants[0];
    } else if (!variant.empty()) {
      throw IoError(cat("[weights] ", dir.string(), ": no '", variant, "' variant (looked for ",
                        candidate(dir, kDiffusersWeightsStem, variant).single.filename().string(),
                        " and ", candidate(dir, kTransformersWeightsStem, variant).single.filename().string(),
                        ")", variants.empty() ? std::string() : cat("; variants present: ", variants[0])));
    } else if (has_pickle) {
      throw IoError(cat("[weights] ", dir.string(), ": only PyTorch pickle weights (.bin/.ckpt) here; ",
                        "dro reads safetensors only. Convert once in Python with ",
                        "`<Model>.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`"));
    } else if (variants.size() > 1) {
      throw UsageError(cat("[weights] ", dir.string(), ": several variants present; choose one ",
                           "with --variant"));
    } else {
      throw IoError(cat("[weights] ", dir.string(), ": no weights found (expected ",
                        kDiffusersWeightsStem, ".safetensors, ", kTransformersWeightsStem,
                        ".safetensors or a sharded *.safetensors.index.json)"));
    }
  }
  w.variant_ = chosen;
  for (const auto& p : shard_paths) {
    auto f = SafetensorsFile::open(p);
    const size_t idx = w.files_.size();
    for (const auto& ti : f->tensors()) {
      if (w.where_.count(ti.name))
        throw IoError(cat("[weights] tensor '", ti.name, "' appears in both ",
                          w.paths_[w.where_[ti.name]].string(), " and ", p.string()));
      w.where_[ti.name] = idx;
    }
    w.files_.push_back(std::move(f));
    w.paths_.push_back(p);
  }
  return w;
}

std::vector<std::string> ComponentWeights::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : where_) out.push_back(k);
  return out;
}

const TensorInfo& ComponentWeights::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw IoError(cat("[weights] no tensor named '", name, "'"));
  return files_[it->second]->info(name);
}

torch::Tensor ComponentWeights::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw IoError(cat("[weights] no tensor named '", name, "'"));
  return files_[it->second]->get(name);
}

}  // namespace dro::io
