#include "dro/text/unicode_normalize.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include "dro/text/unicode.h"

namespace dro::text {

namespace {

struct Decomposition {
  char32_t cp;
  uint16_t offset;  // into kDecompPool
  uint8_t length;
  uint8_t compat;  // 1: a <tag>ged compatibility mapping, used by NFKD / NFKC only
};
struct Composition {
  char32_t first, second, composite;
};
struct ValueRun {
  char32_t lo, hi;
  uint8_t value;
};

#include "dro/text/unicode_normalize_tables.inc"

// Hangul syllable arithmetic (Unicode chapter 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

template <size_t N>
int run_value(const ValueRun (&table)[N], char32_t cp) {
  const ValueRun* it = std::lower_bound(std::begin(table), std::end(table), cp,
                                        [](const ValueRun& r, char32_t c) { return r.hi < c; });
  return it != std::end(table) && it->lo <= cp ? it->value : 0;
}

const Decomposition* find_decomposition(char32_t cp) {
  const Decomposition* it =
      std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp,
                       [](const Decomposition& d, char32_t c) { return d.cp < c; });
  return it != std::end(kDecompositions) && it->cp == cp ? it : nullptr;
}

char32_t find_composition(char32_t first, char32_t second) {
  const Composition* it = std::lower_bound(
      std::begin(kCompositions), std::end(kCompositions), std::make_pair(first, second),
      [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  if (it != std::end(kCompositions) && it->first == first && it->second == second)
    return it->composite;
  return 0;
}

void decompose_char(char32_t cp, bool compat, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out += kLBase + s / kNCount;
    out += kVBase + (s % kNCount) / kTCount;
    if (s % kTCount != 0) out += kTBase + s % kTCount;
    return;
  }
  const Decomposition* d = find_decomposition(cp);
  if (d == nullptr || (d->compat && !compat)) {
    out += cp;
    return;
  }
  for (size_t i = 0; i < d->length; ++i) decompose_char(kDecompPool[d->offset + i], compat, out);
}

// Full decomposition, then the canonical ordering algorithm: every run of non-starters sorted by
// combining class, stably.
std::u32string decompose(std::u32string_view text, bool compat) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) decompose_char(cp, compat, out);
  std::vector<std::pair<int, char32_t>> run;
  for (size_t i = 0; i < out.size();) {
    if (combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    run.clear();
    while (end < out.size() && combining_class(out[end]) != 0) {
      run.emplace_back(combining_class(out[end]), out[end]);
      ++end;
    }
    if (run.size() > 1) {
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      for (size_t k = 0; k < run.size(); ++k) out[i + k] = run[k].second;
    }
    i = end;
  }
  return out;
}

// The canonical composition algorithm on a decomposed, canonically ordered string: each character
// joins the last starter when nothing between them blocks it (a starter, or a mark of the same or
// a higher class) and the pair is a primary composite.
std::u32string compose(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  size_t starter = std::u32string::npos;  // index in `out` of the last starter
  for (char32_t cp : text) {
    const int ccc = combining_class(cp);
    if (starter != std::u32string::npos) {
      const bool adjacent = starter + 1 == out.size();
      const bool unblocked = adjacent || combining_class(out.back()) < ccc;
      if (unblocked) {
        const char32_t s = out[starter];
        char32_t composite = 0;
        if (adjacent && s >= kLBase && s < kLBase + kLCount && cp >= kVBase &&
            cp < kVBase + kVCount) {
          composite = kSBase + ((s - kLBase) * kVCount + (cp - kVBase)) * kTCount;
        } else if (adjacent && s >= kSBase && s < kSBase + kSCount && (s - kSBase) % kTCount == 0 &&
                   cp > kTBase && cp < kTBase + kTCount) {
          composite = s + (cp - kTBase);
        } else {
          composite = find_composition(s, cp);
        }
        if (composite != 0) {
          out[starter] = composite;
          continue;
        }
      }
    }
    out += cp;
    if (ccc == 0) starter = out.size() - 1;
  }
  return out;
}

}  // namespace

const char* unicode_version() {
  return kUnicodeVersion;
}

std::u32string normalize(std::u32string_view text, NormalForm form) {
  const bool compat = form == NormalForm::kNfkc || form == NormalForm::kNfkd;
  std::u32string decomposed = decompose(text, compat);
  if (form == NormalForm::kNfd || form == NormalForm::kNfkd) return decomposed;
  return compose(decomposed);
}

std::string normalize_utf8(std::string_view text, NormalForm form) {
  std::string out;
  out.reserve(text.size());
  std::u32string run;
  auto flush = [&] {
    if (!run.empty()) out += u32_to_utf8(normalize(run, form));
    run.clear();
  };
  for (size_t pos = 0; pos < text.size();) {
    // Strict UTF-8 here: a surrogate's three-byte form is not valid text, it is kept as bytes.
    const Utf8Char ch = decode_utf8(text, pos);
    if (ch.valid) {
      run += ch.cp;
      pos += ch.length;
    } else {
      flush();
      out += text[pos++];
    }
  }
  flush();
  return out;
}

int combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  return run_value(kCombiningClasses, cp);
}

const char* general_category(char32_t cp) {
  return kCategoryNames[run_value(kCategories, cp)];
}

bool is_nonspacing_mark(char32_t cp) {
  const char* c = general_category(cp);
  return c[0] == 'M' && c[1] == 'n';
}

bool is_decimal_digit(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  const char* c = general_category(cp);
  return c[0] == 'N' && c[1] == 'd';
}

bool is_bert_punctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126))
    return true;
  return general_category(cp)[0] == 'P';
}

bool is_bert_control(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  return general_category(cp)[0] == 'C';
}

bool is_bert_whitespace(char32_t cp) {
  if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
  const char* c = general_category(cp);
  return c[0] == 'Z' && c[1] == 's';
}

bool is_cjk_ideograph(char32_t cp) {
  // The ranges of BERT's tokenization.py _is_chinese_char.
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

std::u32string utf8_to_u32(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const auto b0 = static_cast<unsigned char>(text[pos]);
    size_t len = 0;
    char32_t cp = 0, min = 0;
    if (b0 < 0x80) {
      len = 1, cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool valid = len > 0 && pos + len <= text.size();
    for (size_t i = 1; valid && i < len; ++i) {
      const auto b = static_cast<unsigned char>(text[pos + i]);
      valid = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    valid = valid && cp >= min && cp <= 0x10FFFF;
    if (valid) {
      out += cp;
      pos += len;
    } else {
      out += U'\uFFFD';
      pos += 1;
    }
  }
  return out;
}

std::string u32_to_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

}  // namespace dro::text
