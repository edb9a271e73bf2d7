#include "dro/text/clip_tokenizer.h"

#include <array>
#include <cctype>
#include <climits>
#include <fstream>
#include <mutex>
#include <optional>

#include <torch/torch.h>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/text/unicode.h"
#include "dro/text/unicode_normalize.h"

namespace dro::text {

namespace {

// Entries kept in the BPE cache before it is emptied; real prompts reuse a few thousand words.
constexpr size_t kMaxCacheEntries = 1 << 16;

// OpenAI's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100, U+0101, ... in byte order, so no token contains whitespace or control characters.
const std::array<std::string, 256>& byte_table() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      append_utf8(t[b], printable ? static_cast<char32_t>(b) : next++);
    }
    return t;
  }();
  return table;
}

const std::unordered_map<char32_t, uint8_t>& byte_decoder() {
  static const std::unordered_map<char32_t, uint8_t> decoder = [] {
    std::unordered_map<char32_t, uint8_t> d;
    const auto& table = byte_table();
    for (int b = 0; b < 256; ++b) d[decode_utf8(table[b], 0).cp] = static_cast<uint8_t>(b);
    return d;
  }();
  return decoder;
}

// OpenAI's whitespace_clean after basic_clean's strip: runs of \s become one space, ends trimmed.
std::string clean_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Char c = decode_utf8(s, pos);
    if (c.valid && is_space(c.cp)) {
      pending_space = !out.empty();
    } else {
      if (pending_space) out += ' ';
      pending_space = false;
      out.append(s.substr(pos, c.length));
    }
    pos += c.length;
  }
  return out;
}

enum class CharClass { kSpace, kLetter, kNumber, kOther };

// kSpace: matched by no alternative of the pattern, so skipped.
CharClass classify(const Utf8Char& c, bool case_sensitive) {
  if (!c.valid) return CharClass::kOther;
  if (is_letter(c.cp)) return CharClass::kLetter;
  if (is_number(c.cp)) return CharClass::kNumber;
  if (is_space(c.cp) || (!case_sensitive && is_unmatched_by_clip_pattern(c.cp)))
    return CharClass::kSpace;
  return CharClass::kOther;
}

bool starts_with(std::string_view s, size_t pos, std::string_view prefix) {
  return !prefix.empty() && s.substr(pos, prefix.size()) == prefix;
}

std::optional<std::string> special_from_json(const io::OrderedJson& j, const char* key,
                                             const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  throw IoError(cat("[tokenizer] ", where, ": '", key,
                    "' must be a string or an object with a string 'content' (found ", it->dump(),
                    ")"));
}

void apply_specials(const io::OrderedJson& j, ClipSpecialTokens& s, const std::string& where) {
  if (auto v = special_from_json(j, "bos_token", where)) s.bos = *v;
  if (auto v = special_from_json(j, "eos_token", where)) s.eos = *v;
  if (auto v = special_from_json(j, "pad_token", where)) s.pad = *v;
  if (auto v = special_from_json(j, "unk_token", where)) s.unk = *v;
}

std::vector<std::pair<std::string, std::string>> read_merges(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path))
    throw IoError(cat("[tokenizer] ", path.string(),
                      ": file not found (a CLIP tokenizer folder has vocab.json and merges.txt)"));
  const std::string text = io::read_file(path);
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size() && merges.size() < ClipTokenizer::kMaxMerges;) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    start = end + 1;
    ++line_no;
    if (line_no == 1 && line.substr(0, 8) == "#version") continue;
    std::vector<std::string_view> parts;  // whitespace-separated fields, as Python's str.split()
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      if (j > i) parts.push_back(line.substr(i, j - i));
      i = j;
    }
    if (parts.empty()) continue;
    if (parts.size() != 2)
      throw IoError(cat("[tokenizer] ", path.string(), ": line ", line_no, " has ", parts.size(),
                        " fields, expected two tokens separated by a space: '", line, "'"));
    merges.emplace_back(std::string(parts[0]), std::string(parts[1]));
  }
  return merges;
}

