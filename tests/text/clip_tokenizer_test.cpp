// CLIP tokenizer: exact ids against golden/tokenizer.safetensors (OpenAI simple_tokenizer BPE with
// Hugging Face padding), non-ASCII and invalid input, truncation, folder parsing and errors.
#include "dro/text/clip_tokenizer.h"

#include <fstream>
#include <thread>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "test_util.h"

namespace dro::text {
namespace {

using test::fixtures;
using test::TempDir;

std::vector<std::string> golden_prompts() {
  std::vector<std::string> prompts;
  for (const auto& p : io::read_json(fixtures() / "golden/prompts.json"))
    prompts.push_back(p.at("prompt"));
  return prompts;
}

std::map<std::string, torch::Tensor> golden_ids() {
  return io::load_safetensors(fixtures() / "golden/tokenizer.safetensors");
}

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous().to(torch::kInt64);
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

void copy_tokenizer_files(const std::filesystem::path& to, bool with_configs) {
  const auto from = fixtures() / "tiny-sd15/tokenizer";
  std::filesystem::copy_file(from / "vocab.json", to / "vocab.json");
  std::filesystem::copy_file(from / "merges.txt", to / "merges.txt");
  if (with_configs) {
    std::filesystem::copy_file(from / "tokenizer_config.json", to / "tokenizer_config.json");
    std::filesystem::copy_file(from / "special_tokens_map.json", to / "special_tokens_map.json");
  }
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(ClipTokenizer, FolderSettings) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.pad_id(), 49407);
  EXPECT_EQ(tok.unk_id(), 49407);
  EXPECT_EQ(tok.max_length(), 77);
  EXPECT_EQ(tok.vocab_size(), 49408);
  auto tok2 = ClipTokenizer::load(fixtures() / "tiny-sdxl/tokenizer_2");
  EXPECT_EQ(tok2.pad_id(), 0);
  EXPECT_EQ(tok2.special_tokens().pad, "!");
  EXPECT_EQ(tok2.eos_id(), 49407);
}

TEST(ClipTokenizer, GoldenContentIds) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  auto golden = golden_ids();
  const auto prompts = golden_prompts();
  ASSERT_EQ(prompts.size(), 12u);
  const auto counts = to_vector(golden.at("num_content_tokens"));
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto row = to_vector(golden.at("content_ids")[i]);
    row.resize(counts[i]);
    EXPECT_EQ(tok.encode(prompts[i]), row) << "prompt " << i << ": '" << prompts[i] << "'";
  }
}

TEST(ClipTokenizer, GoldenSd15InputIds) {
  DRO_REQUIRE_FIXTURES();
  const auto prompts = golden_prompts();
  const auto expected = golden_ids().at("sd15.input_ids");
  for (const char* dir : {"tiny-sd15/tokenizer", "tiny-sdxl/tokenizer"}) {
    const torch::Tensor ids = ClipTokenizer::load(fixtures() / dir).tokenize(prompts);
    EXPECT_EQ(ids.scalar_type(), torch::kInt64);
    EXPECT_TRUE(torch::equal(ids, expected))
        << dir << ": max |diff| " << test::max_abs_diff(ids, expected);
  }
}

TEST(ClipTokenizer, GoldenSdxlTokenizer2InputIds) {
  DRO_REQUIRE_FIXTURES();
  const torch::Tensor ids =
      ClipTokenizer::load(fixtures() / "tiny-sdxl/tokenizer_2").tokenize(golden_prompts());
  const auto expected = golden_ids().at("sdxl.tokenizer_2.input_ids");
  for (int64_t i = 0; i < expected.size(0); ++i)
    EXPECT_EQ(to_vector(ids[i]), to_vector(expected[i])) << "prompt " << i;
}

TEST(ClipTokenizer, EmptyAndBlankPrompts) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  for (const char* text :
       {"", " ", " \t\n  ", "\xC2\xA0\xE3\x80\x80"}) {  // NBSP, ideographic space
    EXPECT_TRUE(tok.encode(text).empty()) << "'" << text << "'";
    std::vector<int64_t> expected(77, 49407);
    expected[0] = 49406;
    EXPECT_EQ(tok.encode_padded(text), expected);
  }
  EXPECT_EQ(tok.tokenize({}).sizes(), (std::vector<int64_t>{0, 77}));
}

TEST(ClipTokenizer, LongPromptIsTruncated) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  std::string text;
  for (int i = 0; i < 200; ++i) text += "cat dog ";
  const auto content = tok.encode(text);
  ASSERT_EQ(content.size(), 400u);
  const auto row = tok.encode_padded(text);
  ASSERT_EQ(row.size(), 77u);
  EXPECT_EQ(row.front(), tok.bos_id());
  EXPECT_EQ(row.back(), tok.eos_id());
  EXPECT_EQ(std::vector<int64_t>(row.begin() + 1, row.end() - 1),
            std::vector<int64_t>(content.begin(), content.begin() + 75));
}

