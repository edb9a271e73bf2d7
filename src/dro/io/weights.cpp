#include "dro/io/weights.h"

#include <algorithm>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/torch_checkpoint.h"

namespace dro::io {
namespace fs = std::filesystem;

namespace {

// One on-disk layout: a file extension and the stems diffusers / transformers give it.
struct Format {
  std::string ext;
  std::vector<std::string> stems;
};

const Format& safetensors_format() {
  static const Format f{".safetensors", {kDiffusersWeightsStem, kTransformersWeightsStem}};
  return f;
}

const Format& pickle_format() {
  static const Format f{".bin", {kDiffusersWeightsStem, kTransformersPickleStem}};
  return f;
}

// Candidate files for (stem, variant), in the order diffusers looks for them.
struct Candidate {
  fs::path single;
  fs::path index;
};

Candidate candidate(const fs::path& dir, const std::string& stem, const std::string& ext,
                    const std::string& variant) {
  if (variant.empty()) return {dir / (stem + ext), dir / (stem + ext + ".index.json")};
  return {dir / (stem + "." + variant + ext), dir / (stem + ext + ".index." + variant + ".json")};
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The shard files an index lists, checked to be plain names present beside it.
std::vector<fs::path> index_shards(const fs::path& index) {
  const fs::path dir = index.parent_path();
  OrderedJson idx = read_json(index);
  if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
    throw IoError(cat("[weights] ", index.string(), ": no 'weight_map' object"));
  std::vector<std::string> shards;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw IoError(cat("[weights] ", index.string(), ": weight_map entry '", it.key(),
                        "' is not a file name"));
    shards.push_back(it.value().get<std::string>());
  }
  std::sort(shards.begin(), shards.end());
  shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
  std::vector<fs::path> out;
  for (const auto& s : shards) {
    if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
      throw IoError(
          cat("[weights] ", index.string(), ": shard name '", s, "' must be a plain file name"));
    if (!fs::exists(dir / s))
      throw IoError(cat("[weights] ", index.string(), ": lists shard '", s,
                        "' which is missing from ", dir.string(), " (incomplete download?)"));
    out.push_back(dir / s);
  }
  return out;
}

// Variants present for a format: `<stem>.<variant><ext>` with a plain variant name.
std::vector<std::string> variants_present(const std::vector<std::string>& names, const Format& f) {
  std::vector<std::string> out;
  for (const auto& n : names)
    for (const auto& stem : f.stems) {
      const std::string prefix = stem + ".";
      if (n.rfind(prefix, 0) == 0 && ends_with(n, f.ext) &&
          n.size() > prefix.size() + f.ext.size()) {
        std::string mid = n.substr(prefix.size(), n.size() - prefix.size() - f.ext.size());
        if (mid.find('.') == std::string::npos && mid.find('-') == std::string::npos)
          out.push_back(mid);
      }
    }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool is_pickle_name(const std::string& n) {
  return ends_with(n, ".bin") || ends_with(n, ".ckpt") || ends_with(n, ".pt") ||
         ends_with(n, ".pth");
}

}  // namespace

void ComponentWeights::add_file(const fs::path& p, const std::string& key) {
  const size_t idx = paths_.size();
  auto claim = [&](const std::string& name) {
    if (where_.count(name))
      throw IoError(cat("[weights] tensor '", name, "' appears in both ",
                        paths_[where_[name]].string(), " and ", p.string()));
    where_[name] = idx;
  };
  const std::string ext = p.extension().string();
  if (ext != ".safetensors" &&
      (looks_like_torch_checkpoint(p) || is_pickle_name(p.filename().string()))) {
    TorchStateDict sd = read_torch_state_dict(p, key);
    for (auto& [name, t] : sd.tensors) {
      claim(name);
      Loaded l;
      l.info.name = name;
      l.info.dtype = torch_dtype_to_safetensors(t.scalar_type());
      l.info.shape = t.sizes().vec();
      l.info.begin = 0;
      l.info.end = static_cast<uint64_t>(t.numel()) * t.element_size();
      l.tensor = t;
      loaded_[name] = std::move(l);
    }
    if (!sd.key.empty()) state_dict_key_ = sd.key;
    skipped_.insert(skipped_.end(), sd.skipped.begin(), sd.skipped.end());
    files_.push_back(nullptr);
  } else {
    if (!key.empty())
      throw UsageError(cat("[weights] ", p.string(), ": a nested key ('", key,
                           "') applies to PyTorch checkpoints only"));
    auto f = SafetensorsFile::open(p);
    for (const auto& ti : f->tensors()) claim(ti.name);
    files_.push_back(std::move(f));
  }
  paths_.push_back(p);
}

ComponentWeights ComponentWeights::open_file(const fs::path& path, const std::string& key) {
  if (fs::is_directory(path)) {
    if (!key.empty())
      throw UsageError(cat("[weights] ", path.string(), ": a nested key ('", key,
                           "') applies to a single PyTorch checkpoint, not a folder"));
    return open(path);
  }
  if (!fs::exists(path)) throw IoError(cat("[weights] ", path.string(), ": no such file"));
  ComponentWeights w;
  if (ends_with(path.filename().string(), ".index.json")) {
    for (const auto& shard : index_shards(path)) w.add_file(shard, key);
  } else {
    w.add_file(path, key);
  }
  return w;
}

ComponentWeights ComponentWeights::open(const fs::path& dir, const std::string& variant) {
  if (!fs::is_directory(dir)) throw IoError(cat("[weights] ", dir.string(), ": not a folder"));
  std::vector<fs::path> shard_paths;
  auto try_variant = [&](const Format& f, const std::string& v) -> bool {
    for (const auto& stem : f.stems) {
      Candidate c = candidate(dir, stem, f.ext, v);
      if (fs::exists(c.single)) {
        shard_paths = {c.single};
        return true;
      }
      if (fs::exists(c.index)) {
        shard_paths = index_shards(c.index);
        return true;
      }
    }
    return false;
  };

  const auto names = list_dir(dir);
  std::string chosen = variant;
  bool found = false;
  for (const Format* f : {&safetensors_format(), &pickle_format()}) {
    if (try_variant(*f, variant)) {
      found = true;
      break;
    }
    if (!variant.empty()) continue;
    const auto variants = variants_present(names, *f);
    if (variants.size() > 1)
      throw UsageError(cat("[weights] ", dir.string(), ": several variants present; choose one ",
                           "with --variant"));
    if (variants.size() == 1 && try_variant(*f, variants[0])) {
      chosen = variants[0];
      found = true;
      break;
    }
  }
  if (!found) {
    if (!variant.empty()) {
      auto present = variants_present(names, safetensors_format());
      for (const auto& v : variants_present(names, pickle_format())) present.push_back(v);
      throw IoError(cat(
          "[weights] ", dir.string(), ": no '", variant, "' variant (looked for ",
          candidate(dir, kDiffusersWeightsStem, ".safetensors", variant).single.filename().string(),
          ", ",
          candidate(dir, kTransformersWeightsStem, ".safetensors", variant)
              .single.filename()
              .string(),
          " and their .bin forms)",
          present.empty() ? std::string() : cat("; variants present: ", present[0])));
    }
    std::string other;
    for (const auto& n : names)
      if (is_pickle_name(n)) other += (other.empty() ? "" : ", ") + n;
    throw IoError(cat("[weights] ", dir.string(), ": no weights found (expected ",
                      kDiffusersWeightsStem, ".safetensors, ", kTransformersWeightsStem,
                      ".safetensors, a sharded *.safetensors.index.json, or the PyTorch files ",
                      kDiffusersWeightsStem, ".bin / ", kTransformersPickleStem, ".bin)",
                      other.empty() ? std::string()
                                    : cat("; PyTorch files under other names here: ", other,
                                          " (open one as a single file)")));
  }
  ComponentWeights w;
  w.variant_ = chosen;
  for (const auto& p : shard_paths) w.add_file(p, "");
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
  if (!files_[it->second]) return loaded_.at(name).info;
  return files_[it->second]->info(name);
}

torch::Tensor ComponentWeights::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw IoError(cat("[weights] no tensor named '", name, "'"));
  if (!files_[it->second]) return loaded_.at(name).tensor;
  return files_[it->second]->get(name);
}

}  // namespace dro::io
