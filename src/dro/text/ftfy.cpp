#include "dro/text/ftfy.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <unordered_map>

#include "dro/text/html_unescape.h"
#include "dro/text/unicode_normalize.h"

namespace dro::text::ftfy {

namespace {

struct CodeRange {
  char32_t lo, hi;
};
struct Translation {
  char32_t cp;
  uint16_t offset, length;  // into the table's pool
};
struct NamedReplacement {
  const char* name;
  const char* value;
};
struct ClassSpan {
  uint16_t offset, count;  // into kBadnessRanges
};
struct PatternItem {
  int16_t cls;  // index into kBadnessClasses; -1 matches only at the start of the text
  uint8_t min, max;
};
struct ItemSpan {
  uint16_t offset, count;
};
struct ByteSet {
  uint64_t words[4];
  bool has(unsigned char b) const { return (words[b >> 6] >> (b & 63)) & 1; }
};

#include "dro/text/ftfy_tables.inc"

// Indices into kCodecTables.
constexpr size_t kLatin1 = 0, kSloppyWindows1252 = 1, kWindows1252 = 10;
constexpr size_t kNumCharmapEncodings = 10;  // chardata.CHARMAP_ENCODINGS
static_assert(std::size(kEncodingNames) == kNumCharmapEncodings + 1 &&
              std::size(kCodecTables) == kNumCharmapEncodings + 1);
// TextFixerConfig.max_decode_length.
constexpr size_t kMaxDecodeLength = 1000000;

bool in_ranges(const CodeRange* begin, const CodeRange* end, char32_t cp) {
  const CodeRange* it =
      std::lower_bound(begin, end, cp, [](const CodeRange& r, char32_t c) { return r.hi < c; });
  return it != end && it->lo <= cp;
}

template <size_t N>
bool in_ranges(const CodeRange (&table)[N], char32_t cp) {
  return in_ranges(std::begin(table), std::end(table), cp);
}

// str.translate with a table whose values are strings.
template <size_t N, size_t M>
std::u32string translate(std::u32string_view text, const Translation (&table)[N],
                         const char32_t (&pool)[M]) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    const Translation* it =
        std::lower_bound(std::begin(table), std::end(table), c,
                         [](const Translation& t, char32_t cp) { return t.cp < cp; });
    if (it != std::end(table) && it->cp == c)
      out.append(pool + it->offset, it->length);
    else
      out += c;
  }
  return out;
}

// --- single-byte codecs ------------------------------------------------------------------------

const std::unordered_map<char32_t, unsigned char>& encoder(size_t encoding) {
  static const auto maps = [] {
    std::array<std::unordered_map<char32_t, unsigned char>, kNumCharmapEncodings> m;
    for (size_t e = 0; e < kNumCharmapEncodings; ++e)
      for (int b = 0; b < 256; ++b) m[e][kCodecTables[e][b]] = static_cast<unsigned char>(b);
    return m;
  }();
  return maps[encoding];
}

// text.encode(encoding); false when a character has no byte there (chardata.possible_encoding
// says no: its allowed characters are exactly the 256 the codec decodes to).
bool encode(std::u32string_view text, size_t encoding, std::string& out) {
  const auto& map = encoder(encoding);
  out.clear();
  out.reserve(text.size());
  for (char32_t c : text) {
    auto it = map.find(c);
    if (it == map.end()) return false;
    out += static_cast<char>(it->second);
  }
  return true;
}

bool is_ascii(std::u32string_view text) {
  return std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x80; });
}

// --- UTF-8 decoding, strict as Python's and ftfy's utf-8-variants ------------------------------

