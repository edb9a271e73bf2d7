#include "dro/io/json.h"

#include "dro/io/atomic_file.h"

namespace dro::io {

OrderedJson read_json(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw IoError(cat("[json] ", path.string(), ": file not found"));
  const std::string text = read_file(path);
  try {
    return OrderedJson::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw IoError(cat("[json] ", path.string(), ": not valid JSON (", e.what(), ")"));
  }
}

void write_json(const std::filesystem::path& path, const OrderedJson& j, int indent) {
  write_file_atomically(path, j.dump(indent) + "\n");
}

}  // namespace dro::io
