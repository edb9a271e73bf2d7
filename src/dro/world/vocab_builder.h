// A CLIP-format tokenizer made for the preference world: the 256 byte tokens and their `</w>`
// forms (so any text still tokenizes), plus BPE merge chains that turn every caption word of the
// world into one token, and the two special tokens. Written as a transformers `tokenizer/` folder
// (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json) that ClipTokenizer and
// Hugging Face's CLIPTokenizer both read. Not a general BPE trainer: merges are chosen per word,
// not by pair frequency.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dro::world {

struct WorldVocab {
  std::unordered_map<std::string, int64_t> vocab;          // byte-level token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  std::vector<std::string> words;                           // the words made single tokens
};

// Every distinct word of the world's captions (CLIP pre-tokenisation: letter runs and
// punctuation runs), in first-seen order over all_prompts().
std::vector<std::string> world_caption_words();

// Vocabulary and merges in CLIP's id order: bytes, bytes + `</w>`, merged tokens in merge order,
// then <|startoftext|> and <|endoftext|>. Words must be lower-case ASCII without spaces
// (UsageError otherwise).
WorldVocab build_world_vocab(const std::vector<std::string>& words);

// Writes the tokenizer folder for `words` (default: the world's caption words) to `dir`.
// model_max_length includes the start and end tokens.
void write_world_tokenizer(const std::filesystem::path& dir, int64_t model_max_length = 16,
                           const std::vector<std::string>& words = world_caption_words());

}  // namespace dro::world