// One standard UTF-8 character at bytes[pos]; false if it is not a valid one.
bool decode_one(std::string_view bytes, size_t& pos, std::u32string& out) {
  const auto b0 = static_cast<unsigned char>(bytes[pos]);
  size_t len;
  char32_t cp, min;
  if (b0 < 0x80) {
    out += b0;
    ++pos;
    return true;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (pos + len > bytes.size()) return false;
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(bytes[pos + i]);
    if ((b & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  out += cp;
  pos += len;
  return true;
}

// bytes.decode("utf-8") (variants = false) or bytes.decode("utf-8-variants"), errors="strict".
bool decode_utf8(std::string_view bytes, bool variants, std::u32string& out) {
  out.clear();
  const size_t n = bytes.size();
  auto at = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  for (size_t pos = 0; pos < n;) {
    if (variants && at(pos) == 0xC0) {
      // Java's two-byte NUL. The codec's pattern is \xc0(\x80|$), and `$` also matches before a
      // final '\n', which the codec then consumes as if it were the 0x80.
      if (pos + 1 < n && (at(pos + 1) == 0x80 || (pos + 2 == n && at(pos + 1) == 0x0A))) {
        out += U'\0';
        pos += 2;
        continue;
      }
      return false;
    }
    if (variants && at(pos) == 0xED && pos + 1 < n && at(pos + 1) >= 0xA0 && at(pos + 1) <= 0xBF) {
      // CESU-8: a surrogate pair written as two three-byte sequences (the same `$` quirk on the
      // sixth byte).
      if (n - pos < 6) return false;
      const bool cesu =
          at(pos + 1) <= 0xAF && at(pos + 2) >= 0x80 && at(pos + 2) <= 0xBF &&
          at(pos + 3) == 0xED && at(pos + 4) >= 0xB0 && at(pos + 4) <= 0xBF &&
          ((at(pos + 5) >= 0x80 && at(pos + 5) <= 0xBF) || (n - pos == 6 && at(pos + 5) == 0x0A));
      if (!cesu) return false;
      out += ((at(pos + 1) & 0x0F) << 16) + ((at(pos + 2) & 0x3F) << 10) +
             ((at(pos + 4) & 0x0F) << 6) + (at(pos + 5) & 0x3F) + 0x10000;
      pos += 6;
      continue;
    }
    if (!decode_one(bytes, pos, out)) return false;
  }
  return true;
}

// --- byte patterns -----------------------------------------------------------------------------

// Length of the first alternative matching bytes[pos...], 0 if none does.
template <size_t A, size_t S>
size_t match_bytes(std::string_view bytes, size_t pos, const ItemSpan (&alts)[A],
                   const ByteSet (&sets)[S]) {
  for (const ItemSpan& alt : alts) {
    if (pos + alt.count > bytes.size()) continue;
    bool ok = true;
    for (size_t i = 0; ok && i < alt.count; ++i)
      ok = sets[alt.offset + i].has(static_cast<unsigned char>(bytes[pos + i]));
    if (ok) return alt.count;
  }
  return 0;
}

bool has_altered_utf8(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size(); ++pos)
    if (match_bytes(bytes, pos, kAlteredUtf8Alternatives, kAlteredUtf8Sets) != 0) return true;
  return false;
}

bool starts_with(std::string_view s, size_t pos, std::string_view prefix) {
  return s.substr(pos, prefix.size()) == prefix;
}

// --- BADNESS_RE --------------------------------------------------------------------------------

bool in_class(int cls, char32_t cp) {
  const ClassSpan& span = kBadnessClasses[cls];
  return in_ranges(kBadnessRanges + span.offset, kBadnessRanges + span.offset + span.count, cp);
}

// Backtracking match of items [item, end) at text[pos...].
bool match_items(std::u32string_view text, size_t pos, size_t item, size_t end) {
  if (item == end) return true;
  const PatternItem& it = kBadnessItems[item];
  if (it.cls < 0) return pos == 0 && match_items(text, pos, item + 1, end);
  size_t count = 0;
  while (count < it.max && pos + count < text.size() && in_class(it.cls, text[pos + count]))
    ++count;
  for (size_t c = count + 1; c-- > it.min;)
    if (match_items(text, pos + c, item + 1, end)) return true;
  return false;
}

// --- UTF8_DETECTOR_RE --------------------------------------------------------------------------

// End of the detector's match at text[pos...] (pos when there is none).
size_t utf8_detector_match(std::u32string_view text, size_t pos) {
  // (?<![utf8_continuation_strict])
  if (pos > 0 && in_ranges(kUtf8ContinuationStrict, text[pos - 1])) return pos;
  const size_t n = text.size();
  auto continuations = [&](size_t from, size_t count) {
    if (from + count > n) return false;
    for (size_t i = 0; i < count; ++i)
      if (!in_ranges(kUtf8Continuation, text[from + i])) return false;
    return true;
  };
  size_t end = pos;
  while (end < n) {  // (first-of-2 cont | first-of-3 cont{2} | first-of-4 cont{3})+
    const char32_t c = text[end];
    size_t need = 0;
    if (in_ranges(kUtf8FirstOf2, c))
      need = 1;
    else if (in_ranges(kUtf8FirstOf3, c))
      need = 2;
    else if (in_ranges(kUtf8FirstOf4, c))
      need = 3;
    if (need == 0 || !continuations(end + 1, need)) break;
    end += 1 + need;
  }
  return end;
}

bool has_utf8_detector_match(std::u32string_view text) {
  for (size_t pos = 0; pos < text.size(); ++pos)
    if (utf8_detector_match(text, pos) > pos) return true;
  return false;
}

bool has_c1(std::u32string_view text) {
  return std::any_of(text.begin(), text.end(), [](char32_t c) { return c >= 0x80 && c <= 0x9F; });
}

// _fix_encoding_one_step_and_explain without the explanation.
std::u32string fix_encoding_one_step(std::u32string_view text) {
  if (text.empty() || is_ascii(text) || !is_bad(text)) return std::u32string(text);
  bool latin1_possible = false;
  std::string bytes;
  std::u32string fixed;
  // Text that was UTF-8 decoded as a single-byte encoding: encode it back and decode as UTF-8.
  for (size_t e = 0; e < kNumCharmapEncodings; ++e) {
    if (!encode(text, e, bytes)) continue;
    if (e == kLatin1) latin1_possible = true;
    // macroman is excluded: an en dash and a space would look like an altered sequence.
    if (std::strcmp(kEncodingNames[e], "macroman") != 0 && has_altered_utf8(bytes))
      bytes = restore_byte_a0(bytes);
    if (std::strncmp(kEncodingNames[e], "sloppy", 6) == 0) bytes = replace_lossy_sequences(bytes);
    const bool variants =
        bytes.find('\xED') != std::string::npos || bytes.find('\xC0') != std::string::npos;
    if (decode_utf8(bytes, variants, fixed)) return fixed;
  }
  if (has_utf8_detector_match(text)) {
    fixed = decode_inconsistent_utf8(text);
    if (fixed != text) return fixed;
  }
  if (latin1_possible) {
    // The reference also asks whether "windows-1252" was a possible encoding, but its list holds
    // only "sloppy-windows-1252", so it always goes on to decode Latin-1 as strict windows-1252.
    encode(text, kLatin1, bytes);
    fixed.clear();
    bool ok = true;
    for (unsigned char b : bytes) {
      const char16_t c = kCodecTables[kWindows1252][b];
      if (c == 0xFFFF) {
        ok = false;
        break;
      }
      fixed += c;
    }
    if (ok && fixed != text) return fixed;
  }
  if (has_c1(text)) return fix_c1_controls(text);
  return std::u32string(text);
}

bool contains_lt(std::u32string_view text) {
  return text.find(U'<') != std::u32string_view::npos;
}

// fix_and_explain(segment) without the explanation.
std::u32string fix_segment(std::u32string_view segment, bool unescape) {
  std::u32string text(segment);
  while (true) {
    const std::u32string original = text;
    if (unescape) text = unescape_html(text);
    text = fix_encoding(text);
    text = fix_c1_controls(text);
    text = fix_latin_ligatures(text);
    text = fix_character_width(text);
    text = uncurl_quotes(text);
    text = fix_line_breaks(text);
    text = fix_surrogates(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = normalize(text, NormalForm::kNfc);
    if (text == original) return text;
  }
}

}  // namespace

std::u32string fix_text(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  bool unescape = true;  // "auto"; once off, off for the rest of the text
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find(U'\n', pos);
    end = end == std::u32string_view::npos ? text.size() : end + 1;
    end = std::min(end, pos + kMaxDecodeLength);
    const std::u32string_view segment = text.substr(pos, end - pos);
    if (contains_lt(segment)) unescape = false;
    out += fix_segment(segment, unescape);
    pos = end;
  }
  return out;
}

std::string fix_text(std::string_view text) {
  return u32_to_utf8(fix_text(utf8_to_u32(text)));
}

std::u32string fix_text_segment(std::u32string_view text) {
  return fix_segment(text, !contains_lt(text));
}

std::u32string fix_encoding(std::u32string_view text) {
  std::u32string current(text);
  while (true) {
    std::u32string next = fix_encoding_one_step(current);
    if (next == current) return next;
    current = std::move(next);
  }
}

bool is_bad(std::u32string_view text) {
  for (size_t pos = 0; pos < text.size(); ++pos)
    for (const ItemSpan& alt : kBadnessAlternatives)
      if (match_items(text, pos, alt.offset, alt.offset + alt.count)) return true;
  return false;
}

std::u32string unescape_html(std::u32string_view text) {
  // chardata.HTML_ENTITY_RE: &#?[0-9A-Za-z]{1,24};
  auto alnum = [](char32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  };
  std::u32string out;
  out.reserve(text.size());
  std::string name;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    if (text[i] != '&') {
      out += text[i++];
      continue;
    }
    const bool numeric = i + 1 < n && text[i + 1] == '#';
    const size_t start = i + 1 + (numeric ? 1 : 0);
    size_t end = start;
    while (end < n && alnum(text[end])) ++end;
    if (end == start || end - start > 24 || end >= n || text[end] != ';') {
      out += text[i++];
      continue;
    }
    const std::u32string_view match = text.substr(i, end + 1 - i);
    i = end + 1;
    if (numeric) {
      // html.unescape of the match, kept only when it consumed the ';'.
      const std::u32string unescaped = html_unescape(match);
      out += unescaped.find(U';') == std::u32string::npos ? unescaped : std::u32string(match);
      continue;
    }
    name.clear();
    for (size_t k = start; k <= end; ++k) name += static_cast<char>(text[k]);  // "amp;"
    // chardata.HTML_ENTITIES: html5's names that end in ';', and their upper-cased forms.
    const char* value = html5_entity(name);
    if (value == nullptr) {
      const NamedReplacement* it = std::lower_bound(
          std::begin(kUpperEntities), std::end(kUpperEntities), name,
          [](const NamedReplacement& e, const std::string& key) { return e.name < key; });
      if (it != std::end(kUpperEntities) && it->name == name) value = it->value;
    }
    if (value != nullptr)
      out += utf8_to_u32(value);
    else
      out += match;
  }
  return out;
}

