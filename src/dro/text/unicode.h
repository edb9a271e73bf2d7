// The bits of Unicode the CLIP tokenizer needs: UTF-8 decoding that never throws (a byte that does
// not start a valid sequence decodes alone and is reported invalid, so callers can keep it as is),
// the character classes of CLIP's pre-tokenisation pattern (\p{L}, \p{N}, \s), and lower-casing as
// Python's str.lower() does it. Not here: normalisation (NFC/NFKC) and ftfy-style repairs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dro::text {

struct Utf8Char {
  char32_t cp = 0;    // the code point; the byte value itself when !valid
  size_t length = 1;  // bytes consumed (1..4)
  bool valid = true;  // false for a stray continuation byte, an overlong form, a surrogate ...
};

// Decodes the character starting at s[pos] (pos < s.size()).
Utf8Char decode_utf8(std::string_view s, size_t pos);

// Appends the UTF-8 encoding of a Unicode scalar value.
void append_utf8(std::string& out, char32_t cp);

// Character classes from tables generated with Python's `regex` module
// (scripts/gen_unicode_tables.py).
bool is_letter(char32_t cp);  // \p{L}
bool is_number(char32_t cp);  // \p{N}
bool is_space(char32_t cp);   // \s (Unicode White_Space)
// Code points none of the pattern's alternatives matches (compiled case-insensitively, U+0345
// folds to a letter, which defeats both the letter class and its negation): the reference skips
// them like whitespace.
bool is_unmatched_by_clip_pattern(char32_t cp);

// Python's str.lower(): the simple case mapping, plus U+0130 -> "i" U+0307 and the final-sigma
// rule (U+03A3 -> U+03C2 after a cased character unless a cased character follows, case-ignorable
// characters skipped both ways). Invalid bytes pass through unchanged.
std::string lower_utf8(std::string_view s);

// Replaces U+FFFD for every byte that is not part of a valid UTF-8 sequence.
std::string sanitize_utf8(std::string_view s);

}  // namespace dro::text
