#include "dro/models/lora_file.h"

#include <cmath>
#include <iostream>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/safetensors.h"

namespace dro::models {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

std::string join(const std::vector<std::string>& parts, size_t from, char sep) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i)
    out += (i > from ? std::string(1, sep) : "") + parts[i];
  return out;
}

std::string underscored(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

std::string shape_text(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

// diffusers' attention projections, which its scripts save as "lora.down" / "lora.up".
bool is_attention_projection(const std::string& name) {
  for (const char* p : {".to_q", ".to_k", ".to_v", ".to_out.0"})
    if (ends_with(name, p)) return true;
  return false;
}

// ResnetBlock2D's layers under their ldm names.
std::string ldm_resnet_layer(const std::string& rest) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
      {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"}};
  for (const auto& [d, l] : kMap)
    if (rest == d) return l;
  return "";
}

int64_t as_index(const std::string& s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(s);
}

}  // namespace

std::string ldm_module_name(const std::string& name, const UNetConfig& c) {
  const auto s = split(name, '.');
  if (s.empty()) return "";
  if (s[0] == "conv_in") return s.size() == 1 ? "input_blocks.0.0" : "";
  if (s[0] == "conv_norm_out") return s.size() == 1 ? "out.0" : "";
  if (s[0] == "conv_out") return s.size() == 1 ? "out.2" : "";
  if (s[0] == "time_embedding" && s.size() == 2)
    return s[1] == "linear_1" ? "time_embed.0" : s[1] == "linear_2" ? "time_embed.2" : "";
  if (s[0] == "add_embedding" && s.size() == 2)
    return s[1] == "linear_1" ? "label_emb.0.0" : s[1] == "linear_2" ? "label_emb.0.2" : "";
  // Inside a block: "<kind>.<j>.<layer...>" -> entry index, sub-module, layer name.
  auto inner = [](const std::vector<std::string>& p, size_t at, int64_t entry) -> std::string {
    if (p.size() < at + 3) return "";
    const int64_t j = as_index(p[at + 1]);
    if (j < 0) return "";
    const std::string layer = join(p, at + 2, '.');
    if (p[at] == "attentions") return cat(entry + j, ".1.", layer);
    if (p[at] == "resnets") {
      const std::string l = ldm_resnet_layer(layer);
      return l.empty() ? "" : cat(entry + j, ".0.", l);
    }
    return "";
  };
  if (s[0] == "mid_block") {
    if (s.size() < 4) return "";
    const int64_t j = as_index(s[2]);
    const std::string layer = join(s, 3, '.');
    if (s[1] == "attentions" && j == 0) return "middle_block.1." + layer;
    const std::string l = ldm_resnet_layer(layer);
    if (s[1] == "resnets" && j >= 0 && !l.empty()) return cat("middle_block.", 2 * j, ".", l);
    return "";
  }
  const int64_t i = s.size() > 1 ? as_index(s[1]) : -1;
  if (i < 0) return "";
  const auto& L = c.layers_per_block;
  if (s[0] == "down_blocks" && i < static_cast<int64_t>(L.size())) {
    int64_t start = 1;
    for (int64_t k = 0; k < i; ++k) start += L[k] + 1;
    if (s.size() == 5 && s[2] == "downsamplers" && s[3] == "0" && s[4] == "conv")
      return cat("input_blocks.", start + L[i], ".0.op");
    const std::string r = inner(s, 2, start);
    return r.empty() ? "" : "input_blocks." + r;
  }
  if (s[0] == "up_blocks" && i < static_cast<int64_t>(L.size())) {
    const std::vector<int64_t> rev(L.rbegin(), L.rend());
    int64_t start = 0;
    for (int64_t k = 0; k < i; ++k) start += rev[k] + 1;
    if (s.size() == 5 && s[2] == "upsamplers" && s[3] == "0" && s[4] == "conv") {
      const bool attention = c.up_block_types[i] == "CrossAttnUpBlock2D";
      return cat("output_blocks.", start + rev[i], attention ? ".2.conv" : ".1.conv");
    }
    const std::string r = inner(s, 2, start);
    return r.empty() ? "" : "output_blocks." + r;
  }
  return "";
}

void save_lora_diffusers(const fs::path& path, const LoraLayers& layers, torch::Dtype dtype) {
  io::NamedTensors t;
  for (const auto& [name, l] : layers) {
    const bool attn = is_attention_projection(name);
    t.emplace_back("unet." + name + (attn ? ".lora.down.weight" : ".lora_A.weight"),
                   l.down.detach().to(torch::kCPU, dtype).contiguous());
    // No alpha in this layout: loaders apply scale 1, so the scale is folded into up.
    t.emplace_back(
        "unet." + name + (attn ? ".lora.up.weight" : ".lora_B.weight"),
        (l.up.detach().to(torch::kCPU, torch::kFloat32) * l.scale()).to(dtype).contiguous());
  }
  io::save_safetensors(path, t, {{"format", "pt"}});
}

void save_lora_kohya(const fs::path& path, const LoraLayers& layers, const UNetConfig& config,
                     torch::Dtype dtype) {
  // sd-scripts names SD1.x/2.x modules as diffusers does and SDXL modules as the ldm UNet does.
  const bool ldm = config.addition_embed_type == "text_time";
  io::NamedTensors t;
  for (const auto& [name, l] : layers) {
    const std::string ldm_name = ldm ? ldm_module_name(name, config) : "";
    const std::string key = "lora_unet_" + underscored(ldm_name.empty() ? name : ldm_name);
    t.emplace_back(key + ".lora_down.weight", l.down.detach().to(torch::kCPU, dtype).contiguous());
    t.emplace_back(key + ".lora_up.weight", l.up.detach().to(torch::kCPU, dtype).contiguous());
    t.emplace_back(key + ".alpha",
                   torch::tensor(l.alpha > 0 ? l.alpha : static_cast<double>(l.rank())).to(dtype));
  }
  io::save_safetensors(path, t, {{"format", "pt"}});
}

LoraLayers load_lora_file(const fs::path& path, UNet2DConditionModelImpl& unet) {
  if (!fs::exists(path)) throw IoError(cat("[lora] ", path.string(), ": no such file"));
  const auto file = io::SafetensorsFile::open(path);
  const auto targets = lora_capable_layers(unet);
  std::map<std::string, size_t> by_prefix;
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string& n = targets[i].name;
    by_prefix[n] = i;
    by_prefix["unet." + n] = i;
    by_prefix["lora_unet_" + underscored(n)] = i;
    const std::string l = ldm_module_name(n, unet.config());
    if (!l.empty()) by_prefix["lora_unet_" + underscored(l)] = i;
  }
  enum Part { kDown, kUp, kAlpha };
  static const std::pair<const char*, Part> kSuffixes[] = {
      {".lora_A.weight", kDown},
      {".lora.down.weight", kDown},
      {".lora_linear_layer.down.weight", kDown},
      {".lora_down.weight", kDown},
      {".lora_B.weight", kUp},
      {".lora.up.weight", kUp},
      {".lora_linear_layer.up.weight", kUp},
      {".lora_up.weight", kUp},
      {".alpha", kAlpha}};
  struct Found {
    torch::Tensor down, up;
    double alpha = 0;
    std::string down_key, up_key;
  };
  std::map<size_t, Found> found;
  int64_t skipped = 0;
  for (const auto& info : file->tensors()) {
    const std::string& key = info.name;
    for (const char* te : {"lora_te", "text_encoder.", "text_encoder_2.", "te."})
      if (key.rfind(te, 0) == 0) {
        ++skipped;
        goto next;
      }
    {
      // The older diffusers spellings: attn processors and "to_q_lora.down".
      std::string k = replace_all(key, ".processor.", ".");
      for (const char* p : {"q", "k", "v"})
        k = replace_all(k, cat(".to_", p, "_lora."), cat(".to_", p, ".lora."));
      k = replace_all(k, ".to_out_lora.", ".to_out.0.lora.");
      const Part* part = nullptr;
      std::string prefix;
      for (const auto& [suffix, p] : kSuffixes)
        if (ends_with(k, suffix)) {
          part = &p;
          prefix = k.substr(0, k.size() - std::string(suffix).size());
          break;
        }
      if (!part)
        throw IoError(
            cat("[lora] ", path.string(), ": key '", key,
                "' is not a LoRA down/up weight or alpha of the "
                "diffusers, peft or kohya layouts (LoHa, LoKr and DoRA files are not supported)"));
      auto it = by_prefix.find(prefix);
      if (it == by_prefix.end())
        throw IoError(cat("[lora] ", path.string(), ": key '", key,
                          "' names no linear or conv layer of this UNet ('", prefix,
                          "'); a LoRA for another architecture?"));
      Found& f = found[it->second];
      const torch::Tensor v = file->get(key, torch::kFloat32).clone();
      if (*part == kDown) {
        f.down = v;
        f.down_key = key;
      } else if (*part == kUp) {
        f.up = v;
        f.up_key = key;
      } else {
        if (v.numel() != 1)
          throw IoError(cat("[lora] ", path.string(), ": '", key, "' should hold one number"));
        f.alpha = v.item<double>();
      }
    }
  next:;
  }
  LoraLayers out;
  for (auto& [i, f] : found) {
    const LoraTarget& t = targets[i];
    if (!f.down.defined() || !f.up.defined())
      throw IoError(cat("[lora] ", path.string(), ": '", f.down.defined() ? f.down_key : f.up_key,
                        "' has no ", f.down.defined() ? "up" : "down", " weight beside it"));
    const int64_t r = f.down.size(0), in = t.in_features(), out_f = t.out_features();
    const auto& w = t.weight();
    // The layer's shapes; a 1x1 conv and a linear layer read each other's (SD1.5 / SDXL proj_in).
    std::vector<int64_t> down_shape{r, in}, up_shape{out_f, r};
    if (t.conv) {
      down_shape = {r, w.size(1), w.size(2), w.size(3)};
      up_shape = {out_f, r, 1, 1};
    }
    auto fit = [&](torch::Tensor& v, const std::vector<int64_t>& shape, const std::string& key) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      const bool same = v.sizes() == at::IntArrayRef(shape);
      const bool reshapable =
          v.numel() == n && v.size(0) == shape[0] && v.flatten(1).size(1) == n / shape[0];
      if (!same && !(reshapable && (v.dim() == 2 || v.dim() == 4)))
        throw IoError(cat("[lora] ", path.string(), ": '", key, "' has shape ",
                          shape_text(v.sizes()), ", layer '", t.name, "' (weight ",
                          shape_text(w.sizes()), ") needs ", shape_text(shape),
                          "; a LoRA for another architecture?"));
      v = v.reshape(shape);
    };
    fit(f.down, down_shape, f.down_key);
    fit(f.up, up_shape, f.up_key);
    out[t.name] = LoraLayer{f.down, f.up, f.alpha};
  }
  if (skipped)
    std::cerr << "[lora] " << path.string() << ": skipped " << skipped
              << " text-encoder tensors (dro applies LoRA to the UNet only)\n";
  if (out.empty()) throw IoError(cat("[lora] ", path.string(), ": no UNet LoRA weights in it"));
  return out;
}

LoraSpec parse_lora_spec(const std::string& text) {
  LoraSpec s;
  s.file = text;
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size()) {
    const std::string tail = text.substr(colon + 1);
    char* end = nullptr;
    const double v = std::strtod(tail.c_str(), &end);
    if (end && *end == '\0') {
      if (!std::isfinite(v))
        throw UsageError(cat("--lora ", text, ": the scale after ':' is not finite"));
      s.file = text.substr(0, colon);
      s.scale = v;
    }
  }
  if (s.file.empty()) throw UsageError(cat("--lora '", text, "': expected FILE or FILE:SCALE"));
  return s;
}

void merge_lora_files(UNet2DConditionModelImpl& unet, const std::vector<LoraSpec>& files) {
  for (const auto& f : files) {
    const auto layers = load_lora_file(f.file, unet);
    merge_lora(unet, layers, f.scale);
    std::cerr << "[lora] merged " << f.file.string() << " (" << layers.size() << " layers, scale "
              << f.scale << ")\n";
  }
}

}  // namespace dro::models
