// PickScore's text side: Hugging Face CLIPTokenizerFast on the laion/CLIP-ViT-H-14 files (NFC,
// whitespace runs -> one space, lower-case, CLIP's pattern, byte-level BPE), called as
// processor(text=prompts, padding=True, truncation=True, max_length=77). Golden ids from
// scorers/golden/pickscore.safetensors.
#include <gtest/gtest.h>

#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/text/clip_tokenizer.h"
#include "test_util.h"

namespace dro::text {
namespace {

using test::scorer_fixtures;
using test::golden_prompts;

ClipTokenizer pickscore_tokenizer() {
  return ClipTokenizer::load(scorer_fixtures() / "clip-vit-h-14-tiny", ClipTextOptions::fast_tokenizer());
}

// Row i of an int64 [N, S] tensor, as a vector.
std::vector<int64_t> row(const torch::Tensor& t, int64_t i) {
  torch::Tensor r = t[i].contiguous().to(torch::kInt64);
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

TEST(PickScoreTokenizer, GoldenBatchOfEightPrompts) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto golden = io::load_safetensors(scorer_fixtures() / "golden/pickscore.safetensors");
  const auto texts = golden_prompts();
  ASSERT_EQ(texts.size(), 8u);
  const ClipBatch batch = pickscore_tokenizer().tokenize_batch(texts);
  const torch::Tensor& ids = golden.at("input_ids");
  const torch::Tensor& mask = golden.at("attention_mask");
  ASSERT_EQ(batch.input_ids.sizes(), ids.sizes());
  ASSERT_EQ(batch.attention_mask.sizes(), mask.sizes());
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_EQ(row(batch.input_ids, i), row(ids, i)) << "prompt " << i << ": '" << texts[i] << "'";
    EXPECT_EQ(row(batch.attention_mask, i), row(mask, i)) << "prompt " << i;
  }
  const torch::Tensor counts = batch.attention_mask.sum(1);
  EXPECT_TRUE(torch::equal(counts, golden.at("num_tokens").to(torch::kInt64)))
      << counts << " vs " << golden.at("num_tokens");
}

TEST(PickScoreTokenizer, GoldenBatchPadsToItsLongest) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto golden = io::load_safetensors(scorer_fixtures() / "golden/pickscore.safetensors");
  const auto texts = golden_prompts();
  const ClipBatch batch = pickscore_tokenizer().tokenize_batch({texts[0], texts[1], texts[2]});
  EXPECT_TRUE(torch::equal(batch.input_ids, golden.at("batch3.input_ids")))
      << batch.input_ids << "\nexpected\n"
      << golden.at("batch3.input_ids");
  EXPECT_TRUE(torch::equal(batch.attention_mask, golden.at("batch3.attention_mask")));
}

TEST(PickScoreTokenizer, NormalisesToNfcFirst) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const ClipTokenizer fast = pickscore_tokenizer();
  const ClipTokenizer slow = ClipTokenizer::load(scorer_fixtures() / "clip-vit-h-14-tiny");
  const std::string composed = "caf\xC3\xA9", decomposed = "cafe\xCC\x81";
  EXPECT_EQ(fast.encode(decomposed), fast.encode(composed));
  EXPECT_NE(slow.encode(decomposed), slow.encode(composed));
  EXPECT_EQ(slow.encode(composed), fast.encode(composed));
  // The case-sensitive pattern keeps U+0345 (OpenAI's case-insensitive one drops it).
  EXPECT_EQ(slow.encode("a \xCD\x85"), slow.encode("a"));
  EXPECT_EQ(fast.encode("a \xCD\x85").size(), slow.encode("a").size() + 2);
  EXPECT_TRUE(fast.text_options().nfc);
  EXPECT_FALSE(slow.text_options().nfc);
}

TEST(PickScoreTokenizer, BatchTruncatesAndPads) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const ClipTokenizer tok = pickscore_tokenizer();
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "cat ";
  const ClipBatch batch = tok.tokenize_batch({"a cat", long_text, ""});
  ASSERT_EQ(batch.input_ids.size(0), 3);
  ASSERT_EQ(batch.input_ids.size(1), 77);  // bos + 75 + eos
  const auto ids = row(batch.input_ids, 1);
  EXPECT_EQ(ids.front(), tok.bos_id());
  EXPECT_EQ(ids.back(), tok.eos_id());
  EXPECT_EQ(row(batch.attention_mask, 0)[3], 1);
  EXPECT_EQ(row(batch.attention_mask, 0)[4], 0);
  EXPECT_EQ(row(batch.input_ids, 0)[4], tok.pad_id());
  EXPECT_EQ(batch.attention_mask.sum().item<int64_t>(), 4 + 77 + 2);
  const ClipBatch none = tok.tokenize_batch({});
  EXPECT_EQ(none.input_ids.dim(), 2);
  EXPECT_EQ(none.input_ids.numel(), 0);
  // tokenize() still pads every row to 77 (the Stable Diffusion pipelines' call).
  EXPECT_EQ(tok.tokenize({"a cat"}).size(1), 77);
}

}  // namespace
}  // namespace dro::text
