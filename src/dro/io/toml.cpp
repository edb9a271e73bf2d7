#include "dro/io/toml.h"

#include <sstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"

namespace dro::io {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  const auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

OrderedJson read_flat_toml(const std::filesystem::path& path, const std::string& table) {
  std::istringstream in(read_file(path));
  OrderedJson j = OrderedJson::object();
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string s = line;
    bool in_str = false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '"' && (i == 0 || s[i - 1] != '\\')) in_str = !in_str;
      if (s[i] == '\'' && !in_str) {  // a literal string runs to the next quote
        const auto close = s.find('\'', i + 1);
        if (close == std::string::npos) break;
        i = close;
        continue;
      }
      if (s[i] == '#' && !in_str) {
        s = s.substr(0, i);
        break;
      }
    }
    s = trim(s);
    if (s.empty() || (!table.empty() && s == "[" + table + "]")) continue;
    if (s[0] == '[')
      throw UsageError(cat("[config] ", path.string(), ":", n, ": only flat key = value lines",
                           table.empty() ? std::string() : cat(" and a [", table, "] table"),
                           " are supported"));
    const auto eq = s.find('=');
    if (eq == std::string::npos)
      throw UsageError(cat("[config] ", path.string(), ":", n, ": expected key = value"));
    const std::string key = trim(s.substr(0, eq));
    const std::string val = trim(s.substr(eq + 1));
    if (val.size() >= 2 && val.front() == '\'' && val.back() == '\'') {
      j[key] = val.substr(1, val.size() - 2);  // a literal string: no escapes
      continue;
    }
    try {
      // TOML scalars are valid JSON for basic strings, numbers and booleans.
      j[key] = OrderedJson::parse(val);
    } catch (const std::exception&) {
      throw UsageError(
          cat("[config] ", path.string(), ":", n, ": cannot read the value of '", key, "': ", val));
    }
  }
  return j;
}

}  // namespace dro::io
