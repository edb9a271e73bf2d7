// Subcommands of the `dro` program. Each registers its options on the app and returns the action
// to run when the subcommand is chosen.
#pragma once

#include <filesystem>
#include <functional>

#include <CLI/CLI.hpp>

namespace dro::app {

using Action = std::function<int()>;

// This program's own file (/proc/self/exe); empty when it cannot be read.
std::filesystem::path executable_path();

Action register_inspect(CLI::App& app);
Action register_sample(CLI::App& app);
Action register_train(CLI::App& app);
Action register_bench(CLI::App& app);
Action register_world(CLI::App& app);
Action register_demo(CLI::App& app);
Action register_launch(CLI::App& app);
Action register_convert(CLI::App& app);
Action register_score(CLI::App& app);
Action register_eval(CLI::App& app);
Action register_select(CLI::App& app);
Action register_prompts(CLI::App& app);
Action register_serve(CLI::App& app);
Action register_merge_lora(CLI::App& app);
Action register_convert_lora(CLI::App& app);

}  // namespace dro::app