// Expected ids from OpenAI's simple_tokenizer (Python 3.11, regex module, no ftfy) on the same
// vocabulary; 7000 random strings over all planes were checked the same way.
TEST(ClipTokenizer, NonAsciiMatchesReference) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  const std::string text =
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82";  // café 日本 🙂
  const auto ids = tok.encode(text);
  EXPECT_EQ(ids, (std::vector<int64_t>{15304, 39121, 19277, 361, 14860}));
  EXPECT_EQ(tok.encode(text), ids);  // deterministic (second call goes through the cache)
  EXPECT_EQ(tok.decode(ids), text + " ");
  // Greek capitals with a final sigma, dotted capital I, digraph, other numbers, an accent.
  const std::string mixed =
      "\xCE\x91\xCE\xA3 \xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3 \xC4\xB0stanbul \xC7\x84"
      "emal "
      "\xC2\xBD \xC2\xB2 \xD9\xA1\xD9\xA2 na\xC3\xAFve";
  EXPECT_EQ(tok.encode(mixed),
            (std::vector<int64_t>{138,   109, 139, 480,   138,   123,  138,   112, 138, 123,
                                  139,   480, 328, 16384, 11231, 131,  228,   908, 566, 33613,
                                  41175, 149, 350, 149,   351,   1097, 35689, 563}));
  // Final sigma only where str.lower() writes it: word end, accents skipped, not before a letter.
  EXPECT_EQ(
      tok.encode("\xCE\xA3\xCE\x91 \xCE\x91\xCE\xA3\xCC\x81\xCE\x92 \xCE\x91\xCE\xA3\xCC\x81"),
      (std::vector<int64_t>{139, 225, 138, 365, 138, 109, 139, 481, 136, 479, 138, 366, 138, 109,
                            139, 480, 136, 479}));
  // U+0345 matches no alternative of the case-insensitive pattern: skipped, splitting the runs.
  EXPECT_EQ(tok.encode("a\xCD\x85"
                       "b !\xCD\x85!"),
            (std::vector<int64_t>{320, 321, 256, 256}));
}

TEST(ClipTokenizer, SpecialTokensAndContractionsFollowThePattern) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  // A special string is one token only where a match can start; after punctuation it is not.
  EXPECT_EQ(tok.encode("!<|endoftext|> x<|startoftext|>'s ''s"),
            (std::vector<int64_t>{0, 27, 347, 40786, 4160, 91, 285, 343, 49406, 568, 8445, 338}));
  EXPECT_EQ(tok.encode("<|startoftext|>cat<|ENDOFTEXT|>"),
            (std::vector<int64_t>{49406, tok.encode("cat")[0], 49407}));
}

TEST(ClipTokenizer, InvalidUtf8KeepsEveryByte) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  const std::string bad = "\xFF cat \xC3 \xE6\x97 \x80\x80";
  const auto ids = tok.encode(bad);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids, tok.encode(bad));
  // A lone byte is the byte-level character with the end-of-word mark.
  EXPECT_EQ(tok.encode("\xFF"),
            (std::vector<int64_t>{tok.token_to_id(ClipTokenizer::byte_encode("\xFF") + "</w>")}));
  // Decoding restores the bytes; invalid ones come back as U+FFFD.
  EXPECT_EQ(tok.decode(ids),
            "\xEF\xBF\xBD cat \xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD ");
  // Embedded NUL and control characters are punctuation, not terminators.
  EXPECT_EQ(tok.encode(std::string("a\0b", 3)).size(), 3u);
}

TEST(ClipTokenizer, ByteEncode) {
  EXPECT_EQ(ClipTokenizer::byte_encode("a b"),
            "a\xC4\xA0"
            "b");                                                           // space -> U+0120
  EXPECT_EQ(ClipTokenizer::byte_encode(std::string(1, '\0')), "\xC4\x80");  // U+0100
  EXPECT_EQ(ClipTokenizer::byte_encode("\xC3\xA9"), "\xC3\x83\xC2\xA9");    // bytes C3 A9
}