std::unordered_map<std::string, int64_t> read_vocab(const std::filesystem::path& path) {
  // Parsed unordered: io::read_json keeps key order with linear-time inserts, quadratic for 49408
  // entries (seconds).
  if (!std::filesystem::exists(path))
    throw IoError(cat("[tokenizer] ", path.string(), ": file not found"));
  io::Json j;
  try {
    j = io::Json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    throw IoError(cat("[tokenizer] ", path.string(), ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object())
    throw IoError(cat("[tokenizer] ", path.string(), ": expected a JSON object token -> id, found ",
                      j.type_name()));
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer())
      throw IoError(cat("[tokenizer] ", path.string(), ": token '", it.key(),
                        "' has a non-integer id ", it.value().dump()));
    vocab[it.key()] = it.value().get<int64_t>();
  }
  return vocab;
}

}  // namespace

struct ClipTokenizer::State {
  std::unordered_map<std::string, int64_t> encoder;
  std::unordered_map<int64_t, std::string> decoder;
  std::unordered_map<std::string, int64_t> ranks;  // "first second" -> rank
  ClipSpecialTokens specials;
  // The special strings as they appear in lower-cased text, with their ids: encode()'s specials.
  std::vector<std::pair<std::string, int64_t>> pattern_specials;
  int64_t bos = 0, eos = 0, pad = 0, unk = 0;
  int64_t max_length = 77;
  ClipTextOptions text;

  // Raw token bytes -> ids. Guarded by cache_mutex; shared by copies of the tokenizer.
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;

  void bpe(std::string_view raw, std::vector<int64_t>& out) const;
};

// OpenAI's bpe(): repeatedly merge every occurrence of the adjacent pair with the lowest rank.
void ClipTokenizer::State::bpe(std::string_view raw, std::vector<int64_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(std::string(raw));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const auto& table = byte_table();
  std::vector<std::string> word;
  word.reserve(raw.size());
  for (unsigned char b : raw) word.push_back(table[b]);
  word.back() += "</w>";

  std::string key;
  std::vector<std::string> merged;
  while (word.size() > 1) {
    int64_t best = INT64_MAX;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(1, ' ').append(word[i + 1]);
      auto it = ranks.find(key);
      if (it != ranks.end() && it->second < best) best = it->second, best_at = i;
    }
    if (best == INT64_MAX) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    merged.clear();
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i]));
        i += 1;
      }
    }
    word.swap(merged);
  }

  std::vector<int64_t> ids;
  ids.reserve(word.size());
  for (const auto& piece : word) {
    auto it = encoder.find(piece);
    ids.push_back(it == encoder.end() ? unk : it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() >= kMaxCacheEntries) cache.clear();
  cache.emplace(std::string(raw), std::move(ids));
}

ClipTokenizer::ClipTokenizer(std::shared_ptr<const State> state) : state_(std::move(state)) {}

ClipTokenizer::ClipTokenizer(std::unordered_map<std::string, int64_t> vocab,
                             std::vector<std::pair<std::string, std::string>> merges,
                             ClipSpecialTokens specials, int64_t model_max_length,
                             ClipTextOptions text_options) {
  auto s = std::make_shared<State>();
  s->text = text_options;
  if (model_max_length < 2)
    throw UsageError(
        cat("[tokenizer] model_max_length must be at least 2 (bos + eos), got ", model_max_length));
  s->max_length = model_max_length;
  s->decoder.reserve(vocab.size());
  for (const auto& [token, id] : vocab) {
    if (id < 0) throw UsageError(cat("[tokenizer] token '", token, "' has a negative id ", id));
    auto [it, inserted] = s->decoder.emplace(id, token);
    if (!inserted)
      throw UsageError(
          cat("[tokenizer] id ", id, " is used by both '", it->second, "' and '", token, "'"));
  }
  s->encoder = std::move(vocab);
  s->ranks.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r)
    s->ranks[merges[r].first + " " + merges[r].second] = static_cast<int64_t>(r);

  auto id_of = [&](const std::string& token, const char* what) {
    auto it = s->encoder.find(token);
    if (it == s->encoder.end())
      throw UsageError(cat("[tokenizer] ", what, " token '", token, "' is not in the vocabulary"));
    return it->second;
  };
  s->bos = id_of(specials.bos, "bos");
  s->eos = id_of(specials.eos, "eos");
  s->pad = id_of(specials.pad, "pad");
  s->unk = id_of(specials.unk, "unk");
  s->pattern_specials = {{lower_utf8(specials.bos), s->bos}, {lower_utf8(specials.eos), s->eos}};
  s->specials = std::move(specials);
  state_ = std::move(s);
}

