#include "dro/io/json.h"

#include "dro/io/atomic_file.h"

namespace dro::io {

std::string replace_python_constants(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
    } else if (text.compare(i, 9, "-Infinity") == 0) {
      out += "-1.7976931348623157e308";
      i += 8;
    } else if (text.compare(i, 8, "Infinity") == 0) {
      out += "1.7976931348623157e308";
      i += 7;
    } else if (text.compare(i, 3, "NaN") == 0) {
      out += "null";
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

OrderedJson read_json(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw IoError(cat("[json] ", path.string(), ": file not found"));
  const std::string text = read_file(path);
  try {
    return OrderedJson::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    // Python's json writes -inf/inf/nan as -Infinity/Infinity/NaN (e.g. diffusers' DPM-Solver
    // lambda_min_clipped); read them as the largest doubles / null.
    const std::string fixed = replace_python_constants(text);
    if (fixed != text) {
      try {
        return OrderedJson::parse(fixed);
      } catch (const nlohmann::json::exception&) {
      }
    }
    throw IoError(cat("[json] ", path.string(), ": not valid JSON (", e.what(), ")"));
  }
}

void write_json(const std::filesystem::path& path, const OrderedJson& j, int indent) {
  write_file_atomically(path, j.dump(indent) + "\n");
}

}  // namespace dro::io
