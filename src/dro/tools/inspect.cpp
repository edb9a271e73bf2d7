#include "dro/tools/inspect.h"

#include <iomanip>
#include <sstream>

#include "dro/io/atomic_file.h"
#include "dro/io/torch_checkpoint.h"
#include "dro/io/model_folder.h"
#include "dro/io/safetensors.h"
#include "dro/io/weights.h"
#include "dro/models/unet_config.h"
#include "dro/models/vae_config.h"
#include "dro/sched/scheduler_config.h"
#include "dro/text/clip_config.h"

namespace dro::tools {
namespace fs = std::filesystem;
using io::OrderedJson;

namespace {

OrderedJson tensor_list(const std::vector<io::TensorInfo>& infos, int64_t* params, uint64_t* bytes) {
  OrderedJson list = OrderedJson::array();
  *params = 0;
  *bytes = 0;
  for (const auto& t : infos) {
    list.push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape},
                    {"params", t.numel()}, {"bytes", t.end - t.begin}});
    *params += t.numel();
    *bytes += t.end - t.begin;
  }
  return list;
}

// Every tensor of `w` with the totals, into r["tensors"], "num_tensors", "params", "bytes".
void list_weights(const io::ComponentWeights& w, OrderedJson& r) {
  std::vector<io::TensorInfo> infos;
  for (const auto& n : w.names()) infos.push_back(w.info(n));
  int64_t params;
  uint64_t bytes;
  r["tensors"] = tensor_list(infos, &params, &bytes);
  r["num_tensors"] = infos.size();
  r["params"] = params;
  r["bytes"] = bytes;
}

// A PyTorch checkpoint file: its state dict through the safe reader.
OrderedJson inspect_checkpoint(const fs::path& path) {
  const auto w = io::ComponentWeights::open_file(path);
  OrderedJson r;
  r["kind"] = "checkpoint";
  r["path"] = path.string();
  r["file_bytes"] = fs::file_size(path);
  OrderedJson meta = OrderedJson::object();
  if (!w.state_dict_key().empty()) meta["state_dict_key"] = w.state_dict_key();
  if (!w.skipped().empty()) meta["skipped"] = w.skipped();
  r["metadata"] = meta;
  list_weights(w, r);
  return r;
}

OrderedJson inspect_file(const fs::path& path) {
  if (io::looks_like_torch_checkpoint(path)) return inspect_checkpoint(path);
  auto f = io::SafetensorsFile::open(path);
  OrderedJson r;
  r["kind"] = "safetensors";
  r["path"] = path.string();
  r["file_bytes"] = f->file_size();
  OrderedJson meta = OrderedJson::object();
  for (const auto& [k, v] : f->metadata()) meta[k] = v;
  r["metadata"] = meta;
  int64_t params;
  uint64_t bytes;
  r["tensors"] = tensor_list(f->tensors(), &params, &bytes);
  r["num_tensors"] = f->tensors().size();
  r["params"] = params;
  r["bytes"] = bytes;
  return r;
}

// A short summary of a component's config, validated through its typed struct.
OrderedJson config_summary(const fs::path& dir, const std::string& class_name) {
  OrderedJson s;
  if (class_name == "UNet2DConditionModel" || (class_name.empty() && fs::exists(dir / "config.json") &&
      io::read_json(dir / "config.json").value("_class_name", "") == "UNet2DConditionModel")) {
    auto c = models::UNetConfig::load(dir);
    s["class"] = "UNet2DConditionModel";
    s["block_out_channels"] = c.block_out_channels;
    s["down_block_types"] = c.down_block_types;
    s["num_attention_heads"] = c.num_attention_heads;
    s["cross_attention_dim"] = c.cross_attention_dim[0];
    s["sample_size"] = c.sample_size;
    if (!c.addition_embed_type.empty()) s["addition_embed_type"] = c.addition_embed_type;
  } else if (class_name == "AutoencoderKL" || (class_name.empty() && fs::exists(dir / "config.json") &&
             io::read_json(dir / "config.json").value("_class_name", "") == "AutoencoderKL")) {
    auto c = models::VaeConfig::load(dir);
    s["class"] = "AutoencoderKL";
    s["block_out_channels"] = c.block_out_channels;
    s["latent_channels"] = c.latent_channels;
    s["scaling_factor"] = c.scaling_factor;
    s["downscale"] = c.scale_factor();
  } else if (class_name.rfind("CLIPText", 0) == 0 ||
             (class_name.empty() && fs::exists(dir / "config.json") &&
              io::read_json(dir / "config.json").value("model_type", "") == "clip_text_model")) {
    auto c = text::ClipTextConfig::load(dir);
    s["class"] = c.architecture;
    s["hidden_size"] = c.hidden_size;
    s["layers"] = c.num_hidden_layers;
    s["heads"] = c.num_attention_heads;
    s["hidden_act"] = c.hidden_act;
    if (c.with_projection()) s["projection_dim"] = c.projection_dim;
  } else if (fs::exists(dir / "scheduler_config.json")) {
    auto c = sched::SchedulerConfig::load(dir);
    s["class"] = c.class_name;
    s["beta_schedule"] = c.beta_schedule;
    s["prediction_type"] = c.prediction_type;
    s["timestep_spacing"] = c.timestep_spacing;
    s["num_train_timesteps"] = c.num_train_timesteps;
  } else if (fs::exists(dir / "vocab.json")) {
    s["class"] = class_name.empty() ? "CLIPTokenizer" : class_name;
    // Plain (unordered) JSON: inserting 49k keys into an ordered object is quadratic.
    try {
      s["vocab_size"] = nlohmann::json::parse(io::read_file(dir / "vocab.json")).size();
    } catch (const nlohmann::json::exception& e) {
      throw IoError(cat("[inspect] ", (dir / "vocab.json").string(), " is not valid JSON: ", e.what()));
    }
    if (fs::exists(dir / "tokenizer_config.json")) {
      auto tc = io::read_json(dir / "tokenizer_config.json");
      if (tc.contains("model_max_length")) s["model_max_length"] = tc["model_max_length"];
      if (tc.contains("pad_token")) s["pad_token"] = tc["pad_token"];
    }
  } else if (!class_name.empty()) {
    s["class"] = class_name;
  }
  return s;
}

