// CLIP's byte-level BPE tokenizer (OpenAI clip/simple_tokenizer.py) with the Hugging Face
// CLIPTokenizer's special tokens, truncation and padding, reading a transformers `tokenizer/`
// folder.
//
// Text handling follows the reference: surrounding whitespace stripped, whitespace runs collapsed
// to one space, Python-style lower-casing, CLIP's pre-tokenisation pattern
//   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// then BPE over the UTF-8 bytes mapped to printable characters, the last one marked `</w>`.
// ClipTextOptions::fast_tokenizer() adds NFC first, as Hugging Face's CLIPTokenizerFast does.
// Not done here: ftfy.fix_text and HTML-entity unescaping (open_clip_tokenizer.h does them). Like
// Hugging Face's CLIPTokenizer, "&amp;" stays four characters (OpenAI's tokenizer would unescape
// it). Input that is not valid UTF-8 is tokenized byte for byte (an invalid byte counts as
// punctuation).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace dro::text {

// Special-token strings; the defaults are Hugging Face CLIPTokenizer's.
struct ClipSpecialTokens {
  std::string bos = "<|startoftext|>";
  std::string eos = "<|endoftext|>";
  std::string pad = "<|endoftext|>";  // SDXL's tokenizer_2 uses "!"
  std::string unk = "<|endoftext|>";  // stands in for a BPE piece missing from the vocabulary
};

// How text is prepared for the pattern. The defaults are OpenAI's tokenizer and Hugging Face's slow
// CLIPTokenizer (without ftfy).
struct ClipTextOptions {
  // Unicode NFC before the whitespace cleaning: the first step of Hugging Face CLIPTokenizerFast's
  // normalizer (NFC, \s+ -> " ", lower-case).
  bool nfc = false;
  // The pattern applied case-sensitively, as the tokenizers library's Split pre-tokenizer does.
  // OpenAI compiles it with re.IGNORECASE, under which U+0345 (it folds to a letter) matches no
  // alternative and is dropped; case-sensitively it is kept like punctuation.
  bool case_sensitive_pattern = false;

  // Hugging Face CLIPTokenizerFast, e.g. PickScore's processor (laion/CLIP-ViT-H-14 files).
  static ClipTextOptions fast_tokenizer() { return {true, true}; }
};

// A tokenized batch as Hugging Face tokenizers return it.
struct ClipBatch {
  torch::Tensor input_ids;       // int64 [N, S]
  torch::Tensor attention_mask;  // int64 [N, S]: 1 for tokens, 0 for padding
};

// Thread-safe: encoding only reads shared state, and the BPE cache (shared by copies) is locked.
class ClipTokenizer {
 public:
  // Hugging Face's CLIPTokenizer keeps at most this many merges of merges.txt.
  static constexpr size_t kMaxMerges = 49152 - 256 - 2;

  // From an in-memory vocabulary (byte-level token -> id, as in vocab.json) and merges in rank
  // order (as in merges.txt). Every special token must be in `vocab`; UsageError otherwise.
  ClipTokenizer(std::unordered_map<std::string, int64_t> vocab,
                std::vector<std::pair<std::string, std::string>> merges,
                ClipSpecialTokens specials = {}, int64_t model_max_length = 77,
                ClipTextOptions text_options = {});

  // Reads vocab.json, merges.txt and, when present, tokenizer_config.json, special_tokens_map.json
  // and added_tokens.json. IoError naming the file for anything missing or malformed.
  static ClipTokenizer load(const std::filesystem::path& dir, ClipTextOptions text_options = {});

  // BPE ids of `text`, without bos/eos and without truncation.
  std::vector<int64_t> encode(std::string_view text) const;

  // CLIP's pattern and BPE alone, on text the caller has already cleaned and lower-cased (no
  // whitespace collapsing, lower-casing or NFC here). Each string of `specials` is kept whole as
  // its id wherever it occurs, tried in order before the pattern's other alternatives (encode()
  // passes the bos and eos strings; open_clip has its own).
  std::vector<int64_t> encode_prepared(
      std::string_view text, const std::vector<std::pair<std::string, int64_t>>& specials) const;

  // [bos] + first max_length()-2 ids + [eos], padded with pad_id() to max_length() ids.
  std::vector<int64_t> encode_padded(std::string_view text) const;

  // encode_padded of every text: int64 [N, max_length()] on the CPU.
  torch::Tensor tokenize(const std::vector<std::string>& texts) const;

  // Hugging Face tokenizer(texts, padding=True, truncation=True, max_length=max_length()): each
  // text as [bos] + its first max_length()-2 ids + [eos], padded with pad_id() to the longest
  // text of the batch (attention mask 0 there). CPU tensors [N, longest]; [0, 0] for no texts.
  ClipBatch tokenize_batch(const std::vector<std::string>& texts) const;

  // Ids back to text as OpenAI's decode does: bytes joined, `</w>` read as a space, invalid UTF-8
  // replaced by U+FFFD, special tokens kept verbatim. UsageError for an id not in the vocabulary.
  std::string decode(const std::vector<int64_t>& ids) const;

  // The byte-level spelling of raw bytes (each byte as one printable character), the form the
  // vocabulary and merges use: byte_encode("a b") == "a\u0120b".
  static std::string byte_encode(std::string_view raw);

  int64_t bos_id() const;
  int64_t eos_id() const;
  int64_t pad_id() const;
  int64_t unk_id() const;
  int64_t max_length() const;
  int64_t vocab_size() const;  // number of entries in the vocabulary (including added tokens)
  const ClipSpecialTokens& special_tokens() const;
  const ClipTextOptions& text_options() const;
  // Id of an exact vocabulary entry, or -1.
  int64_t token_to_id(const std::string& token) const;
  // Vocabulary entry of an id; UsageError when there is none.
  const std::string& id_to_token(int64_t id) const;

 private:
  struct State;
  explicit ClipTokenizer(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

}  // namespace dro::text
