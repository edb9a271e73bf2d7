// The training flags, shared by `dro train` and `dro bench train`.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "dro/train/train_config.h"

namespace dro::app {

struct TrainFlags {
  train::TrainConfig cli;  // values as parsed (defaults where not given)
  std::string config_file;
};

// Adds every option of TrainConfig to `cmd` as --kebab-case flags (official names).
void add_train_flags(CLI::App* cmd, TrainFlags& flags);

// Defaults, then the config file (JSON or flat TOML), then the flags given on the command line.
train::TrainConfig resolve_train_config(CLI::App* cmd, const TrainFlags& flags);

}  // namespace dro::app
