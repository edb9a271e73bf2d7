#include "dro/eval/scorer.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>

#include "dro/core/error.h"
#include "dro/core/sha256.h"
#include "dro/eval/scorer_impl.h"
#include "dro/io/atomic_file.h"
#include "dro/io/weights.h"

namespace dro::eval {

namespace fs = std::filesystem;

io::OrderedJson ScoreKeyInfo::to_json() const {
  io::OrderedJson files = io::OrderedJson::array();
  for (const auto& f : weight_files) files.push_back(f.string());
  return {{"key", key},     {"name", name},     {"version", version},
          {"units", units}, {"weights", files}, {"weights_sha256", weights_sha256}};
}

namespace {

struct ModelField {
  const char* key;  // snake_case spelling; kebab-case is accepted too
  fs::path ScorerModels::*member;
};

const std::vector<ModelField>& model_fields() {
  static const std::vector<ModelField> fields = {
      {"pickscore_model", &ScorerModels::pickscore_model},
      {"pickscore_processor", &ScorerModels::pickscore_processor},
      {"hpsv2_checkpoint", &ScorerModels::hpsv2_checkpoint},
      {"hpsv2_config", &ScorerModels::hpsv2_config},
      {"open_clip_tokenizer", &ScorerModels::open_clip_tokenizer},
      {"clip_model", &ScorerModels::clip_model},
      {"aesthetic_clip_model", &ScorerModels::aesthetic_clip_model},
      {"aestheticv1_head", &ScorerModels::aestheticv1_head},
      {"aestheticv2_head", &ScorerModels::aestheticv2_head},
      {"imagereward_checkpoint", &ScorerModels::imagereward_checkpoint},
      {"imagereward_med_config", &ScorerModels::imagereward_med_config},
      {"imagereward_vit_config", &ScorerModels::imagereward_vit_config},
      {"bert_tokenizer", &ScorerModels::bert_tokenizer}};
  return fields;
}

}  // namespace

ScorerModels ScorerModels::from_json(const io::OrderedJson& j, const fs::path& base,
                                     const std::string& where) {
  if (!j.is_object())
    throw UsageError(cat("[score] ", where, ": expected an object of model paths"));
  ScorerModels m;
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string key = it.key();
    for (auto& c : key)
      if (c == '-') c = '_';
    bool known = false;
    for (const auto& f : model_fields()) {
      if (key != f.key) continue;
      known = true;
      if (!it.value().is_string())
        throw UsageError(cat("[score] ", where, ": '", it.key(), "' must be a path string"));
      fs::path p = it.value().get<std::string>();
      if (p.is_relative()) p = base / p;
      m.*(f.member) = p;
    }
    if (!known) {
      std::string names;
      for (const auto& f : model_fields()) names += cat(names.empty() ? "" : ", ", f.key);
      throw UsageError(
          cat("[score] ", where, ": unknown key '", it.key(), "' (known: ", names, ")"));
    }
  }
  return m;
}

void ScorerModels::fill_from(const ScorerModels& other) {
  for (const auto& f : model_fields())
    if ((this->*(f.member)).empty()) this->*(f.member) = other.*(f.member);
}

std::unique_ptr<Scorer> make_scorer(ScorerKind kind, const ScorerModels& models,
                                    const ScorerOptions& options, bool aesthetic_v1,
                                    bool aesthetic_v2) {
  if (options.dtype != torch::kFloat32 && !options.device.is_cuda())
    throw UsageError(
        "[score] --dtype bf16/fp16 needs a CUDA device; on the CPU scores are float32");
  switch (kind) {
    case ScorerKind::kPickScore:
      return detail::make_pickscore(models, options);
    case ScorerKind::kHpsv2:
      return detail::make_open_clip_scorer(true, models, options);
    case ScorerKind::kClip:
      return detail::make_open_clip_scorer(false, models, options);
    case ScorerKind::kAesthetic:
      return detail::make_aesthetic(models, options, aesthetic_v1, aesthetic_v2);
    case ScorerKind::kImageReward:
      return detail::make_imagereward(models, options);
  }
  throw UsageError("[score] unknown scorer");
}

std::vector<std::string> planned_keys(ScorerKind kind, const ScorerOptions& options, bool v1,
                                      bool v2) {
  switch (kind) {
    case ScorerKind::kPickScore:
      return {"pickscore"};
    case ScorerKind::kHpsv2:
      return {options.hps_version == "v2.1" ? "hpsv2.1" : "hpsv2"};
    case ScorerKind::kClip:
      return {"clip"};
    case ScorerKind::kAesthetic: {
      std::vector<std::string> keys;
      if (v1) keys.push_back("aestheticv1");
      if (v2) keys.push_back("aestheticv2");
      return keys;
    }
    case ScorerKind::kImageReward:
      return {"imagereward"};
  }
  return {};
}

namespace detail {

void require_path(const fs::path& path, const std::string& flag, bool folder) {
  if (path.empty()) throw UsageError(cat("[score] ", flag, " is required for this score"));
  if (folder ? !fs::is_directory(path) : !fs::is_regular_file(path))
    throw UsageError(
        cat("[score] ", flag, " ", path.string(), ": ",
            fs::exists(path) ? (folder ? "is not a folder" : "is not a file") : "does not exist"));
}

nn::LoadOptions load_options(const ScorerOptions& options) {
  nn::LoadOptions o;
  o.device = options.device;
  o.dtype = options.dtype;
  return o;
}

torch::Tensor l2_normalize(const torch::Tensor& x) {
  const torch::Tensor f = x.to(torch::kFloat32);
  return f / f.norm(2, -1, true);
}

namespace {

fs::path sha_cache_file() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return fs::path(x) / "dro" / "sha256.json";
  if (const char* h = std::getenv("HOME"); h && *h)
    return fs::path(h) / ".cache" / "dro" / "sha256.json";
  return {};
}

}  // namespace

std::string weights_sha256(const fs::path& file) {
  static std::mutex mu;
  static std::map<std::string, std::string> memo;
  std::error_code ec;
  const fs::path abs = fs::weakly_canonical(file, ec);
  const auto size = fs::file_size(file);
  const auto mtime = fs::last_write_time(file).time_since_epoch().count();
  const std::string id = cat(abs.string(), "|", size, "|", mtime);
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = memo.find(id); it != memo.end()) return it->second;
  const fs::path cache = sha_cache_file();
  io::OrderedJson table = io::OrderedJson::object();
  if (!cache.empty() && fs::exists(cache)) {
    try {
      table = io::read_json(cache);
      if (table.is_object() && table.contains(id) && table[id].is_string())
        return memo[id] = table[id].get<std::string>();
    } catch (const std::exception&) {
      table = io::OrderedJson::object();  // a damaged cache is only a cache
    }
  }
  const std::string sha = sha256_file(file);
  memo[id] = sha;
  if (!cache.empty()) {
    try {
      fs::create_directories(cache.parent_path());
      if (!table.is_object()) table = io::OrderedJson::object();
      table[id] = sha;
      io::write_file_atomically(cache, table.dump(1));
    } catch (const std::exception&) {
      // An unwritable cache folder costs a re-hash next time, nothing else.
    }
  }
  return sha;
}

std::map<std::string, torch::Tensor> read_state_dict(const fs::path& file) {
  const auto w = io::ComponentWeights::open_file(file);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : w.names()) out.emplace(name, w.get(name));
  return out;
}

}  // namespace detail
}  // namespace dro::eval
