// `dro inspect`: what a safetensors file, a component folder or a whole model folder holds.
#pragma once

#include <filesystem>
#include <string>

#include "dro/io/json.h"

namespace dro::tools {

// Machine-readable description: {"kind", "path", "components": [...]} for model folders,
// {"kind", "path", "config", "files", "tensors": [{name, dtype, shape, params, bytes}], ...} else.
io::OrderedJson inspect(const std::filesystem::path& path, const std::string& variant = "");

// Human-readable rendering of `inspect`'s result; tensors listed unless `summary_only`.
std::string format_inspect(const io::OrderedJson& report, bool summary_only = false);

}  // namespace dro::tools
