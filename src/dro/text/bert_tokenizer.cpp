#include "dro/text/bert_tokenizer.h"

#include <fstream>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/text/unicode.h"
#include "dro/text/unicode_normalize.h"

namespace dro::text {

namespace {

namespace fs = std::filesystem;

// Python's str.isspace(), which str.split() splits on. After BasicTokenizer's cleaning only the
// space and U+2028 / U+2029 (categories Zl / Zp: neither control nor Zs) can still occur.
bool is_python_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// str.split(): runs of whitespace separate, empty pieces dropped.
std::vector<std::u32string> split_python_whitespace(const std::u32string& s) {
  std::vector<std::u32string> out;
  std::u32string cur;
  for (char32_t c : s) {
    if (is_python_space(c)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::u32string lower_u32(const std::u32string& s) {
  return utf8_to_u32(lower_utf8(u32_to_utf8(s)));
}

// vocab.txt read as Python's text mode does (universal newlines: \r\n, \r and \n end a line).
std::vector<std::string> read_lines(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(cat("[bert-tokenizer] ", file.string(), ": cannot be read"));
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::vector<std::string> lines;
  std::string cur;
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
      lines.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(std::move(cur));
  return lines;
}

}  // namespace

BertTokenizer::BertTokenizer(const std::vector<std::string>& lines, BertTokenizerOptions options,
                             const std::string& where)
    : options_(std::move(options)) {
  if (lines.empty())
    throw IoError(cat("[bert-tokenizer] ", where,
                      ": the vocabulary is empty (expected one WordPiece token per line, e.g. the "
                      "30522 lines of bert-base-uncased's vocab.txt)"));
  for (size_t i = 0; i < lines.size(); ++i) vocab_[lines[i]] = static_cast<int64_t>(i);
  size_ = static_cast<int64_t>(vocab_.size());
  // The special tokens in PreTrainedTokenizer's order (unk, sep, pad, cls, mask); a BERT
  // vocabulary holds all five (bert-base-uncased: 100-103, 0).
  for (const std::string* t : {&options_.unk_token, &options_.sep_token, &options_.pad_token,
                               &options_.cls_token, &options_.mask_token}) {
    if (!vocab_.count(*t))
      throw IoError(cat("[bert-tokenizer] ", where, ": the vocabulary has no '", *t, "' line (",
                        lines.size(), " lines; is this a BERT vocab.txt?)"));
    specials_.push_back(utf8_to_u32(*t));
  }
  unk_id_ = vocab_.at(options_.unk_token);
  sep_id_ = vocab_.at(options_.sep_token);
  pad_id_ = vocab_.at(options_.pad_token);
  cls_id_ = vocab_.at(options_.cls_token);
}

BertTokenizer BertTokenizer::load(const fs::path& dir) {
  const fs::path vocab = dir / "vocab.txt";
  if (!fs::is_regular_file(vocab))
    throw IoError(cat("[bert-tokenizer] ", dir.string(),
                      ": no vocab.txt (the WordPiece vocabulary "
                      "of bert-base-uncased, 30522 lines)"));
  BertTokenizerOptions o;
  const fs::path config = dir / "tokenizer_config.json";
  if (fs::is_regular_file(config)) {
    const io::OrderedJson j = io::read_json(config);
    const std::string where = config.string();
    if (!j.is_object())
      throw IoError(
          cat("[bert-tokenizer] ", where, ": expected a JSON object, found ", j.type_name()));
    o.do_lower_case = io::get_or<bool>(j, "do_lower_case", o.do_lower_case, where);
    o.strip_accents = io::get_optional<bool>(j, "strip_accents", where);
    o.tokenize_chinese_chars =
        io::get_or<bool>(j, "tokenize_chinese_chars", o.tokenize_chinese_chars, where);
    // Special tokens may be spelled as strings or as AddedToken dicts ({"content": ...}).
    for (auto [key, slot] : {std::pair{"unk_token", &o.unk_token},
                             {"sep_token", &o.sep_token},
                             {"pad_token", &o.pad_token},
                             {"cls_token", &o.cls_token},
                             {"mask_token", &o.mask_token}}) {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) continue;
      if (it->is_string())
        *slot = it->get<std::string>();
      else if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        *slot = (*it)["content"].get<std::string>();
      else
        throw IoError(cat("[bert-tokenizer] ", where, ": '", key,
                          "' must be a string or {\"content\": ...}, found ", it->dump()));
    }
  }
  return BertTokenizer(read_lines(vocab), o, vocab.string());
}

int64_t BertTokenizer::add_special_token(const std::string& token) {
  const std::u32string t = utf8_to_u32(token);
  for (const auto& s : specials_)
    if (s == t) return vocab_.at(token);
  auto it = vocab_.find(token);
  const int64_t id = it != vocab_.end() ? it->second : size_++;
  vocab_[token] = id;
  specials_.push_back(t);
  return id;
}

int64_t BertTokenizer::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<std::string> BertTokenizer::tokenize(std::string_view text) const {
  const std::u32string s = utf8_to_u32(text);
  std::vector<std::string> out;
  std::u32string plain;  // text between special tokens
  auto flush = [&] {
    if (!plain.empty()) basic_tokenize(plain, out);
    plain.clear();
  };
  for (size_t i = 0; i < s.size();) {
    const std::u32string* hit = nullptr;
    for (const auto& sp : specials_)
      if (!sp.empty() && s.compare(i, sp.size(), sp) == 0) {
        hit = &sp;
        break;
      }
    if (hit) {
      flush();
      out.push_back(u32_to_utf8(*hit));
      i += hit->size();
      continue;
    }
    // PreTrainedTokenizer.tokenize lower-cases with re.sub(r"(special...)|(.+?)", ...): one
    // code point at a time (so no final-sigma context), '\n' unmatched by '.'.
    if (options_.do_lower_case && s[i] != U'\n')
      plain += lower_u32(std::u32string(1, s[i]));
    else
      plain += s[i];
    ++i;
  }
  flush();
  return out;
}

void BertTokenizer::basic_tokenize(const std::u32string& text,
                                   std::vector<std::string>& out) const {
  std::u32string clean;
  clean.reserve(text.size() + 8);
  for (char32_t c : text) {
    if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
    if (is_bert_whitespace(c)) {
      clean += U' ';
    } else if (options_.tokenize_chinese_chars && is_cjk_ideograph(c)) {
      clean += U' ';
      clean += c;
      clean += U' ';
    } else {
      clean += c;
    }
  }
  const std::u32string nfc = normalize(clean, NormalForm::kNfc);
  const bool strip = options_.strip_accents.value_or(options_.do_lower_case);
  for (std::u32string token : split_python_whitespace(nfc)) {
    // never_split: a word that is a special token after cleaning stays whole.
    bool special = false;
    for (const auto& sp : specials_) special = special || sp == token;
    if (special) {
      out.push_back(u32_to_utf8(token));
      continue;
    }
    if (options_.do_lower_case) token = lower_u32(token);
    if (strip) {
      std::u32string kept;
      for (char32_t c : normalize(token, NormalForm::kNfd))
        if (!is_nonspacing_mark(c)) kept += c;
      token = std::move(kept);
    }
    std::u32string word;
    for (char32_t c : token) {
      if (is_bert_punctuation(c)) {
        if (!word.empty()) wordpiece(word, out);
        word.clear();
        wordpiece(std::u32string(1, c), out);
      } else {
        word += c;
      }
    }
    if (!word.empty()) wordpiece(word, out);
  }
}

void BertTokenizer::wordpiece(const std::u32string& word, std::vector<std::string>& out) const {
  if (word.size() > kMaxInputCharsPerWord) {
    out.push_back(options_.unk_token);
    return;
  }
  std::vector<std::string> pieces;
  size_t start = 0;
  while (start < word.size()) {
    size_t end = word.size();
    std::string found;
    for (; end > start; --end) {
      std::string piece = start > 0 ? "##" : "";
      piece += u32_to_utf8(word.substr(start, end - start));
      if (vocab_.count(piece)) {
        found = std::move(piece);
        break;
      }
    }
    if (end == start) {  // no piece matched: the whole word is unknown
      out.push_back(options_.unk_token);
      return;
    }
    pieces.push_back(std::move(found));
    start = end;
  }
  for (auto& p : pieces) out.push_back(std::move(p));
}

std::vector<int64_t> BertTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids;
  for (const auto& t : tokenize(text)) {
    auto it = vocab_.find(t);
    ids.push_back(it == vocab_.end() ? unk_id_ : it->second);
  }
  return ids;
}

BertBatch BertTokenizer::encode_batch(const std::vector<std::string>& texts,
                                      int64_t max_length) const {
  if (max_length < 2)
    throw UsageError(
        cat("[bert-tokenizer] max_length must be at least 2 ([CLS] and [SEP]), got ", max_length));
  const auto n = static_cast<int64_t>(texts.size());
  BertBatch b;
  b.input_ids = torch::full({n, max_length}, pad_id_, torch::kInt64);
  b.attention_mask = torch::zeros({n, max_length}, torch::kInt64);
  auto ids = b.input_ids.accessor<int64_t, 2>();
  auto mask = b.attention_mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> row = encode(texts[static_cast<size_t>(i)]);
    if (static_cast<int64_t>(row.size()) > max_length - 2) row.resize(max_length - 2);
    row.insert(row.begin(), cls_id_);
    row.push_back(sep_id_);
    for (size_t k = 0; k < row.size(); ++k) {
      ids[i][static_cast<int64_t>(k)] = row[k];
      mask[i][static_cast<int64_t>(k)] = 1;
    }
  }
  return b;
}

}  // namespace dro::text
