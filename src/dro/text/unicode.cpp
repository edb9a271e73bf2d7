#include "dro/text/unicode.h"

#include <algorithm>
#include <iterator>
#include <vector>

namespace dro::text {

namespace {

struct CodeRange {
  char32_t lo, hi;
};
struct LowerRun {
  char32_t lo, hi;
  int32_t delta;
  uint32_t stride;
};

#include "dro/text/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodeRange (&table)[N], char32_t cp) {
  // First range whose upper end is >= cp.
  const CodeRange* it = std::lower_bound(std::begin(table), std::end(table), cp,
                                         [](const CodeRange& r, char32_t c) { return r.hi < c; });
  return it != std::end(table) && it->lo <= cp;
}

char32_t lower_simple(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const LowerRun* it = std::lower_bound(std::begin(kLowerRuns), std::end(kLowerRuns), cp,
                                        [](const LowerRun& r, char32_t c) { return r.hi < c; });
  if (it == std::end(kLowerRuns) || cp < it->lo || (cp - it->lo) % it->stride != 0) return cp;
  return static_cast<char32_t>(static_cast<int64_t>(cp) + it->delta);
}

}  // namespace

Utf8Char decode_utf8(std::string_view s, size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return {b0, 1, true};
  size_t len;
  char32_t cp, min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {b0, 1, false};  // continuation byte or 0xF8..0xFF
  }
  if (pos + len > s.size()) return {b0, 1, false};
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return {b0, 1, false};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {b0, 1, false};
  return {cp, len, true};
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(kLetterRanges, cp);
}

bool is_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(kNumberRanges, cp);
}

bool is_space(char32_t cp) {
  return in_ranges(kSpaceRanges, cp);
}

bool is_unmatched_by_clip_pattern(char32_t cp) {
  return std::find(std::begin(kUnmatched), std::end(kUnmatched), cp) != std::end(kUnmatched);
}

std::string lower_utf8(std::string_view s) {
  std::vector<Utf8Char> chars;
  chars.reserve(s.size());
  for (size_t pos = 0; pos < s.size(); pos += chars.back().length)
    chars.push_back(decode_utf8(s, pos));
  auto ignorable = [&](size_t i) {
    return chars[i].valid && in_ranges(kCaseIgnorableRanges, chars[i].cp);
  };
  auto cased = [&](size_t i) { return chars[i].valid && in_ranges(kCasedRanges, chars[i].cp); };

  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t i = 0; i < chars.size(); pos += chars[i].length, ++i) {
    const Utf8Char& c = chars[i];
    if (!c.valid) {
      out += s[pos];
    } else if (c.cp == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE
      out += 'i';
      append_utf8(out, 0x307);
    } else if (c.cp == 0x3A3) {  // GREEK CAPITAL LETTER SIGMA
      size_t before = i;
      while (before > 0 && ignorable(before - 1)) --before;
      size_t after = i + 1;
      while (after < chars.size() && ignorable(after)) ++after;
      const bool final = before > 0 && cased(before - 1) && !(after < chars.size() && cased(after));
      append_utf8(out, final ? 0x3C2 : 0x3C3);
    } else {
      append_utf8(out, lower_simple(c.cp));
    }
  }
  return out;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Char c = decode_utf8(s, pos);
    if (c.valid)
      out.append(s.substr(pos, c.length));
    else
      append_utf8(out, 0xFFFD);
    pos += c.length;
  }
  return out;
}

}  // namespace dro::text
