#include "dro/models/lora.h"

#include <fnmatch.h>

#include <cmath>
#include <iostream>
#include <sstream>

#include "dro/core/error.h"
#include "dro/core/rng.h"

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
  for (size_t i = from; i < parts.size(); ++i) out += (i > from ? std::string(1, sep) : "") + parts[i];
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
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
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
      {"norm1", "in_layers.0"}, {"conv1", "in_layers.2"}, {"time_emb_proj", "emb_layers.1"},
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

const std::vector<std::string>& default_lora_targets() {
  static const std::vector<std::string> kTargets{"to_q", "to_k", "to_v", "to_out.0"};
  return kTargets;
}

bool lora_pattern_matches(const std::string& pattern, const std::string& name) {
  if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
    if (fnmatch(pattern.c_str(), name.c_str() + dot + 1, 0) == 0) return true;
  return false;
}

int64_t LoraTarget::in_features() const {
  const auto& w = weight();
  return w.numel() / w.size(0);
}
int64_t LoraTarget::out_features() const { return weight().size(0); }

std::vector<LoraTarget> lora_capable_layers(UNet2DConditionModelImpl& unet) {
  std::vector<LoraTarget> out;
  for (const auto& item : unet.named_modules("", /*include_self=*/false)) {
    LoraTarget t;
    t.name = item.key();
    t.linear = dynamic_cast<nn::LinearImpl*>(item.value().get());
    t.conv = dynamic_cast<nn::Conv2dImpl*>(item.value().get());
    if (t.linear || t.conv) out.push_back(t);
  }
  return out;
}

UnetLora::UnetLora(UNet2DConditionModelImpl& unet, const LoraOptions& o, torch::Dtype dtype,
                   const torch::Device& device, uint64_t seed)
    : options_(o) {
  if (o.rank <= 0) throw UsageError(cat("[lora] --lora-rank ", o.rank, ": expected a positive rank"));
  if (o.alpha < 0 || !std::isfinite(o.alpha)) throw UsageError(cat("[lora] --lora-alpha ", o.alpha, ": expected >= 0"));
  if (o.dropout < 0 || o.dropout >= 1) throw UsageError(cat("[lora] --lora-dropout ", o.dropout, ": expected [0, 1)"));
  if (options_.targets.empty()) options_.targets = default_lora_targets();
  const auto layers = lora_capable_layers(unet);
  for (const auto& p : options_.targets) {
    bool any = false;
    for (const auto& l : layers) any = any || lora_pattern_matches(p, l.name);
    if (!any)
      throw UsageError(cat("[lora] --lora-targets '", p, "' matches no linear or conv layer of the UNet (layer "
                           "names look like '", layers.empty() ? std::string() : layers[layers.size() / 2].name,
                           "'; a pattern matches a whole name or a dotted tail of it, '*' also across dots)"));
  }
  at::Generator gen = make_generator(seed);
  torch::NoGradGuard no_grad;
  for (const auto& l : layers) {
    bool wanted = false;
    for (const auto& p : options_.targets) wanted = wanted || lora_pattern_matches(p, l.name);
    if (!wanted) continue;
    if (l.conv && (l.conv->options.groups() != 1 || !l.conv->numeric_padding()))
      throw UsageError(cat("[lora] layer '", l.name, "' is a grouped or 'same'-padded conv, which takes no adapter"));
    const int64_t in = l.in_features(), out = l.out_features();
    if (o.rank > std::min(in, out))
      throw UsageError(cat("[lora] --lora-rank ", o.rank, " is larger than layer '", l.name, "' (", out, " x ", in,
                           "); use a rank of at most ", std::min(in, out), " or leave the layer out of --lora-targets"));
    std::vector<int64_t> down_shape{o.rank, in}, up_shape{out, o.rank};
    if (l.conv) {
      const auto& w = l.conv->weight;
      down_shape = {o.rank, w.size(1), w.size(2), w.size(3)};
      up_shape = {out, o.rank, 1, 1};
    }
    // peft: kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); B = 0.
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::Tensor down = torch::empty(down_shape, torch::kFloat32).uniform_(-bound, bound, gen);
    auto w = std::make_shared<nn::LoraWeights>();
    w->down = down.to(device, dtype).set_requires_grad(true);
    w->up = torch::zeros(up_shape, torch::TensorOptions().dtype(dtype).device(device)).set_requires_grad(true);
    w->scale = options_.scale();
    w->dropout = o.dropout;
    l.slots()->trained = w;
    targets_.push_back(l);
    trained_.push_back(w);
    params_.push_back(w->down);
    params_.push_back(w->up);
    names_.push_back(l.name + ".lora_A.weight");
    names_.push_back(l.name + ".lora_B.weight");
  }
}

UnetLora::~UnetLora() {
  for (auto& t : targets_) {
    t.slots()->trained.reset();
    t.slots()->policy.reset();
  }
}

int64_t UnetLora::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.numel();
  return n;
}

void UnetLora::set_dropout_generator(std::shared_ptr<at::Generator> gen) {
  for (auto& w : trained_) w->generator = gen;
}

void UnetLora::add_policy_slot() {
  if (has_policy_slot()) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < targets_.size(); ++i) {
    auto w = std::make_shared<nn::LoraWeights>(*trained_[i]);
    w->down = trained_[i]->down.detach().clone();
    w->up = trained_[i]->up.detach().clone();
    w->dropout = 0;  // the policy samples; it never trains
    targets_[i].slots()->policy = w;
    policy_.push_back(w->down);
    policy_.push_back(w->up);
  }
}

