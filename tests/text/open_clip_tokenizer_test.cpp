// open_clip tokenize (HPSv2's bundled copy): golden ids of scorers/golden/hpsv2.safetensors and
// clip.safetensors, and the cleaning steps (ftfy, HTML unescaping, whitespace, lower-case),
// truncation and open_clip's own special strings.
#include "dro/text/open_clip_tokenizer.h"

#include <gtest/gtest.h>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "test_util.h"

namespace dro::text {
namespace {

using test::scorer_fixtures;
using test::golden_prompts;

OpenClipTokenizer tokenizer() {
  return OpenClipTokenizer::load(scorer_fixtures() / "clip-vit-h-14-tiny");
}

std::vector<int64_t> row(const torch::Tensor& t, int64_t i) {
  torch::Tensor r = t[i].contiguous().to(torch::kInt64);
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

void expect_golden(const char* file) {
  const auto golden = io::load_safetensors(scorer_fixtures() / "golden" / file);
  const auto texts = golden_prompts();
  ASSERT_EQ(texts.size(), 8u);
  const torch::Tensor ids = tokenizer().tokenize(texts);
  const torch::Tensor& expected = golden.at("input_ids");
  ASSERT_EQ(ids.sizes(), expected.sizes());
  for (int64_t i = 0; i < ids.size(0); ++i)
    EXPECT_EQ(row(ids, i), row(expected, i)) << file << " prompt " << i << ": '" << texts[i] << "'";
}

TEST(OpenClipTokenizer, GoldenHpsv2Ids) {
  DRO_REQUIRE_SCORER_FIXTURES();
  expect_golden("hpsv2.safetensors");
}

TEST(OpenClipTokenizer, GoldenClipScoreIds) {
  DRO_REQUIRE_SCORER_FIXTURES();
  expect_golden("clip.safetensors");
}

TEST(OpenClipTokenizer, CleansLikeBasicAndWhitespaceClean) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const OpenClipTokenizer tok = tokenizer();
  // Expected strings: whitespace_clean(basic_clean(text)).lower() of open_clip with ftfy 6.3.1.
  EXPECT_EQ(
      tok.clean(
          "don\xE2\x80\x99t stop \xE2\x80\x94 it\xE2\x80\x99s \xE2\x80\x9Cquoted\xE2\x80\x9D"),
      "don't stop \xE2\x80\x94 it's \"quoted\"");
  EXPECT_EQ(tok.clean("Tom &amp; Jerry &lt;3"), "tom & jerry <3");
  EXPECT_EQ(tok.clean("&amp;lt;"), "<");                 // ftfy, then html.unescape twice
  EXPECT_EQ(tok.clean("<b>&amp;amp;</b>"), "<b>&</b>");  // ftfy skips it, html.unescape does not
  EXPECT_EQ(tok.clean("  multiple   spaces\tand\nnewline  "), "multiple spaces and newline");
  EXPECT_EQ(tok.clean("\xEF\xBC\xA6\xEF\xBC\xB5\xEF\xBC\xAC\xEF\xBC\xAC \xEF\xAC\x81ne"),
            "full fine");
  EXPECT_EQ(tok.clean("sch\xC3\x83\xC2\xB6n"), "sch\xC3\xB6n");  // mojibake repaired
  EXPECT_EQ(tok.clean(""), "");
}

TEST(OpenClipTokenizer, OwnSpecialStringsAndTruncation) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const OpenClipTokenizer tok = tokenizer();
  EXPECT_EQ(tok.sot_id(), 49406);
  EXPECT_EQ(tok.eot_id(), 49407);
  // "<start_of_text>" is one token (the '<' turns ftfy's entity decoding off, nothing else);
  // OpenAI's "<|startoftext|>" is ordinary text here.
  EXPECT_EQ(tok.encode("<start_of_text>"), std::vector<int64_t>{49406});
  EXPECT_EQ(tok.encode("<END_OF_TEXT>"), std::vector<int64_t>{49407});
  EXPECT_GT(tok.encode("<|startoftext|>").size(), 1u);
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "cat ";
  const torch::Tensor ids = tok.tokenize({long_text, "a cat"});
  ASSERT_EQ(ids.size(1), 77);
  const auto first = row(ids, 0);
  EXPECT_EQ(first.front(), 49406);
  EXPECT_EQ(first.back(), 49407);
  EXPECT_EQ(first[75], first[1]);  // a "cat", not a second eot before the last position
  const auto second = row(ids, 1);
  EXPECT_EQ(second[3], 49407);
  EXPECT_EQ(second[4], 0);
  EXPECT_EQ(tok.tokenize({"a cat"}, 3).size(1), 3);
  EXPECT_EQ(row(tok.tokenize({"a cat"}, 3), 0), (std::vector<int64_t>{49406, 320, 49407}));
  EXPECT_THROW(tok.tokenize({"a"}, 0), UsageError);
}

}  // namespace
}  // namespace dro::text
