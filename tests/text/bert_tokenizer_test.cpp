// BERT WordPiece tokenizer: ImageReward's ids of the golden prompts (bert-base-uncased's real
// vocab.txt plus [DEC] / [ENC]), the BasicTokenizer / WordpieceTokenizer cases of transformers'
// own tests, the reference's special-token and cleaning rules, and errors for bad files.
#include "dro/text/bert_tokenizer.h"

#include <functional>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/safetensors.h"
#include "test_util.h"

namespace dro::text {
namespace {

namespace fs = std::filesystem;

fs::path bert_dir() {
  return test::scorer_fixtures() / "bert-base-uncased";
}

std::vector<int64_t> ints(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

BertTokenizer imagereward_tokenizer() {
  BertTokenizer t = BertTokenizer::load(bert_dir());
  t.add_special_token("[DEC]");
  t.add_special_token("[ENC]");
  return t;
}

// A small vocabulary in the style of transformers' test_tokenization_bert.py.
BertTokenizer small(BertTokenizerOptions o = {}) {
  return BertTokenizer(
      {"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "want",         "##want",       "##ed", "wa",
       "un",    "runn",  "##ing", ",",     "low",    "lowest",       "hello",        "!",    "how",
       "are",   "you",   "?",     "hällo", "hallo",  "\xe5\x8d\x9a", "\xe6\x8e\xa8", "ah",   "zz",
       "c",     "##af",  "##é",   "##e",   "x"},
      o, "test vocab");
}

TEST(BertTokenizer, GoldenImageRewardIds) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold =
      io::load_safetensors(test::scorer_fixtures() / "golden" / "imagereward.safetensors");
  const BertTokenizer tok = imagereward_tokenizer();
  const auto prompts = test::golden_prompts();
  const BertBatch b = tok.encode_batch(prompts, 35);
  const torch::Tensor& ids = gold.at("input_ids");
  const torch::Tensor& mask = gold.at("attention_mask");
  const int64_t differing = (b.input_ids != ids).sum().item<int64_t>();
  std::cout << "[bert-tokenizer] golden input_ids: " << differing << " of " << ids.numel()
            << " ids differ, max |diff| " << test::max_abs_diff(b.input_ids, ids) << "\n";
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_TRUE(torch::equal(b.input_ids[i], ids[i]))
        << "prompt " << i << " '" << prompts[i] << "'\n got " << b.input_ids[i] << "\n want "
        << ids[i];
  EXPECT_TRUE(torch::equal(b.attention_mask, mask));
  // The README's token counts: 10, 2, 12, 35 (truncated), 15, 22, 7, 11.
  EXPECT_EQ(ints(b.attention_mask.sum(1)), (std::vector<int64_t>{10, 2, 12, 35, 15, 22, 7, 11}));
}

TEST(BertTokenizer, SpecialTokensOfImageReward) {
  DRO_REQUIRE_SCORER_FIXTURES();
  BertTokenizer tok = BertTokenizer::load(bert_dir());
  EXPECT_EQ(tok.size(), 30522);
  EXPECT_EQ(tok.add_special_token("[DEC]"), 30522);
  EXPECT_EQ(tok.add_special_token("[ENC]"), 30523);
  EXPECT_EQ(tok.add_special_token("[ENC]"), 30523);  // adding again changes nothing
  EXPECT_EQ(tok.size(), 30524);
  EXPECT_EQ(tok.add_special_token("[CLS]"), 101);
  EXPECT_EQ(tok.size(), 30524);
  EXPECT_EQ(tok.cls_id(), 101);
  EXPECT_EQ(tok.sep_id(), 102);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.unk_id(), 100);
  EXPECT_EQ(tok.encode("a photograph of an astronaut riding a horse"),
            (std::vector<int64_t>{1037, 9982, 1997, 2019, 19748, 5559, 1037, 3586}));
  // Special tokens written in the text stay whole (case-sensitive); the rest is lower-cased.
  EXPECT_EQ(tok.encode("[ENC] a [CLS]b[DEC]"),
            (std::vector<int64_t>{30523, 1037, 101, 1038, 30522}));
  EXPECT_EQ(tok.tokenize("[cls]"), (std::vector<std::string>{"[", "cl", "##s", "]"}));
}

TEST(BertTokenizer, TransformersBasicTokenizerCases) {
  BertTokenizer lower = small();
  EXPECT_EQ(lower.tokenize(" \tHeLLo!how  \n Are yoU?  "),
            (std::vector<std::string>{"hello", "!", "how", "are", "you", "?"}));
  // Accents are stripped with lower-casing unless strip_accents is false.
  EXPECT_EQ(lower.tokenize(" \tHäLLo!how  \n Are yoU?  "),
            (std::vector<std::string>{"hallo", "!", "how", "are", "you", "?"}));
  BertTokenizerOptions keep;
  keep.strip_accents = false;
  EXPECT_EQ(small(keep).tokenize(" \tHäLLo!how  \n Are yoU?  "),
            (std::vector<std::string>{"hällo", "!", "how", "are", "you", "?"}));
  // CJK ideographs become words of their own.
  EXPECT_EQ(lower.tokenize("ah\xe5\x8d\x9a\xe6\x8e\xa8zz"),
            (std::vector<std::string>{"ah", "\xe5\x8d\x9a", "\xe6\x8e\xa8", "zz"}));
  // Without lower-casing nothing is changed but the splitting (HeLLo is not in the vocabulary).
  BertTokenizerOptions cased;
  cased.do_lower_case = false;
  EXPECT_EQ(small(cased).tokenize(" \tHeLLo!how  \n Are yoU?  "),
            (std::vector<std::string>{"[UNK]", "!", "how", "[UNK]", "[UNK]", "?"}));
}

TEST(BertTokenizer, TransformersWordpieceCases) {
  const BertTokenizer t = small();
  EXPECT_TRUE(t.tokenize("").empty());
  EXPECT_EQ(t.tokenize("unwanted running"),
            (std::vector<std::string>{"un", "##want", "##ed", "runn", "##ing"}));
  EXPECT_EQ(t.tokenize("unwantedX running"), (std::vector<std::string>{"[UNK]", "runn", "##ing"}));
  // Greedy longest match: "lowest" whole, not "low" + a continuation.
  EXPECT_EQ(t.tokenize("lowest,low"), (std::vector<std::string>{"lowest", ",", "low"}));
  // A word over 100 code points is [UNK] without trying; one of 100 is tokenized.
  std::string word = "c";
  for (int i = 0; i < 49; ++i) word += "af";  // 99 code points
  ASSERT_EQ(t.tokenize(word).size(), 50u);
  EXPECT_EQ(t.tokenize(word + "e").size(), 51u);                            // 100
  EXPECT_EQ(t.tokenize(word + "af"), (std::vector<std::string>{"[UNK]"}));  // 101
  EXPECT_EQ(t.tokenize(std::string(101, 'x')), (std::vector<std::string>{"[UNK]"}));
}

TEST(BertTokenizer, CleaningAndSplittingAsTheReference) {
  const BertTokenizer t = small();
  // NUL, U+FFFD and controls (Cc, Cf) go; Zs becomes a space; U+2028 splits (str.split()).
  EXPECT_EQ(t.tokenize(std::string("how\0are", 7)),
            (std::vector<std::string>{"[UNK]"}));  // "howare"
  EXPECT_EQ(t.tokenize("how\xe2\x80\x8b"
                       "are"),
            (std::vector<std::string>{"[UNK]"}));  // U+200B Cf
  EXPECT_EQ(t.tokenize("how\xc2\xa0"
                       "are"),
            (std::vector<std::string>{"how", "are"}));  // U+00A0 Zs
  EXPECT_EQ(t.tokenize("how\xe2\x80\xa8"
                       "are"),
            (std::vector<std::string>{"how", "are"}));  // U+2028
  EXPECT_EQ(t.tokenize("how\x1f"
                       "are"),
            (std::vector<std::string>{"[UNK]"}));  // Cc: dropped
  // Accents: NFC first ("e" + U+0301 composes), lower-case, then NFD and the marks dropped.
  EXPECT_EQ(t.tokenize("CAFE\xcc\x81"), (std::vector<std::string>{"c", "##af", "##e"}));
  EXPECT_EQ(t.tokenize("CAF\xc3\x89"), (std::vector<std::string>{"c", "##af", "##e"}));
  BertTokenizerOptions keep;
  keep.strip_accents = false;
  EXPECT_EQ(small(keep).tokenize("CAF\xc3\x89"), (std::vector<std::string>{"c", "##af", "##é"}));
  EXPECT_EQ(small(keep).tokenize("CAFE\xcc\x81"), (std::vector<std::string>{"c", "##af", "##é"}));
  // A word of combining marks only vanishes.
  EXPECT_TRUE(t.tokenize("\xcc\x81\xcc\x81").empty());
  // ASCII symbols count as punctuation, and each is its own token.
  EXPECT_EQ(t.tokenize("how$are"), (std::vector<std::string>{"how", "[UNK]", "are"}));
  EXPECT_EQ(t.tokenize("!!"), (std::vector<std::string>{"!", "!"}));
}

TEST(BertTokenizer, PaddingAndTruncation) {
  const BertTokenizer t = small();
  const BertBatch b = t.encode_batch({"how are you", "", "how how how how how"}, 5);
  // [CLS]=1, [SEP]=2, [PAD]=3, how=17, are=18, you=19
  EXPECT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(ints(b.input_ids[0]), (std::vector<int64_t>{1, 17, 18, 19, 2}));
  EXPECT_EQ(ints(b.input_ids[1]), (std::vector<int64_t>{1, 2, 3, 3, 3}));
  EXPECT_EQ(ints(b.input_ids[2]), (std::vector<int64_t>{1, 17, 17, 17, 2}));
  EXPECT_EQ(ints(b.attention_mask[1]), (std::vector<int64_t>{1, 1, 0, 0, 0}));
  EXPECT_THROW(t.encode_batch({"x"}, 1), UsageError);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  return "(no IoError)";
}

TEST(BertTokenizer, BadFilesAreClearErrors) {
  test::TempDir dir;
  // No vocab.txt.
  std::string e = error_of([&] { BertTokenizer::load(dir.path()); });
  EXPECT_NE(e.find("no vocab.txt"), std::string::npos) << e;
  EXPECT_NE(e.find(dir.path().string()), std::string::npos) << e;
  // An empty one.
  io::write_file_atomically(dir / "vocab.txt", "");
  e = error_of([&] { BertTokenizer::load(dir.path()); });
  EXPECT_NE(e.find("vocabulary is empty"), std::string::npos) << e;
  EXPECT_NE(e.find((dir / "vocab.txt").string()), std::string::npos) << e;
  // One without the special tokens.
  io::write_file_atomically(dir / "vocab.txt", "[PAD]\n[UNK]\nhello\n");
  e = error_of([&] { BertTokenizer::load(dir.path()); });
  EXPECT_NE(e.find("no '[SEP]' line"), std::string::npos) << e;
  // tokenizer_config.json: malformed, or an option of the wrong type.
  io::write_file_atomically(dir / "vocab.txt",
                            "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhi\r\n");
  io::write_file_atomically(dir / "tokenizer_config.json", "{\"do_lower_case\": ");
  e = error_of([&] { BertTokenizer::load(dir.path()); });
  EXPECT_NE(e.find("tokenizer_config.json"), std::string::npos) << e;
  io::write_file_atomically(dir / "tokenizer_config.json", "{\"do_lower_case\": \"yes\"}");
  try {
    BertTokenizer::load(dir.path());
    ADD_FAILURE() << "no error for do_lower_case \"yes\"";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("do_lower_case"), std::string::npos) << err.what();
  }
  // Windows line ends read as Python's universal newlines do: "hi" is id 5.
  io::write_file_atomically(dir / "tokenizer_config.json", "{\"do_lower_case\": false}");
  const BertTokenizer t = BertTokenizer::load(dir.path());
  EXPECT_EQ(t.token_id("hi"), 5);
  EXPECT_EQ(t.encode("hi HI"), (std::vector<int64_t>{5, 1}));
}

}  // namespace
}  // namespace dro::text
