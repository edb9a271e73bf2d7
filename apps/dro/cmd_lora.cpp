// dro merge-lora: LoRA files merged into a UNet, written as a diffusers UNet folder.
// dro convert-lora: a LoRA file rewritten in the diffusers / peft or the webui / kohya layout.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "dro/core/device.h"
#include "dro/core/error.h"
#include "dro/io/model_folder.h"
#include "dro/models/lora_file.h"
#include "dro/models/unet.h"

namespace dro::app {
namespace {
namespace fs = std::filesystem;

// The UNet of --model (or --unet) in float32 on the CPU.
models::UNet2DConditionModel load_base_unet(const std::string& model, const std::string& unet,
                                            const std::string& variant) {
  nn::LoadOptions lo;
  if (!unet.empty()) return models::load_unet(unet, lo, "");
  const auto folder = io::ModelFolder::open(model);
  return models::load_unet(folder.component("unet").dir, lo, variant);
}

void add_model_options(CLI::App* cmd, std::string& model, std::string& unet, std::string& variant) {
  cmd->add_option("--model", model, "diffusers model folder whose unet/ the LoRA belongs to");
  cmd->add_option("--unet", unet, "a UNet folder instead of the model's (e.g. LOGDIR/ckpt-N/unet)");
  cmd->add_option("--variant", variant, "weights variant of the model's UNet, e.g. fp16");
}

void check_model_options(const std::string& what, const std::string& model,
                         const std::string& unet) {
  if (model.empty() == unet.empty())
    throw UsageError(cat("[", what, "] give --model DIR or --unet DIR (one of them)"));
}

}  // namespace

Action register_merge_lora(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "merge-lora",
      "Merge LoRA files into a UNet's weights and write the result as a diffusers UNet folder "
      "(for dro sample --unet, diffusers, or any tool that reads UNet folders)");
  struct Opts {
    std::string model, unet, variant, out, save_dtype = "fp32";
    std::vector<std::string> loras;
    bool overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  add_model_options(cmd, o->model, o->unet, o->variant);
  cmd->add_option("--lora", o->loras,
                  "LoRA file, FILE or FILE:SCALE (scale 1 by default); repeatable, merged in order")
      ->required();
  cmd->add_option("--out", o->out,
                  "UNet folder to write (config.json + diffusion_pytorch_model.safetensors)")
      ->required();
  cmd->add_option("--save-dtype", o->save_dtype, "dtype of the written weights: fp32 | bf16 | fp16")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_flag("--overwrite", o->overwrite, "replace --out when it exists");
  return [o]() {
    check_model_options("merge-lora", o->model, o->unet);
    const fs::path out(o->out);
    if (fs::exists(out) && !o->overwrite)
      throw UsageError(
          cat("[merge-lora] --out ", out.string(), " exists (pass --overwrite to replace it)"));
    std::vector<models::LoraSpec> specs;
    for (const auto& text : o->loras) {
      specs.push_back(models::parse_lora_spec(text));
      if (!fs::is_regular_file(specs.back().file))
        throw UsageError(cat("[merge-lora] --lora ", text, ": no such file"));
    }
    auto unet = load_base_unet(o->model, o->unet, o->variant);
    models::merge_lora_files(*unet, specs);
    // Written beside and renamed, so a crash leaves the old folder or none, never half of one.
    const fs::path tmp = out.string() + ".tmp." + std::to_string(::getpid());
    fs::remove_all(tmp);
    models::save_unet(tmp, unet, dtype_named(o->save_dtype, "--save-dtype"));
    std::error_code ec;
    fs::remove_all(out, ec);
    fs::rename(tmp, out);
    std::cout << "[merge-lora] wrote " << out.string() << "\n";
    return 0;
  };
}

Action register_convert_lora(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert-lora",
      "Rewrite a LoRA file in the diffusers / peft layout (pipe.load_lora_weights) or the "
      "webui / kohya layout (ComfyUI, AUTOMATIC1111, stable-diffusion.cpp)");
  struct Opts {
    std::string input, model, unet, variant, out, to, dtype = "fp32";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("input", o->input, "LoRA safetensors file in either layout")->required();
  add_model_options(cmd, o->model, o->unet, o->variant);
  cmd->add_option("--to", o->to, "diffusers | kohya")
      ->check(CLI::IsMember({"diffusers", "kohya"}))
      ->required();
  cmd->add_option("--out", o->out, "safetensors file to write")->required();
  cmd->add_option("--dtype", o->dtype, "fp32 | bf16 | fp16")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  return [o]() {
    check_model_options("convert-lora", o->model, o->unet);
    std::error_code ec;
    if (fs::exists(o->out) && fs::equivalent(o->input, o->out, ec))
      throw UsageError(cat("[convert-lora] --out ", o->out, " is the input itself"));
    auto unet = load_base_unet(o->model, o->unet, o->variant);
    const auto layers = models::load_lora_file(o->input, *unet);
    if (o->to == "kohya")
      models::save_lora_kohya(o->out, layers, unet->config(), dtype_named(o->dtype));
    else
      models::save_lora_diffusers(o->out, layers, dtype_named(o->dtype));
    std::cout << "[convert-lora] wrote " << o->out << " (" << layers.size() << " layers, " << o->to
              << " layout)\n";
    return 0;
  };
}

}  // namespace dro::app
