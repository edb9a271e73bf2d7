// ftfy 6.3.1's fix_text() with its default TextFixerConfig, as open_clip's basic_clean calls it:
// the text is cut into segments (each line with its '\n', at most 1,000,000 code points), and
// each segment is fixed until nothing changes by, in ftfy's order: unescape_html (ftfy's own
// entity fixer; "auto": off from the first segment holding a '<' on), fix_encoding (mojibake
// repair: the badness heuristic, the ten single-byte codecs with ftfy's sloppy variants,
// restore_byte_a0, replace_lossy_sequences, the utf-8-variants decoder, decode_inconsistent_utf8,
// the Latin-1 -> windows-1252 step, fix_c1_controls), fix_c1_controls, fix_latin_ligatures,
// fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates, remove_terminal_escapes,
// remove_control_chars, and NFC. Tables and patterns come from ftfy's source
// (scripts/gen_ftfy_tables.py); each step below is the ftfy.fixes function of the same name.
//
// Not here: configurations other than the default (TextFixerConfig fields), explanations and
// plans (fix_and_explain's steps, apply_plan), badness() counting, guess_bytes, fix_file,
// decode_escapes and the display-width helpers. Python strings may hold any code point; UTF-8
// input is decoded with utf8_to_u32 (invalid bytes -> U+FFFD, three-byte surrogate forms -> the
// surrogate, which fix_surrogates then repairs).
#pragma once

#include <string>
#include <string_view>

namespace dro::text::ftfy {

// ftfy.fix_text(text).
std::u32string fix_text(std::u32string_view text);
std::string fix_text(std::string_view text);

// ftfy.fix_text_segment(text): one segment, without the cutting into lines.
std::u32string fix_text_segment(std::u32string_view text);

// ftfy.fix_encoding(text): the mojibake repair alone, repeated until it changes nothing.
std::u32string fix_encoding(std::u32string_view text);

// ftfy.badness.is_bad(text): whether BADNESS_RE finds an unlikely character sequence.
bool is_bad(std::u32string_view text);

// The individual fixes.
std::u32string unescape_html(std::u32string_view text);
std::u32string remove_terminal_escapes(std::u32string_view text);
std::u32string uncurl_quotes(std::u32string_view text);
std::u32string fix_latin_ligatures(std::u32string_view text);
std::u32string fix_character_width(std::u32string_view text);
std::u32string fix_line_breaks(std::u32string_view text);
std::u32string fix_surrogates(std::u32string_view text);
std::u32string remove_control_chars(std::u32string_view text);
std::u32string fix_c1_controls(std::u32string_view text);
std::u32string decode_inconsistent_utf8(std::u32string_view text);
// Byte-level transcoders used inside fix_encoding.
std::string restore_byte_a0(std::string_view bytes);
std::string replace_lossy_sequences(std::string_view bytes);

}  // namespace dro::text::ftfy
