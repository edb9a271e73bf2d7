#include "dro/text/html_unescape.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "dro/text/unicode_normalize.h"

namespace dro::text {

namespace {

struct NamedEntity {
  const char* name;
  const char* value;
};
struct InvalidCharref {
  char32_t number, replacement;
};

#include "dro/text/html_entities.inc"

// Longest name run the reference's pattern takes: [^\t\n\f <&#;]{1,32}.
constexpr size_t kMaxNameLength = 32;
// Numbers are only compared with the code space, so parsing saturates here.
constexpr char32_t kTooLarge = 0x110000;

bool ends_name(char32_t c) {
  return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
         c == ';';
}

int hex_value(char32_t c) {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
  return -1;
}

// html._replace_charref for a numeric reference.
void append_numeric(char32_t num, std::u32string& out) {
  const InvalidCharref* it =
      std::lower_bound(std::begin(kInvalidCharrefs), std::end(kInvalidCharrefs), num,
                       [](const InvalidCharref& r, char32_t n) { return r.number < n; });
  if (it != std::end(kInvalidCharrefs) && it->number == num) {
    out += it->replacement;
    return;
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out += U'\uFFFD';
    return;
  }
  if (std::binary_search(std::begin(kInvalidCodepoints), std::end(kInvalidCodepoints), num)) return;
  out += num;
}

// The name as a byte string when every character is ASCII (every html5 name is).
bool ascii_name(std::u32string_view s, std::string& name) {
  name.clear();
  for (char32_t c : s) {
    if (c >= 0x80) return false;
    name += static_cast<char>(c);
  }
  return true;
}

}  // namespace

const char* html5_entity(std::string_view name) {
  const NamedEntity* it =
      std::lower_bound(std::begin(kHtml5Entities), std::end(kHtml5Entities), name,
                       [](const NamedEntity& e, std::string_view n) { return e.name < n; });
  if (it != std::end(kHtml5Entities) && it->name == name) return it->value;
  return nullptr;
}

std::u32string html_unescape(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  std::string name;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    if (text[i] != '&') {
      out += text[i++];
      continue;
    }
    const size_t start = i + 1;
    if (start < n && text[start] == '#') {
      // '#' [0-9]+ ';'?  or  '#' [xX] [0-9a-fA-F]+ ';'?
      size_t j = start + 1;
      const bool is_hex = j < n && (text[j] == 'x' || text[j] == 'X');
      const int base = is_hex ? 16 : 10;
      if (is_hex) ++j;
      const size_t digits = j;
      char32_t num = 0;
      while (j < n) {
        const int d = hex_value(text[j]);
        if (d < 0 || d >= base) break;
        num = std::min<char32_t>(kTooLarge, num * base + d);
        ++j;
      }
      if (j == digits) {  // "&#" without digits is no reference
        out += text[i++];
        continue;
      }
      if (j < n && text[j] == ';') ++j;
      append_numeric(num, out);
      i = j;
      continue;
    }
    size_t j = start;
    while (j < n && j - start < kMaxNameLength && !ends_name(text[j])) ++j;
    if (j == start) {
      out += text[i++];
      continue;
    }
    if (j < n && text[j] == ';') ++j;
    const std::u32string_view s = text.substr(start, j - start);
    const char* value = nullptr;
    size_t used = s.size();
    if (ascii_name(s, name)) value = html5_entity(name);
    // Otherwise the longest legacy name that is a prefix (at least two characters).
    for (size_t x = s.size() - 1; value == nullptr && x >= 2; --x) {
      if (ascii_name(s.substr(0, x), name)) {
        value = html5_entity(name);
        used = x;
      }
    }
    if (value == nullptr) {
      out += U'&';
      out.append(s);
    } else {
      out += utf8_to_u32(value);
      out.append(s.substr(used));
    }
    i = j;
  }
  return out;
}

std::string html_unescape(std::string_view text) {
  if (text.find('&') == std::string_view::npos) return std::string(text);
  return u32_to_utf8(html_unescape(utf8_to_u32(text)));
}

}  // namespace dro::text