OrderedJson inspect_component(const fs::path& dir, const std::string& name,
                              const std::string& class_name, const std::string& variant) {
  OrderedJson r;
  r["kind"] = "component";
  r["name"] = name;
  r["path"] = dir.string();
  r["config"] = config_summary(dir, class_name);
  const bool has_weights = !fs::exists(dir / "scheduler_config.json") && !fs::exists(dir / "vocab.json");
  if (has_weights) {
    auto w = io::ComponentWeights::open(dir, variant);
    OrderedJson files = OrderedJson::array();
    for (const auto& p : w.files()) files.push_back(p.filename().string());
    r["files"] = files;
    list_weights(w, r);
  }
  return r;
}

std::string human_bytes(uint64_t b) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1);
  if (b >= (1ull << 30)) os << b / double(1ull << 30) << " GiB";
  else if (b >= (1ull << 20)) os << b / double(1ull << 20) << " MiB";
  else if (b >= (1ull << 10)) os << b / double(1ull << 10) << " KiB";
  else os << b << " B";
  return os.str();
}

void format_tensors(std::ostringstream& os, const OrderedJson& r, bool summary_only,
                    const std::string& indent) {
  if (!r.contains("tensors")) return;
  os << indent << r["num_tensors"].get<size_t>() << " tensors, " << r["params"].get<int64_t>()
     << " parameters, " << human_bytes(r["bytes"].get<uint64_t>()) << "\n";
  if (summary_only) return;
  size_t width = 0;
  for (const auto& t : r["tensors"]) width = std::max(width, t["name"].get<std::string>().size());
  for (const auto& t : r["tensors"]) {
    std::string shape = "[";
    for (size_t i = 0; i < t["shape"].size(); ++i)
      shape += (i ? ", " : "") + std::to_string(t["shape"][i].get<int64_t>());
    shape += "]";
    os << indent << "  " << std::left << std::setw(int(width)) << t["name"].get<std::string>() << "  "
       << std::setw(5) << t["dtype"].get<std::string>() << " " << std::setw(18) << shape << " "
       << std::right << std::setw(10) << t["params"].get<int64_t>() << "\n";
  }
}

}  // namespace

OrderedJson inspect(const fs::path& path, const std::string& variant) {
  switch (io::classify_path(path)) {
    case io::PathKind::kSafetensorsFile:
      return inspect_file(path);
    case io::PathKind::kComponentFolder:
      return inspect_component(path, path.filename().string(), "", variant);
    case io::PathKind::kModelFolder: {
      auto m = io::ModelFolder::open(path);
      OrderedJson r;
      r["kind"] = "model";
      r["path"] = path.string();
      r["pipeline"] = m.pipeline_class;
      r["sdxl"] = m.is_sdxl();
      OrderedJson comps = OrderedJson::array();
      int64_t params = 0;
      uint64_t bytes = 0;
      for (const auto& c : m.components) {
        OrderedJson cj = inspect_component(c.dir, c.name, c.class_name, variant);
        cj["library"] = c.library;
        cj["class"] = c.class_name;
        if (cj.contains("params")) {
          params += cj["params"].get<int64_t>();
          bytes += cj["bytes"].get<uint64_t>();
        }
        comps.push_back(cj);
      }
      r["components"] = comps;
      r["params"] = params;
      r["bytes"] = bytes;
      return r;
    }
  }
  return {};
}

std::string format_inspect(const OrderedJson& r, bool summary_only) {
  std::ostringstream os;
  const std::string kind = r["kind"];
  if (kind == "safetensors" || kind == "checkpoint") {
    os << r["path"].get<std::string>() << (kind == "checkpoint" ? ": PyTorch checkpoint, " : ": safetensors, ") << human_bytes(r["file_bytes"].get<uint64_t>())
       << "\n";
    if (!r["metadata"].empty()) os << "  metadata: " << r["metadata"].dump() << "\n";
    format_tensors(os, r, summary_only, "  ");
  } else if (kind == "component") {
    os << r["name"].get<std::string>() << " (" << r["path"].get<std::string>() << ")\n";
    if (!r["config"].empty()) os << "  config: " << r["config"].dump() << "\n";
    if (r.contains("files")) os << "  files: " << r["files"].dump() << "\n";
    format_tensors(os, r, summary_only, "  ");
  } else {
    os << r["path"].get<std::string>() << ": " << r["pipeline"].get<std::string>() << ", "
       << r["components"].size() << " components, " << r["params"].get<int64_t>() << " parameters, "
       << human_bytes(r["bytes"].get<uint64_t>()) << "\n";
    for (const auto& c : r["components"]) {
      os << "\n[" << c["name"].get<std::string>() << "] " << c["library"].get<std::string>() << " "
         << c["class"].get<std::string>() << "\n";
      if (!c["config"].empty()) os << "  config: " << c["config"].dump() << "\n";
      if (c.contains("files")) os << "  files: " << c["files"].dump() << "\n";
      format_tensors(os, c, summary_only, "  ");
    }
  }
  return os.str();
}

}  // namespace dro::tools
