#include <iostream>
#include <string>

#include "commands.h"
#include "dro/tools/inspect.h"

namespace dro::app {

Action register_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "inspect", "Show what a safetensors file, a component folder (unet/, vae/ ...) or a whole "
                 "diffusers model folder holds: components, config summaries and every tensor");
  struct Opts {
    std::string path;
    std::string variant;
    bool json = false;
    bool summary = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("path", o->path, "safetensors file, component folder or model folder")->required();
  cmd->add_option("--variant", o->variant, "weights variant to read, e.g. fp16 (default: plain files)");
  cmd->add_flag("--json", o->json, "print machine-readable JSON instead of text");
  cmd->add_flag("--summary", o->summary, "omit the per-tensor listing");
  return [o]() {
    auto report = tools::inspect(o->path, o->variant);
    if (o->json) std::cout << report.dump(2) << "\n";
    else std::cout << tools::format_inspect(report, o->summary);
    return 0;
  };
}

}  // namespace dro::app