void UnetLora::copy_to_policy() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < policy_.size(); ++i) policy_[i].copy_(params_[i]);
}

LoraLayers UnetLora::layers(const std::vector<torch::Tensor>& values) const {
  if (values.size() != params_.size()) throw std::logic_error("UnetLora::layers: wrong number of tensors");
  LoraLayers out;
  for (size_t i = 0; i < targets_.size(); ++i)
    out[targets_[i].name] = LoraLayer{values[2 * i].detach(), values[2 * i + 1].detach(),
                                      options_.alpha > 0 ? options_.alpha : static_cast<double>(options_.rank)};
  return out;
}

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
    t.emplace_back("unet." + name + (attn ? ".lora.up.weight" : ".lora_B.weight"),
                   (l.up.detach().to(torch::kCPU, torch::kFloat32) * l.scale()).to(dtype).contiguous());
  }
  io::save_safetensors(path, t, {{"format", "pt"}});
}

void save_lora_kohya(const fs::path& path, const LoraLayers& layers, const UNetConfig& config, torch::Dtype dtype) {
  // sd-scripts names SD1.x/2.x modules as diffusers does and SDXL modules as the ldm UNet does.
  const bool ldm = config.addition_embed_type == "text_time";
  io::NamedTensors t;
  for (const auto& [name, l] : layers) {
    const std::string ldm_name = ldm ? ldm_module_name(name, config) : "";
    const std::string key = "lora_unet_" + underscored(ldm_name.empty() ? name : ldm_name);
    t.emplace_back(key + ".lora_down.weight", l.down.detach().to(torch::kCPU, dtype).contiguous());
    t.emplace_back(key + ".lora_up.weight", l.up.detach().to(torch::kCPU, dtype).contiguous());
    t.emplace_back(key + ".alpha", torch::tensor(l.alpha > 0 ? l.alpha : static_cast<double>(l.rank())).to(dtype));
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
      {".lora_A.weight", kDown}, {".lora.down.weight", kDown}, {".lora_linear_layer.down.weight", kDown},
      {".lora_down.weight", kDown}, {".lora_B.weight", kUp}, {".lora.up.weight", kUp},
      {".lora_linear_layer.up.weight", kUp}, {".lora_up.weight", kUp}, {".alpha", kAlpha}};
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
      for (const char* p : {"q", "k", "v"}) k = replace_all(k, cat(".to_", p, "_lora."), cat(".to_", p, ".lora."));
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
        throw IoError(cat("[lora] ", path.string(), ": key '", key, "' is not a LoRA down/up weight or alpha of the "
                          "diffusers, peft or kohya layouts (LoHa, LoKr and DoRA files are not supported)"));
      auto it = by_prefix.find(prefix);
      if (it == by_prefix.end())
        throw IoError(cat("[lora] ", path.string(), ": key '", key, "' names no linear or conv layer of this UNet ('",
                          prefix, "'); a LoRA for another architecture?"));
      Found& f = found[it->second];
      const torch::Tensor v = file->get(key, torch::kFloat32).clone();
      if (*part == kDown) {
        f.down = v;
        f.down_key = key;
      } else if (*part == kUp) {
        f.up = v;
        f.up_key = key;
      } else {
        if (v.numel() != 1) throw IoError(cat("[lora] ", path.string(), ": '", key, "' should hold one number"));
        f.alpha = v.item<double>();
      }
    }
  next:;
  }
  LoraLayers out;
  for (auto& [i, f] : found) {
    const LoraTarget& t = targets[i];
    if (!f.down.defined() || !f.up.defined())
      throw IoError(cat("[lora] ", path.string(), ": '", f.down.defined() ? f.down_key : f.up_key, "' has no ",
                        f.down.defined() ? "up" : "down", " weight beside it"));
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
      const bool reshapable = v.numel() == n && v.size(0) == shape[0] && v.flatten(1).size(1) == n / shape[0];
      if (!same && !(reshapable && (v.dim() == 2 || v.dim() == 4)))
        throw IoError(cat("[lora] ", path.string(), ": '", key, "' has shape ", shape_text(v.sizes()), ", layer '",
                          t.name, "' (weight ", shape_text(w.sizes()), ") needs ", shape_text(shape),
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

void merge_lora(UNet2DConditionModelImpl& unet, const LoraLayers& layers, double multiplier) {
  torch::NoGradGuard no_grad;
  std::map<std::string, LoraTarget> by_name;
  for (const auto& t : lora_capable_layers(unet)) by_name[t.name] = t;
  for (const auto& [name, l] : layers) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw UsageError(cat("[lora] no layer '", name, "' in this UNet"));
    torch::Tensor w = it->second.weight();
    const torch::Tensor delta = torch::mm(l.up.to(torch::kCPU, torch::kFloat32).flatten(1),
                                          l.down.to(torch::kCPU, torch::kFloat32).flatten(1)) *
                                (l.scale() * multiplier);
    w.add_(delta.view(w.sizes()).to(w.device(), w.scalar_type()));
  }
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
      if (!std::isfinite(v)) throw UsageError(cat("--lora ", text, ": the scale after ':' is not finite"));
      s.file = text.substr(0, colon);
      s.scale = v;
    }
  }
  if (s.file.empty()) throw UsageError(cat("--lora '", text, "': expected FILE or FILE:SCALE"));
  return s;
}

}  // namespace dro::models
