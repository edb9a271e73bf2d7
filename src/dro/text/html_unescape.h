// Python's html.unescape() (3.11): HTML5 named character references, with the legacy names that
// need no ';' matched as the longest prefix ("&notit;" -> "¬it;"), and numeric references
// "&#N;" / "&#xH;" (';' optional) with HTML5's remapping: 0x80-0x9F as windows-1252, 0 and
// surrogates and numbers above U+10FFFF as U+FFFD, noncharacters and most C0/C1 controls dropped.
// Tables from html.entities.html5 and the html module (scripts/gen_html_entities.py).
#pragma once

#include <string>
#include <string_view>

namespace dro::text {

// html.unescape on code points.
std::u32string html_unescape(std::u32string_view text);

// html.unescape on UTF-8. Text without '&' is returned as it is; otherwise bytes that are not
// valid UTF-8 come back as U+FFFD.
std::string html_unescape(std::string_view text);

// The replacement (UTF-8) of an html5 entity name as html.entities.html5 spells it, with or
// without its ';' ("amp;", "amp", "NotEqualTilde;"); nullptr for a name that is not in the table.
const char* html5_entity(std::string_view name);

}  // namespace dro::text
