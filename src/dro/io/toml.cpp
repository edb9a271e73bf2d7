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

// Position of the first byte of `s` that is not part of valid UTF-8 (RFC 3629: no overlong forms,
// surrogates or code points past U+10FFFF), or npos. TOML files are UTF-8, and a literal string
// is copied into the JSON unchecked: nlohmann would throw type_error when writing it back.
size_t invalid_utf8_at(const std::string& s) {
  const auto byte = [&](size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  // s[k] is a continuation byte in [lo, hi] (narrower after E0, ED, F0 and F4).
  const auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return byte(k) >= lo && byte(k) <= hi;
  };
  for (size_t i = 0; i < s.size();) {
    const unsigned c = byte(i);
    size_t n = 0;
    if (c < 0x80) {
      n = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = cont(i + 1) ? 2 : 0;
    } else if (c >= 0xE0 && c <= 0xEF) {
      const bool ok = cont(i + 1, c == 0xE0 ? 0xA0 : 0x80, c == 0xED ? 0x9F : 0xBF) && cont(i + 2);
      n = ok ? 3 : 0;
    } else if (c >= 0xF0 && c <= 0xF4) {
      const bool ok = cont(i + 1, c == 0xF0 ? 0x90 : 0x80, c == 0xF4 ? 0x8F : 0xBF) &&
                      cont(i + 2) && cont(i + 3);
      n = ok ? 4 : 0;
    }
    if (n == 0) return i;
    i += n;
  }
  return std::string::npos;
}

}  // namespace

OrderedJson read_flat_toml(const std::filesystem::path& path, const std::string& table) {
  std::istringstream in(read_file(path));
  OrderedJson j = OrderedJson::object();
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (const size_t bad = invalid_utf8_at(line); bad != std::string::npos)
      throw UsageError(cat("[config] ", path.string(), ":", n, ": byte ", bad + 1,
                           " is not valid UTF-8 (TOML files are UTF-8 text)"));
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
