// libFuzzer target: the text cleaners under the tokenizers (text/unicode.h, unicode_normalize.h,
// html_unescape.h, ftfy.h) on arbitrary bytes, valid UTF-8 or not. None of them may throw. Checks
// besides crashes and sanitizer reports: every normal form is idempotent (UAX #15), sanitize_utf8
// leaves only valid UTF-8, and valid UTF-8 survives the code-point round trip.
#include <cstdint>
#include <string>

#include "dro/text/ftfy.h"
#include "dro/text/html_unescape.h"
#include "dro/text/unicode.h"
#include "dro/text/unicode_normalize.h"
#include "fuzz_util.h"

namespace {

using namespace dro::text;

bool valid_utf8(const std::string& s) {
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Char c = decode_utf8(s, pos);
    if (!c.valid) return false;
    pos += c.length;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  const std::string clean = sanitize_utf8(text);
  DRO_FUZZ_CHECK(valid_utf8(clean), "sanitize_utf8 left invalid UTF-8");
  if (valid_utf8(text)) {
    DRO_FUZZ_CHECK(clean == text, "sanitize_utf8 changed valid UTF-8");
    DRO_FUZZ_CHECK(u32_to_utf8(utf8_to_u32(text)) == text, "UTF-8 round trip");
  }
  (void)lower_utf8(text);

  const std::u32string u = utf8_to_u32(text);
  for (NormalForm form :
       {NormalForm::kNfc, NormalForm::kNfd, NormalForm::kNfkc, NormalForm::kNfkd}) {
    const std::u32string once = normalize(u, form);
    DRO_FUZZ_CHECK(normalize(once, form) == once, "normal form %d is not idempotent",
                   static_cast<int>(form));
    (void)normalize_utf8(text, form);
  }
  for (char32_t c : u) {
    (void)general_category(c);
    (void)combining_class(c);
  }

  (void)html_unescape(text);
  (void)html_unescape(u);
  (void)ftfy::fix_text(text);
  (void)ftfy::fix_encoding(u);
  (void)ftfy::is_bad(u);
  return 0;
}