TEST(ClipTokenizer, InMemoryVocabulary) {
  std::unordered_map<std::string, int64_t> vocab = {{"a", 0},
                                                    {"b", 1},
                                                    {"a</w>", 2},
                                                    {"b</w>", 3},
                                                    {"ab</w>", 4},
                                                    {"<|startoftext|>", 5},
                                                    {"<|endoftext|>", 6}};
  ClipTokenizer tok(vocab, {{"a", "b</w>"}}, {}, 8);
  EXPECT_EQ(tok.encode("AB ab a b"), (std::vector<int64_t>{4, 4, 2, 3}));
  EXPECT_EQ(tok.encode("abc"),
            (std::vector<int64_t>{0, 1, 6}));  // pieces missing from vocab -> unk
  EXPECT_EQ(tok.encode_padded("ab ab ab ab ab ab ab"),
            (std::vector<int64_t>{5, 4, 4, 4, 4, 4, 4, 6}));
  EXPECT_EQ(tok.encode_padded("a"), (std::vector<int64_t>{5, 2, 6, 6, 6, 6, 6, 6}));
  EXPECT_EQ(tok.decode({5, 4, 2, 6}), "<|startoftext|>ab a <|endoftext|>");
  EXPECT_THROW(tok.decode({99}), UsageError);

  ClipSpecialTokens specials;
  specials.pad = "!";
  EXPECT_THROW(ClipTokenizer(vocab, {}, specials), UsageError);
  auto duplicate = vocab;
  duplicate["c"] = 0;
  EXPECT_THROW(ClipTokenizer(duplicate, {}), UsageError);
}

TEST(ClipTokenizer, ConcurrentEncodesAgree) {
  DRO_REQUIRE_FIXTURES();
  auto tok = ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer");
  const auto prompts = golden_prompts();
  const torch::Tensor expected =
      ClipTokenizer::load(fixtures() / "tiny-sd15/tokenizer").tokenize(prompts);
  std::vector<torch::Tensor> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep) results[t] = tok.tokenize(prompts);
    });
  for (auto& th : threads) th.join();
  for (const auto& r : results) EXPECT_TRUE(torch::equal(r, expected));
}

TEST(ClipTokenizer, LegacySpecialTokensMap) {
  DRO_REQUIRE_FIXTURES();
  TempDir dir;
  copy_tokenizer_files(dir.path(), false);
  // No tokenizer_config.json: defaults, pad = <|endoftext|>.
  EXPECT_EQ(ClipTokenizer::load(dir.path()).pad_id(), 49407);
  // Old-style config without added_tokens_decoder: special_tokens_map.json has the last word.
  write_text(
      dir / "tokenizer_config.json",
      R"({"model_max_length": 77, "pad_token": "<|endoftext|>", "unk_token": {"content": "<|endoftext|>"}})");
  write_text(dir / "special_tokens_map.json",
             R"({"bos_token": {"content": "<|startoftext|>", "lstrip": false}, "pad_token": "!"})");
  auto tok = ClipTokenizer::load(dir.path());
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.bos_id(), 49406);
  // A huge model_max_length (transformers' "unset" sentinel) falls back to CLIP's 77.
  write_text(dir / "tokenizer_config.json", R"({"model_max_length": 1e30})");
  EXPECT_EQ(ClipTokenizer::load(dir.path()).max_length(), 77);
  write_text(dir / "tokenizer_config.json", R"({"model_max_length": 16})");
  EXPECT_EQ(ClipTokenizer::load(dir.path()).encode_padded("cat").size(), 16u);
}

void expect_io_error_naming(const std::filesystem::path& dir, const std::string& needle) {
  try {
    ClipTokenizer::load(dir);
    ADD_FAILURE() << "loaded a broken folder, expected an error naming " << needle;
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ClipTokenizer, BrokenFoldersNameTheFile) {
  DRO_REQUIRE_FIXTURES();
  TempDir dir;
  expect_io_error_naming(dir / "nope", "nope");
  copy_tokenizer_files(dir.path(), true);
  std::filesystem::remove(dir / "merges.txt");
  expect_io_error_naming(dir.path(), "merges.txt");
  write_text(dir / "merges.txt", "#version: 0.2\ni n\nt h e x\n");
  expect_io_error_naming(dir.path(), "merges.txt: line 3");
  write_text(dir / "merges.txt", "#version: 0.2\ni n\n");
  write_text(dir / "vocab.json", "{\"a\": 1,");
  expect_io_error_naming(dir.path(), "vocab.json");
  write_text(dir / "vocab.json", "{\"a\": \"one\"}");
  expect_io_error_naming(dir.path(), "vocab.json");
  // Without tokenizer_config.json's added_tokens_decoder nothing adds the special tokens.
  std::filesystem::remove(dir / "tokenizer_config.json");
  write_text(dir / "vocab.json", "{\"a\": 0}");
  expect_io_error_naming(dir.path(), "'<|startoftext|>' is not in the vocabulary");
  std::filesystem::remove(dir / "vocab.json");
  expect_io_error_naming(dir.path(), "vocab.json");
}

}  // namespace
}  // namespace dro::text
