// Flat TOML option files: `key = value` lines (strings, numbers, booleans, arrays as in JSON),
// `#` comments, and at most the one table header the caller names (e.g. `[train]`). Enough for
// option files; not a TOML parser (no nested tables, dates or multi-line strings).
#pragma once

#include <filesystem>
#include <string>

#include "dro/io/json.h"

namespace dro::io {

// The file as a JSON object. UsageError naming the file and line for anything else.
OrderedJson read_flat_toml(const std::filesystem::path& path, const std::string& table = "");

}  // namespace dro::io
