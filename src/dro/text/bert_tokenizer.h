// BERT's WordPiece tokenizer as transformers' (slow) BertTokenizer runs it on a `vocab.txt`
// (bert-base-uncased), with the special-token handling of PreTrainedTokenizer.tokenize():
//   1. special tokens written in the text ([CLS], [SEP], [PAD], [MASK], [UNK] and any added with
//      add_special_token(), case-sensitive) are kept whole; with do_lower_case the rest is
//      lower-cased code point by code point (Python's str.lower());
//   2. BasicTokenizer: NUL, U+FFFD and control characters dropped, whitespace -> space, spaces
//      around CJK ideographs, NFC, split on Python whitespace, lower-case, strip accents (NFD,
//      drop Mn), every punctuation character (ASCII symbols included) its own token;
//   3. WordPiece: greedy longest match, continuation pieces prefixed "##"; a word without a
//      match, or longer than 100 code points, becomes [UNK].
// encode_batch() is `tokenizer(texts, padding="max_length", truncation=True, max_length=N)`:
// [CLS] + the first N-2 ids + [SEP], right-padded with [PAD]. Not here: pairs of sequences,
// token_type_ids, the fast (Rust) tokenizer, do_basic_tokenize=False, offsets.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <torch/types.h>

namespace dro::text {

// BertTokenizer's constructor options as tokenizer_config.json may set them.
struct BertTokenizerOptions {
  bool do_lower_case = true;
  std::optional<bool> strip_accents;  // unset: follows do_lower_case
  bool tokenize_chinese_chars = true;
  std::string unk_token = "[UNK]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
  std::string cls_token = "[CLS]";
  std::string mask_token = "[MASK]";
};

struct BertBatch {
  torch::Tensor input_ids;       // int64 [N, max_length]
  torch::Tensor attention_mask;  // int64 [N, max_length]: 1 for tokens, 0 for padding
};

// Thread-safe for encoding (it only reads); add_special_token() is not.
class BertTokenizer {
 public:
  // WordpieceTokenizer's max_input_chars_per_word.
  static constexpr size_t kMaxInputCharsPerWord = 100;

  // `lines`: the vocabulary in id order, one token per line as vocab.txt holds it (a repeated
  // token keeps its last line's id, as transformers' load_vocab). IoError naming `where` when it
  // is empty or lacks one of the five special tokens.
  BertTokenizer(const std::vector<std::string>& lines, BertTokenizerOptions options,
                const std::string& where = "vocab");

  // Reads DIR/vocab.txt and, when present, DIR/tokenizer_config.json. IoError naming the file for
  // a missing or empty vocab.txt, malformed JSON, or an option of the wrong type.
  static BertTokenizer load(const std::filesystem::path& dir);

  // tokenizer.add_special_tokens(): `token` keeps its vocabulary id when it has one, else gets
  // the next id (len(tokenizer)); from then on it is kept whole in the text. Returns its id.
  int64_t add_special_token(const std::string& token);

  // The tokens of `text` (steps 1-3 above), without [CLS]/[SEP].
  std::vector<std::string> tokenize(std::string_view text) const;
  // Their ids; a token outside the vocabulary (cannot happen for WordPiece output) is [UNK].
  std::vector<int64_t> encode(std::string_view text) const;
  // [CLS] ids[:max_length - 2] [SEP], padded with [PAD] to max_length, for every text.
  BertBatch encode_batch(const std::vector<std::string>& texts, int64_t max_length) const;

  // The id of `token` (vocabulary or added), or -1.
  int64_t token_id(const std::string& token) const;
  // len(tokenizer): vocabulary plus added tokens.
  int64_t size() const { return size_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  const BertTokenizerOptions& options() const { return options_; }

 private:
  void basic_tokenize(const std::u32string& text, std::vector<std::string>& out) const;
  void wordpiece(const std::u32string& word, std::vector<std::string>& out) const;

  BertTokenizerOptions options_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::u32string> specials_;  // kept whole in the text, in the reference's order
  int64_t size_ = 0;
  int64_t cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, unk_id_ = -1;
};

}  // namespace dro::text
