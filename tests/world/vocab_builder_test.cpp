// The world tokenizer: every caption word is one token, other text still tokenizes byte-wise.
#include "dro/core/error.h"
#include "dro/text/clip_tokenizer.h"
#include "dro/world/prompt.h"
#include "dro/world/vocab_builder.h"
#include "test_util.h"

namespace dro::world {
namespace {

TEST(VocabBuilder, EveryCaptionWordIsOneToken) {
  test::TempDir tmp;
  write_world_tokenizer(tmp / "tokenizer", 16);
  const auto tok = text::ClipTokenizer::load(tmp / "tokenizer");
  EXPECT_EQ(tok.max_length(), 16);
  const auto words = world_caption_words();
  ASSERT_GE(words.size(), 20u);  // 4 shapes + 6 colours + 2 sizes + 5 positions + 2 backgrounds
  for (const auto& w : words) {
    const auto ids = tok.encode(w);
    ASSERT_EQ(ids.size(), 1u) << "word '" << w << "'";
    EXPECT_EQ(tok.id_to_token(ids[0]), text::ClipTokenizer::byte_encode(w) + "</w>");
  }
  for (const auto& p : all_prompts()) {
    const auto ids = tok.encode(p.caption());
    ASSERT_LE(ids.size() + 2, 16u) << p.caption();
    // Decoding ends every token with a space, so the comma comes out as " , ".
    std::string expected = p.caption() + " ";
    expected.replace(expected.find(", "), 2, " , ");
    EXPECT_EQ(tok.decode(ids), expected);
  }
  // Words outside the world fall back to byte tokens and round-trip.
  const auto ids = tok.encode("a zebra, 42!");
  EXPECT_GT(ids.size(), 4u);
  EXPECT_EQ(tok.decode(ids), "a zebra , 4 2 ! ");
  EXPECT_EQ(tok.id_to_token(tok.bos_id()), "<|startoftext|>");
  EXPECT_EQ(tok.eos_id(), tok.vocab_size() - 1);
  EXPECT_EQ(tok.pad_id(), tok.eos_id());
}

TEST(VocabBuilder, RejectsBadWords) {
  EXPECT_THROW(build_world_vocab({"Upper"}), UsageError);
  EXPECT_THROW(build_world_vocab({"two words"}), UsageError);
}

}  // namespace
}  // namespace dro::world
