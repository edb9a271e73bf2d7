// libFuzzer target: the CLIP tokenizers on arbitrary bytes (text/clip_tokenizer.h as Hugging Face's
// slow and fast CLIPTokenizer prepare text, and text/open_clip_tokenizer.h with ftfy and HTML
// unescaping). The vocabulary is a tokenizer folder: $DRO_FUZZ_TOKENIZER, else the fixture folder
// the build names (DRO_FIXTURES_DIR/tiny-sd15/tokenizer). No input may make encoding throw: every
// exception, crash or sanitizer report is a finding, as is an id outside the vocabulary or a row
// of the wrong length.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/text/clip_tokenizer.h"
#include "dro/text/open_clip_tokenizer.h"
#include "fuzz_util.h"

namespace {

using dro::text::ClipTextOptions;
using dro::text::ClipTokenizer;
using dro::text::OpenClipTokenizer;

struct Tokenizers {
  ClipTokenizer slow, fast;
  OpenClipTokenizer open_clip;
};

const Tokenizers& tokenizers() {
  static const Tokenizers* t = [] {
    const char* env = std::getenv("DRO_FUZZ_TOKENIZER");
    const std::filesystem::path dir = env && *env ? env : DRO_FUZZ_TOKENIZER_DIR;
    try {
      auto slow = ClipTokenizer::load(dir);
      auto fast = ClipTokenizer::load(dir, ClipTextOptions::fast_tokenizer());
      return new Tokenizers{slow, fast, OpenClipTokenizer(slow)};
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz: cannot load the tokenizer (set DRO_FUZZ_TOKENIZER): %s\n",
                   e.what());
      std::exit(1);
    }
  }();
  return *t;
}

void check_ids(const ClipTokenizer& tok, const std::vector<int64_t>& ids, const char* what) {
  for (int64_t id : ids)
    DRO_FUZZ_CHECK(tok.token_to_id(tok.id_to_token(id)) == id, "%s: id %lld", what,
                   static_cast<long long>(id));
  (void)tok.decode(ids);
}

void check_rows(const torch::Tensor& ids, int64_t rows, int64_t width, const char* what) {
  DRO_FUZZ_CHECK(ids.dim() == 2 && ids.size(0) == rows && ids.size(1) == width,
                 "%s: shape [%lld, %lld]", what, static_cast<long long>(ids.size(0)),
                 static_cast<long long>(ids.dim() == 2 ? ids.size(1) : -1));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizers& t = tokenizers();
  const std::string text(reinterpret_cast<const char*>(data), size);

  for (const ClipTokenizer* tok : {&t.slow, &t.fast}) {
    check_ids(*tok, tok->encode(text), "encode");
    const auto padded = tok->encode_padded(text);
    DRO_FUZZ_CHECK(static_cast<int64_t>(padded.size()) == tok->max_length(),
                   "encode_padded: %zu ids", padded.size());
    DRO_FUZZ_CHECK(padded.front() == tok->bos_id(), "encode_padded: no bos");
    check_ids(*tok, padded, "encode_padded");
    const auto batch = tok->tokenize_batch({text, ""});
    DRO_FUZZ_CHECK(batch.input_ids.sizes() == batch.attention_mask.sizes(), "tokenize_batch: mask");
    DRO_FUZZ_CHECK(batch.input_ids.size(1) <= tok->max_length(), "tokenize_batch: too long");
  }
  check_rows(t.slow.tokenize({text}), 1, t.slow.max_length(), "tokenize");

  (void)t.open_clip.clean(text);
  check_ids(t.open_clip.bpe(), t.open_clip.encode(text), "open_clip encode");
  const torch::Tensor rows = t.open_clip.tokenize({text});
  check_rows(rows, 1, OpenClipTokenizer::kContextLength, "open_clip tokenize");
  DRO_FUZZ_CHECK(rows[0][0].item<int64_t>() == t.open_clip.sot_id(), "open_clip: no sot");
  return 0;
}
