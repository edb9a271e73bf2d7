// dro convert: a PyTorch checkpoint (read without executing it) or a component folder's weights
// to one safetensors file.
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/io/safetensors.h"
#include "dro/io/weights.h"

namespace dro::app {

Action register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Write the state dict of a PyTorch checkpoint (.pt/.pth/.bin, read without "
      "running any of its code) or of a component folder as one safetensors file");
  struct Opts {
    std::string input;
    std::string out;
    std::string key;
    std::string dtype = "keep";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("input", o->input, "checkpoint file, safetensors file or component folder")
      ->required();
  cmd->add_option("--out", o->out, "safetensors file to write")->required();
  cmd->add_option("--key", o->key,
                  "top-level key holding the state dict (default: the top level, else the first of "
                  "state_dict, model, module, model_state_dict, ema)");
  cmd->add_option("--dtype", o->dtype,
                  "floating-point tensors as keep|fp32|fp16|bf16 (others keep theirs)")
      ->check(CLI::IsMember({"keep", "fp32", "fp16", "bf16"}));
  return [o]() {
    namespace fs = std::filesystem;
    const fs::path in(o->input), out(o->out);
    std::error_code ec;
    if (fs::exists(out) && fs::equivalent(in, out, ec))
      throw UsageError(cat("[convert] --out ", out.string(), " is the input itself"));
    const auto weights = io::ComponentWeights::open_file(in, o->key);
    const auto names = weights.names();
    if (names.empty()) throw IoError(cat("[convert] ", in.string(), ": no tensors to write"));

    std::optional<torch::Dtype> cast;
    if (o->dtype == "fp32") cast = torch::kFloat32;
    if (o->dtype == "fp16") cast = torch::kFloat16;
    if (o->dtype == "bf16") cast = torch::kBFloat16;
    // Tensors sharing a storage (tied weights) are written each on its own: safetensors has no
    // sharing, and save_safetensors copies every tensor's bytes.
    io::NamedTensors tensors;
    int64_t params = 0;
    uint64_t bytes = 0;
    for (const auto& name : names) {
      torch::Tensor t = weights.get(name);
      if (cast && t.is_floating_point() && t.scalar_type() != *cast) t = t.to(*cast);
      params += t.numel();
      bytes += static_cast<uint64_t>(t.numel()) * t.element_size();
      tensors.emplace_back(name, std::move(t));
    }
    io::save_safetensors(out, tensors, {{"format", "pt"}});

    std::cout << "wrote " << out.string() << ": " << tensors.size() << " tensors, " << params
              << " parameters, " << bytes << " bytes of tensor data";
    if (o->dtype != "keep") std::cout << " (floating point as " << o->dtype << ")";
    std::cout << "\nfrom " << in.string();
    if (!weights.state_dict_key().empty())
      std::cout << " (the state dict under '" << weights.state_dict_key() << "')";
    if (weights.files().size() > 1) std::cout << " (" << weights.files().size() << " files)";
    std::cout << "\n";
    if (!weights.skipped().empty()) {
      std::cout << "left out " << weights.skipped().size() << " non-tensor entries:";
      for (size_t i = 0; i < weights.skipped().size() && i < 8; ++i)
        std::cout << " '" << weights.skipped()[i] << "'";
      if (weights.skipped().size() > 8) std::cout << " ...";
      std::cout << "\n";
    }
    return 0;
  };
}

}  // namespace dro::app