std::u32string remove_terminal_escapes(std::u32string_view text) {
  // fixes.ANSI_RE: \033\[((?:\d|;)*)([a-zA-Z]), with \d any decimal digit (category Nd).
  std::u32string out;
  out.reserve(text.size());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    if (text[i] == 0x1B && i + 1 < n && text[i + 1] == '[') {
      size_t k = i + 2;
      while (k < n && (text[k] == ';' || is_decimal_digit(text[k]))) ++k;
      if (k < n && ((text[k] >= 'a' && text[k] <= 'z') || (text[k] >= 'A' && text[k] <= 'Z'))) {
        i = k + 1;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

std::u32string uncurl_quotes(std::u32string_view text) {
  std::u32string out(text);
  for (char32_t& c : out) {
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B))  // chardata.SINGLE_QUOTE_RE
      c = '\'';
    else if (c >= 0x201C && c <= 0x201F)  // chardata.DOUBLE_QUOTE_RE
      c = '"';
  }
  return out;
}

std::u32string fix_latin_ligatures(std::u32string_view text) {
  return translate(text, kLigatures, kLigaturesPool);
}

std::u32string fix_character_width(std::u32string_view text) {
  return translate(text, kWidthMap, kWidthMapPool);
}

std::u32string fix_line_breaks(std::u32string_view text) {
  // "\r\n", then a lone "\r", U+2028, U+2029 and U+0085 each become "\n".
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out += '\n';
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      out += '\n';
    } else {
      out += c;
    }
  }
  return out;
}