ClipTokenizer ClipTokenizer::load(const std::filesystem::path& dir, ClipTextOptions text_options) {
  if (!std::filesystem::is_directory(dir))
    throw IoError(cat("[tokenizer] ", dir.string(), ": folder not found"));
  auto vocab = read_vocab(dir / "vocab.json");
  auto merges = read_merges(dir / "merges.txt");

  // transformers: tokenizer_config.json gives the special tokens; special_tokens_map.json overrides
  // them only in the legacy layout (no added_tokens_decoder).
  ClipSpecialTokens specials;
  int64_t max_length = 77;
  bool legacy = true;
  const auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    const auto where = config_path.string();
    const io::OrderedJson config = io::read_json(config_path);
    apply_specials(config, specials, where);
    // Unset or the "very large" sentinel: CLIP text encoders have 77 positions.
    const double m = io::get_or<double>(config, "model_max_length", 77.0, where);
    if (m >= 2 && m <= 1e6) max_length = static_cast<int64_t>(m);
    auto added = config.find("added_tokens_decoder");
    if (added != config.end() && added->is_object()) {
      legacy = false;
      for (auto it = added->begin(); it != added->end(); ++it) {
        auto content = it.value().find("content");
        if (content == it.value().end() || !content->is_string())
          throw IoError(cat("[tokenizer] ", where, ": added_tokens_decoder['", it.key(),
                            "'] has no string 'content'"));
        int64_t id = 0;
        try {
          id = std::stoll(it.key());
        } catch (const std::exception&) {
          throw IoError(cat("[tokenizer] ", where, ": added_tokens_decoder key '", it.key(),
                            "' is not an integer id"));
        }
        vocab[content->get<std::string>()] = id;
      }
    }
  }
  const auto map_path = dir / "special_tokens_map.json";
  if (legacy && std::filesystem::exists(map_path))
    apply_specials(io::read_json(map_path), specials, map_path.string());
  const auto added_path = dir / "added_tokens.json";
  if (std::filesystem::exists(added_path)) {
    for (const auto& [token, id] : read_vocab(added_path)) vocab[token] = id;
  }
  try {
    return ClipTokenizer(std::move(vocab), std::move(merges), std::move(specials), max_length,
                         text_options);
  } catch (const UsageError& e) {
    throw IoError(cat(e.what(), " (tokenizer folder ", dir.string(), ")"));
  }
}

std::vector<int64_t> ClipTokenizer::encode(std::string_view text) const {
  const State& s = *state_;
  const std::string cleaned = s.text.nfc ? clean_whitespace(normalize_utf8(text, NormalForm::kNfc))
                                         : clean_whitespace(text);
  return encode_prepared(lower_utf8(cleaned), s.pattern_specials);
}

std::vector<int64_t> ClipTokenizer::encode_prepared(
    std::string_view t, const std::vector<std::pair<std::string, int64_t>>& specials) const {
  const State& s = *state_;
  const bool case_sensitive = s.text.case_sensitive_pattern;
  std::vector<int64_t> ids;
  size_t pos = 0;
  while (pos < t.size()) {
    // The alternatives of CLIP's pattern, tried in order at each position.
    bool special = false;
    for (const auto& [str, id] : specials) {
      if (starts_with(t, pos, str)) {
        ids.push_back(id);
        pos += str.size();
        special = true;
        break;
      }
    }
    if (special) continue;
    size_t end = pos;
    if (t[pos] == '\'') {
      for (std::string_view suffix : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
        if (starts_with(t, pos, suffix)) {
          end = pos + suffix.size();
          break;
        }
      }
    }
    if (end == pos) {
      Utf8Char c = decode_utf8(t, pos);
      const CharClass cls = classify(c, case_sensitive);
      if (cls == CharClass::kSpace) {
        pos += c.length;
        continue;
      }
      end = pos + c.length;
      if (cls != CharClass::kNumber) {  // letters and "other" form runs; a number is one character
        while (end < t.size()) {
          c = decode_utf8(t, end);
          if (classify(c, case_sensitive) != cls) break;
          end += c.length;
        }
      }
    }
    s.bpe(t.substr(pos, end - pos), ids);
    pos = end;
  }
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(std::string_view text) const {
  const State& s = *state_;
  const std::vector<int64_t> content = encode(text);
  const size_t keep = std::min(content.size(), static_cast<size_t>(s.max_length - 2));
  std::vector<int64_t> ids;
  ids.reserve(s.max_length);
  ids.push_back(s.bos);
  ids.insert(ids.end(), content.begin(), content.begin() + keep);
  ids.push_back(s.eos);
  ids.resize(s.max_length, s.pad);
  return ids;
}

torch::Tensor ClipTokenizer::tokenize(const std::vector<std::string>& texts) const {
  const int64_t n = static_cast<int64_t>(texts.size());
  // ids: [N, max_length]
  torch::Tensor ids = torch::empty({n, state_->max_length}, torch::kInt64);
  auto* out = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const auto row = encode_padded(texts[i]);
    std::copy(row.begin(), row.end(), out + i * state_->max_length);
  }
  return ids;
}

