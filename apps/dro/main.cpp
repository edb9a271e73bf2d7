// dro: Diffusion-DRO for Stable Diffusion 1.5 / SDXL in one native program.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include <c10/util/Exception.h>

#include "commands.h"
#include "dro/core/compat.h"
#include "dro/core/crash.h"
#include "dro/core/error.h"

std::filesystem::path dro::app::executable_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::filesystem::path(std::string(buf, static_cast<size_t>(n))) : std::filesystem::path();
}

int main(int argc, char** argv) {
  dro::install_crash_handler("dro");
  CLI::App app{
      "dro: align text-to-image diffusion models (Stable Diffusion 1.5 / SDXL) with "
      "implicit user feedback by Diffusion Denoising Ranking Optimization"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dro ") + DRO_VERSION + " (LibTorch " +
                                        dro::compat::torch_version() + ")");
  std::vector<std::pair<CLI::App*, dro::app::Action>> commands;
  auto add = [&](dro::app::Action (*reg)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    auto action = reg(app);
    commands.emplace_back(app.get_subcommands({})[before], std::move(action));
  };
  add(dro::app::register_inspect);
  add(dro::app::register_sample);
  add(dro::app::register_train);
  add(dro::app::register_bench);
  add(dro::app::register_world);
  add(dro::app::register_demo);
  add(dro::app::register_launch);
  add(dro::app::register_convert);
  add(dro::app::register_score);
  add(dro::app::register_eval);
  add(dro::app::register_select);
  add(dro::app::register_prompts);
  add(dro::app::register_serve);
  add(dro::app::register_merge_lora);
  add(dro::app::register_convert_lora);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // One process of a data-parallel run leaves at once on error: tearing down a process group
  // whose peers are gone can block, and the launcher or the peers' timeouts do the rest.
  auto fail = [](int code, const char* what) {
    std::cerr << "error: " << what << std::endl;
    const char* ws = std::getenv("WORLD_SIZE");
    if (ws && std::atoi(ws) > 1) {
      std::fflush(nullptr);
      std::_Exit(code);
    }
    return code;
  };
  std::string running = "dro";
  try {
    for (auto& [cmd, action] : commands)
      if (cmd->parsed()) {
        running = "dro " + cmd->get_name();
        return action();
      }
  } catch (const dro::UsageError& e) {
    return fail(2, e.what());
  } catch (const c10::Error& e) {
    // LibTorch's what() appends a C++ backtrace that says nothing to a user; its own switch
    // (TORCH_SHOW_CPP_STACKTRACES=1) brings it back.
    const char* show = std::getenv("TORCH_SHOW_CPP_STACKTRACES");
    const bool backtrace = show && std::string(show) == "1";
    return fail(
        1, dro::cat("[", running, "] LibTorch: ", backtrace ? e.what() : e.what_without_backtrace())
               .c_str());
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
  return 0;
}
