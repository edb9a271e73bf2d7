// open_clip's tokenize() as HPSv2's bundled copy has it (hpsv2/src/open_clip/tokenizer.py), used by
// the HPSv2 and CLIP-score scorers: basic_clean (ftfy.fix_text, html.unescape twice, strip),
// whitespace_clean (\s+ -> " ", strip), lower-casing, then CLIP's pattern with open_clip's own
// special strings "<start_of_text>" / "<end_of_text>" (OpenAI's "<|startoftext|>" is plain text
// here) and the byte-level BPE of ClipTokenizer. Every row is [sot] + ids + [eot], cut to the
// context length with the last id replaced by eot when longer, padded with 0.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "dro/text/clip_tokenizer.h"

namespace dro::text {

class OpenClipTokenizer {
 public:
  // open_clip's default context length (every CLIP model uses 77).
  static constexpr int64_t kContextLength = 77;

  // Over the BPE table of `bpe`; its bos / eos ids stand for <start_of_text> / <end_of_text>
  // (49406 / 49407 in the CLIP vocabulary, where open_clip puts them too).
  explicit OpenClipTokenizer(ClipTokenizer bpe);

  // From a folder with vocab.json and merges.txt (a Hugging Face CLIP tokenizer folder, e.g. the
  // laion/CLIP-ViT-H-14 repository's files, the same table as open_clip's bpe_simple_vocab_16e6).
  static OpenClipTokenizer load(const std::filesystem::path& dir);

  // whitespace_clean(basic_clean(text)).lower(): the text the pattern sees.
  std::string clean(std::string_view text) const;

  // SimpleTokenizer.encode(text): BPE ids without sot / eot.
  std::vector<int64_t> encode(std::string_view text) const;

  // tokenize(texts, context_length): int64 [N, context_length] on the CPU. UsageError for a
  // context length below 1.
  torch::Tensor tokenize(const std::vector<std::string>& texts,
                         int64_t context_length = kContextLength) const;

  int64_t sot_id() const { return bpe_.bos_id(); }
  int64_t eot_id() const { return bpe_.eos_id(); }
  const ClipTokenizer& bpe() const { return bpe_; }

 private:
  ClipTokenizer bpe_;
};

}  // namespace dro::text
