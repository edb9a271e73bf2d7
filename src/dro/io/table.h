// Tabular manifests: JSON Lines (one object per line) or CSV with a header row (RFC 4180 quoting),
// read as a list of JSON objects (CSV values are strings).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "dro/io/json.h"

namespace dro::io {

// IoError naming the file and the line / row for a malformed one. `who` prefixes messages.
std::vector<OrderedJson> read_table(const std::filesystem::path& file, const std::string& who);

// The CSV rows of `text` (fields unquoted); IoError naming `where` for an unclosed quote.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& where);

}  // namespace dro::io
