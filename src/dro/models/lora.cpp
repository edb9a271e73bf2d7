#include "dro/models/lora.h"

#include <fnmatch.h>

#include <cmath>

#include "dro/core/error.h"
#include "dro/core/rng.h"

namespace dro::models {

const std::vector<std::string>& default_lora_targets() {
  static const std::vector<std::string> kTargets{"to_q", "to_k", "to_v", "to_out.0"};
  return kTargets;
}

std::vector<std::string> parse_lora_targets(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out.empty() ? default_lora_targets() : out;
}

std::string canonical_lora_targets(const std::string& list) {
  std::string out;
  for (const auto& t : parse_lora_targets(list)) out += (out.empty() ? "" : ",") + t;
  return out;
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
int64_t LoraTarget::out_features() const {
  return weight().size(0);
}

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
  if (o.rank <= 0)
    throw UsageError(cat("[lora] --lora-rank ", o.rank, ": expected a positive rank"));
  if (o.alpha < 0 || !std::isfinite(o.alpha))
    throw UsageError(cat("[lora] --lora-alpha ", o.alpha, ": expected >= 0"));
  if (o.dropout < 0 || o.dropout >= 1)
    throw UsageError(cat("[lora] --lora-dropout ", o.dropout, ": expected [0, 1)"));
  if (options_.targets.empty()) options_.targets = default_lora_targets();
  const auto layers = lora_capable_layers(unet);
  for (const auto& p : options_.targets) {
    bool any = false;
    for (const auto& l : layers) any = any || lora_pattern_matches(p, l.name);
    if (!any)
      throw UsageError(
          cat("[lora] --lora-targets '", p,
              "' matches no linear or conv layer of the UNet (layer "
              "names look like '",
              layers.empty() ? std::string() : layers[layers.size() / 2].name,
              "'; a pattern matches a whole name or a dotted tail of it, '*' also across dots)"));
  }
  at::Generator gen = make_generator(seed);
  torch::NoGradGuard no_grad;
  for (const auto& l : layers) {
    bool wanted = false;
    for (const auto& p : options_.targets) wanted = wanted || lora_pattern_matches(p, l.name);
    if (!wanted) continue;
    if (l.conv && (l.conv->options.groups() != 1 || !l.conv->numeric_padding()))
      throw UsageError(cat("[lora] layer '", l.name,
                           "' is a grouped or 'same'-padded conv, which takes no adapter"));
    const int64_t in = l.in_features(), out = l.out_features();
    if (o.rank > std::min(in, out))
      throw UsageError(cat("[lora] --lora-rank ", o.rank, " is larger than layer '", l.name, "' (",
                           out, " x ", in, "); use a rank of at most ", std::min(in, out),
                           " or leave the layer out of --lora-targets"));
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
    w->up = torch::zeros(up_shape, torch::TensorOptions().dtype(dtype).device(device))
                .set_requires_grad(true);
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
  if (values.size() != params_.size())
    throw std::logic_error("UnetLora::layers: wrong number of tensors");
  LoraLayers out;
  for (size_t i = 0; i < targets_.size(); ++i)
    out[targets_[i].name] =
        LoraLayer{values[2 * i].detach(), values[2 * i + 1].detach(),
                  options_.alpha > 0 ? options_.alpha : static_cast<double>(options_.rank)};
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

}  // namespace dro::models