std::u32string fix_surrogates(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < text.size() && text[i + 1] >= 0xDC00 &&
        text[i + 1] <= 0xDFFF) {
      out += 0x10000 + (c - 0xD800) * 0x400 + (text[i + 1] - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      out += U'\uFFFD';
    } else {
      out += c;
    }
  }
  return out;
}

std::u32string remove_control_chars(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text)
    if (!in_ranges(kControlChars, c)) out += c;
  return out;
}

std::u32string fix_c1_controls(std::u32string_view text) {
  // Each C1 character read as the windows-1252 byte it is in Latin-1 (sloppy: 0x81 stays).
  std::u32string out(text);
  for (char32_t& c : out)
    if (c >= 0x80 && c <= 0x9F) c = kCodecTables[kSloppyWindows1252][c];
  return out;
}

std::u32string decode_inconsistent_utf8(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = utf8_detector_match(text, pos);
    if (end == pos) {
      out += text[pos++];
      continue;
    }
    const std::u32string_view match = text.substr(pos, end - pos);
    // Only a strictly shorter piece is fixed on its own, so this cannot recurse forever.
    if (match.size() < text.size() && is_bad(match))
      out += fix_encoding(match);
    else
      out += match;
    pos = end;
  }
  return out;
}

std::string restore_byte_a0(std::string_view bytes) {
  // fixes.A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 ".
  std::string spaced;
  spaced.reserve(bytes.size() + 8);
  for (size_t i = 0; i < bytes.size();) {
    if (bytes[i] == '\xC3' && i + 1 < bytes.size() && bytes[i + 1] == ' ') {
      const size_t next = i + 2;
      const bool exception = starts_with(bytes, next, " ") || starts_with(bytes, next, "quele") ||
                             starts_with(bytes, next, "quela") ||
                             starts_with(bytes, next, "quilo") || starts_with(bytes, next, "s ");
      if (!exception) {
        spaced += "\xC3\xA0 ";
        i = next;
        continue;
      }
    }
    spaced += bytes[i++];
  }
  // Then every space inside an ALTERED_UTF8_RE match becomes 0xA0.
  std::string out;
  out.reserve(spaced.size());
  for (size_t i = 0; i < spaced.size();) {
    const size_t len = match_bytes(spaced, i, kAlteredUtf8Alternatives, kAlteredUtf8Sets);
    if (len == 0) {
      out += spaced[i++];
      continue;
    }
    for (size_t k = 0; k < len; ++k) out += spaced[i + k] == ' ' ? '\xA0' : spaced[i + k];
    i += len;
  }
  return out;
}

std::string replace_lossy_sequences(std::string_view bytes) {
  // Every LOSSY_UTF8_RE match becomes the UTF-8 of U+FFFD.
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const size_t len = match_bytes(bytes, i, kLossyUtf8Alternatives, kLossyUtf8Sets);
    if (len == 0) {
      out += bytes[i++];
    } else {
      out += "\xEF\xBF\xBD";
      i += len;
    }
  }
  return out;
}

}  // namespace dro::text::ftfy
