#include "dro/nn/state_dict.h"

#include <map>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/safetensors.h"

namespace dro::nn {

namespace {

std::string list_some(const std::vector<std::string>& names, size_t limit = 8) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size() && i < limit; ++i) os << (i ? ", " : "") << "'" << names[i] << "'";
  if (names.size() > limit) os << " and " << names.size() - limit << " more";
  return os.str();
}

bool same_numel_1x1(const torch::Tensor& src, const torch::Tensor& dst) {
  // Legacy VAE attention stores [C, C, 1, 1] conv weights where we hold a [C, C] linear.
  return src.dim() == 4 && dst.dim() == 2 && src.size(2) == 1 && src.size(3) == 1 &&
         src.size(0) == dst.size(0) && src.size(1) == dst.size(1);
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> state_tensors(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

void load_weights(torch::nn::Module& module, const io::ComponentWeights& weights,
                  const LoadOptions& options, const std::string& where) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : weights.names())
    if (!options.ignore.count(name)) tensors.emplace(name, weights.get(name));  // views, no copy
  const auto& files = weights.files();
  load_weights(module, tensors, options, where,
               cat(files.empty() ? "" : files[0].string(), files.size() > 1 ? " and other shards" : ""));
}

void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const LoadOptions& options, const std::string& where, const std::string& source) {
  module.to(options.device, options.dtype);
  std::map<std::string, std::string> file_key_for;  // our key -> file key
  std::vector<std::string> unexpected;
  for (const auto& [file_key, t] : tensors) {
    if (options.ignore.count(file_key)) continue;
    const std::string ours = options.rename ? options.rename(file_key) : file_key;
    file_key_for[ours] = file_key;
  }
  std::vector<std::string> missing, mismatched;
  auto targets = state_tensors(module);
  std::set<std::string> ours_seen;
  for (const auto& [name, t] : targets) {
    ours_seen.insert(name);
    auto it = file_key_for.find(name);
    if (it == file_key_for.end()) {
      missing.push_back(name);
      continue;
    }
    const torch::Tensor& src = tensors.at(it->second);
    if (src.sizes() != t.sizes() && !same_numel_1x1(src, t)) {
      std::ostringstream os;
      os << name << " (file " << src.sizes() << ", model " << t.sizes() << ")";
      mismatched.push_back(os.str());
    }
  }
  for (const auto& [ours, file_key] : file_key_for)
    if (!ours_seen.count(ours)) unexpected.push_back(file_key);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream os;
    os << "[load] " << where << " (" << source << ") does not match the model:";
    if (!missing.empty()) os << "\n  missing " << missing.size() << ": " << list_some(missing);
    if (!unexpected.empty()) os << "\n  unexpected " << unexpected.size() << ": " << list_some(unexpected);
    if (!mismatched.empty()) os << "\n  wrong shape " << mismatched.size() << ": " << list_some(mismatched, 4);
    os << "\n  (is the config.json from the same model as the weights?)";
    throw IoError(os.str());
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : targets) {
    torch::Tensor src = tensors.at(file_key_for[name]);
    if (src.sizes() != t.sizes()) src = src.flatten(1);
    if (!torch::isFloatingType(src.scalar_type()) && torch::isFloatingType(t.scalar_type()))
      throw IoError(cat("[load] ", where, ": tensor '", name, "' has integer dtype in the file"));
    t.copy_(src);
  }
}

void save_component(const std::filesystem::path& dir, const torch::nn::Module& module,
                    const io::OrderedJson& config, const std::string& stem,
                    c10::optional<torch::Dtype> dtype) {
  std::filesystem::create_directories(dir);
  io::NamedTensors tensors;
  for (auto& [name, t] : state_tensors(module)) {
    torch::Tensor c = t.detach();
    if (dtype && torch::isFloatingType(c.scalar_type())) c = c.to(*dtype);
    tensors.emplace_back(name, c);
  }
  io::save_safetensors(dir / (stem + ".safetensors"), tensors, {{"format", "pt"}});
  io::write_json(dir / "config.json", config);
}

}  // namespace dro::nn