ClipBatch ClipTokenizer::tokenize_batch(const std::vector<std::string>& texts) const {
  const State& s = *state_;
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(texts.size());
  size_t longest = 0;
  for (const auto& text : texts) {
    const std::vector<int64_t> content = encode(text);
    const size_t keep = std::min(content.size(), static_cast<size_t>(s.max_length - 2));
    std::vector<int64_t> row;
    row.reserve(keep + 2);
    row.push_back(s.bos);
    row.insert(row.end(), content.begin(), content.begin() + keep);
    row.push_back(s.eos);
    longest = std::max(longest, row.size());
    rows.push_back(std::move(row));
  }
  const int64_t n = static_cast<int64_t>(rows.size()), width = static_cast<int64_t>(longest);
  // ids, mask: [N, S]
  ClipBatch batch{torch::full({n, width}, s.pad, torch::kInt64),
                  torch::zeros({n, width}, torch::kInt64)};
  auto* ids = batch.input_ids.data_ptr<int64_t>();
  auto* mask = batch.attention_mask.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::copy(rows[i].begin(), rows[i].end(), ids + i * width);
    std::fill(mask + i * width, mask + i * width + rows[i].size(), 1);
  }
  return batch;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids) const {
  const auto& bytes_of = byte_decoder();
  std::string raw;
  for (int64_t id : ids) {
    const std::string& token = id_to_token(id);
    for (size_t pos = 0; pos < token.size();) {
      const Utf8Char c = decode_utf8(token, pos);
      auto it = c.valid ? bytes_of.find(c.cp) : bytes_of.end();
      if (it != bytes_of.end())
        raw += static_cast<char>(it->second);
      else
        raw.append(token, pos, c.length);  // an added token outside the byte alphabet
      pos += c.length;
    }
  }
  std::string text;
  text.reserve(raw.size());
  for (size_t pos = 0; pos < raw.size();) {
    if (raw.compare(pos, 4, "</w>") == 0) {
      text += ' ';
      pos += 4;
    } else {
      text += raw[pos++];
    }
  }
  return sanitize_utf8(text);
}

std::string ClipTokenizer::byte_encode(std::string_view raw) {
  const auto& table = byte_table();
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) out += table[b];
  return out;
}

int64_t ClipTokenizer::bos_id() const {
  return state_->bos;
}
int64_t ClipTokenizer::eos_id() const {
  return state_->eos;
}
int64_t ClipTokenizer::pad_id() const {
  return state_->pad;
}
int64_t ClipTokenizer::unk_id() const {
  return state_->unk;
}
int64_t ClipTokenizer::max_length() const {
  return state_->max_length;
}
int64_t ClipTokenizer::vocab_size() const {
  return static_cast<int64_t>(state_->encoder.size());
}
const ClipSpecialTokens& ClipTokenizer::special_tokens() const {
  return state_->specials;
}
const ClipTextOptions& ClipTokenizer::text_options() const {
  return state_->text;
}

int64_t ClipTokenizer::token_to_id(const std::string& token) const {
  auto it = state_->encoder.find(token);
  return it == state_->encoder.end() ? -1 : it->second;
}

const std::string& ClipTokenizer::id_to_token(int64_t id) const {
  auto it = state_->decoder.find(id);
  if (it == state_->decoder.end())
    throw UsageError(cat("[tokenizer] id ", id, " is not in the vocabulary (",
                         state_->encoder.size(), " entries)"));
  return it->second;
}

}  // namespace dro::text
