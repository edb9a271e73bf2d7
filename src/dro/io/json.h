// JSON files and typed field access with errors that name the file and the field.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "dro/core/error.h"

namespace dro::io {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Reads and parses a JSON file; IoError naming the file when missing or malformed.
OrderedJson read_json(const std::filesystem::path& path);

// Rewrites Python's non-standard -Infinity / Infinity / NaN tokens (outside strings) as JSON.
std::string replace_python_constants(const std::string& text);

// Writes JSON atomically (temporary file in the same folder, then rename).
void write_json(const std::filesystem::path& path, const OrderedJson& j, int indent = 2);

// Reads `key` from object `j` as T. A missing key or a JSON null gives `fallback`; a value of the
// wrong type is a UsageError naming `where` (usually the file) and the key.
template <typename T>
T get_or(const OrderedJson& j, const std::string& key, const T& fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    throw UsageError(cat("[config] ", where, ": field '", key, "' has the wrong type (found ",
                         it->type_name(), ": ", it->dump(), ")"));
  }
}

// Like get_or but the key must be present and not null.
template <typename T>
T get_required(const OrderedJson& j, const std::string& key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    throw UsageError(cat("[config] ", where, ": required field '", key, "' is missing"));
  return get_or<T>(j, key, T{}, where);
}

// Optional field: nullopt when missing or null.
template <typename T>
std::optional<T> get_optional(const OrderedJson& j, const std::string& key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return get_or<T>(j, key, T{}, where);
}

}  // namespace dro::io
