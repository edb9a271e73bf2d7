#include "dro/text/open_clip_tokenizer.h"

#include <torch/torch.h>

#include "dro/core/error.h"
#include "dro/text/ftfy.h"
#include "dro/text/html_unescape.h"
#include "dro/text/unicode.h"
#include "dro/text/unicode_normalize.h"

namespace dro::text {

namespace {

// Python's str.isspace(), what str.strip() removes: Unicode White_Space plus U+001C..U+001F.
bool is_python_space(char32_t c) {
  return (c >= 0x1C && c <= 0x1F) || is_space(c);
}

std::u32string_view strip(std::u32string_view s, bool (*space)(char32_t)) {
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

OpenClipTokenizer::OpenClipTokenizer(ClipTokenizer bpe) : bpe_(std::move(bpe)) {}

OpenClipTokenizer OpenClipTokenizer::load(const std::filesystem::path& dir) {
  return OpenClipTokenizer(ClipTokenizer::load(dir));
}

std::string OpenClipTokenizer::clean(std::string_view text) const {
  // basic_clean: ftfy.fix_text, html.unescape twice, str.strip().
  std::u32string t = html_unescape(html_unescape(ftfy::fix_text(utf8_to_u32(text))));
  const std::u32string_view basic = strip(t, is_python_space);
  // whitespace_clean: regex's \s+ -> " ", then strip (nothing but single spaces is left to strip).
  std::u32string out;
  out.reserve(basic.size());
  bool pending_space = false;
  for (char32_t c : basic) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += U' ';
    pending_space = false;
    out += c;
  }
  return lower_utf8(u32_to_utf8(out));
}

std::vector<int64_t> OpenClipTokenizer::encode(std::string_view text) const {
  // The pattern's first alternatives are open_clip's special strings (its SimpleTokenizer).
  return bpe_.encode_prepared(clean(text),
                              {{"<start_of_text>", sot_id()}, {"<end_of_text>", eot_id()}});
}

torch::Tensor OpenClipTokenizer::tokenize(const std::vector<std::string>& texts,
                                          int64_t context_length) const {
  if (context_length < 1)
    throw UsageError(cat("[open_clip] context_length must be at least 1, got ", context_length));
  const int64_t n = static_cast<int64_t>(texts.size());
  // ids: [N, context_length], 0 = padding
  torch::Tensor ids = torch::zeros({n, context_length}, torch::kInt64);
  auto* out = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> row;
    row.push_back(sot_id());
    const std::vector<int64_t> content = encode(texts[i]);
    row.insert(row.end(), content.begin(), content.end());
    row.push_back(eot_id());
    if (static_cast<int64_t>(row.size()) > context_length) {
      row.resize(context_length);
      row.back() = eot_id();
    }
    std::copy(row.begin(), row.end(), out + i * context_length);
  }
  return ids;
}

}  // namespace dro::text
