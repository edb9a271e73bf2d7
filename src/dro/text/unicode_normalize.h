// Unicode normalisation (UAX #15: NFC, NFD, NFKC, NFKD) and the general-category queries the
// text cleaners need, from tables generated with Python's unicodedata (Unicode 14.0.0, Python
// 3.11; scripts/gen_unicode_norm_tables.py). normalize() equals unicodedata.normalize() code point
// for code point: full (recursive) decomposition, Hangul syllables algorithmic, canonical ordering
// by combining class, canonical composition with the reference's composition exclusions.
// Not here: case folding, NFKC_Casefold, Unicode versions other than the one generated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dro::text {

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };

// The Unicode version of the tables ("14.0.0").
const char* unicode_version();

// unicodedata.normalize(form, text) on code points. Surrogate code points pass through unchanged
// (Python keeps them as they are).
std::u32string normalize(std::u32string_view text, NormalForm form);

// The same on UTF-8. Bytes that are not valid UTF-8 are copied through unchanged and, like a
// starter with no compositions, nothing reorders or composes across them.
std::string normalize_utf8(std::string_view text, NormalForm form);

// unicodedata.combining(): the canonical combining class, 0 for starters.
int combining_class(char32_t cp);

// unicodedata.category(): the two-letter general category, "Cn" for unassigned code points and
// anything above U+10FFFF.
const char* general_category(char32_t cp);

// Category Mn (non-spacing mark): what BERT's accent stripping drops after NFD.
bool is_nonspacing_mark(char32_t cp);
// Category Nd: Python re's \d on str patterns.
bool is_decimal_digit(char32_t cp);
// transformers' BasicTokenizer _is_punctuation: any P* category, or the ASCII symbols
// 33-47, 58-64, 91-96, 123-126 (so "$", "^", "`" count).
bool is_bert_punctuation(char32_t cp);
// transformers' _is_control: any C* category (Cc, Cf, Co, Cs, Cn) except \t, \n and \r, which
// count as whitespace. (Google's original BERT tested Cc and Cf only.)
bool is_bert_control(char32_t cp);
// transformers' _is_whitespace: space, \t, \n, \r or category Zs.
bool is_bert_whitespace(char32_t cp);
// BERT's _is_chinese_char: CJK Unified Ideographs and extensions A-E, and the CJK Compatibility
// Ideographs and their supplement (not Hiragana, Katakana, Hangul, nor extension F and later).
bool is_cjk_ideograph(char32_t cp);

// UTF-8 -> code points for the cleaners: a byte that does not start a valid sequence becomes
// U+FFFD, except that three-byte encodings of surrogates (ED A0..BF xx, as CESU-8 / WTF-8 write
// them) decode to the surrogate code point, as Python's "surrogatepass" would.
std::u32string utf8_to_u32(std::string_view text);
// Code points -> UTF-8; a surrogate is written as its three-byte form.
std::string u32_to_utf8(std::u32string_view text);

}  // namespace dro::text
