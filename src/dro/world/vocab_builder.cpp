#include "dro/world/vocab_builder.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <fstream>
#include <map>
#include <set>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/text/clip_tokenizer.h"
#include "dro/world/prompt.h"

namespace dro::world {
namespace fs = std::filesystem;

namespace {

// Byte order of OpenAI's bytes_to_unicode(): printable ranges first, then the remapped bytes.
std::vector<int> clip_byte_order() {
  std::vector<int> order;
  std::set<int> seen;
  auto add_range = [&](int lo, int hi) {
    for (int b = lo; b <= hi; ++b) {
      order.push_back(b);
      seen.insert(b);
    }
  };
  add_range('!', '~');
  add_range(0xA1, 0xAC);
  add_range(0xAE, 0xFF);
  for (int b = 0; b < 256; ++b)
    if (!seen.count(b)) order.push_back(b);
  return order;
}

// The BPE pieces of one word under `ranks`, as the CLIP tokenizer computes them.
std::vector<std::string> bpe(const std::string& word,
                             const std::map<std::pair<std::string, std::string>, size_t>& ranks) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < word.size(); ++i) parts.push_back(text::ClipTokenizer::byte_encode(word.substr(i, 1)));
  parts.back() += "</w>";
  while (parts.size() > 1) {
    size_t best = SIZE_MAX, at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = ranks.find({parts[i], parts[i + 1]});
      if (it != ranks.end() && it->second < best) best = it->second, at = i;
    }
    if (best == SIZE_MAX) break;
    // Merge every occurrence of the best pair, left to right (as the reference does).
    const auto pair = std::make_pair(parts[at], parts[at + 1]);
    std::vector<std::string> next;
    for (size_t i = 0; i < parts.size();) {
      if (i + 1 < parts.size() && parts[i] == pair.first && parts[i + 1] == pair.second) {
        next.push_back(parts[i] + parts[i + 1]);
        i += 2;
      } else {
        next.push_back(parts[i++]);
      }
    }
    parts = std::move(next);
  }
  return parts;
}

}  // namespace

std::vector<std::string> world_caption_words() {
  std::vector<std::string> words;
  std::set<std::string> seen;
  for (const auto& p : all_prompts()) {
    const std::string c = p.caption();
    for (size_t i = 0; i < c.size();) {
      if (c[i] == ' ') {
        ++i;
        continue;
      }
      const bool alpha = std::isalpha(static_cast<unsigned char>(c[i]));
      size_t j = i;
      while (j < c.size() && c[j] != ' ' && bool(std::isalpha(static_cast<unsigned char>(c[j]))) == alpha) ++j;
      std::string w = c.substr(i, j - i);
      if (seen.insert(w).second) words.push_back(w);
      i = j;
    }
  }
  return words;
}

WorldVocab build_world_vocab(const std::vector<std::string>& words) {
  WorldVocab v;
  for (const auto& w : words) {
    if (w.empty()) throw UsageError("[vocab] empty word");
    for (char ch : w)
      if (ch <= ' ' || ch > '~' || std::isupper(static_cast<unsigned char>(ch)))
        throw UsageError(cat("[vocab] word '", w, "' is not lower-case printable ASCII without spaces"));
  }
  int64_t next_id = 0;
  const auto order = clip_byte_order();
  for (int b : order) v.vocab[text::ClipTokenizer::byte_encode(std::string(1, char(b)))] = next_id++;
  for (int b : order) v.vocab[text::ClipTokenizer::byte_encode(std::string(1, char(b))) + "</w>"] = next_id++;
  // Appending a merge of lower priority than all before it never changes a word that already
  // becomes one token (some earlier merge always applies first), so words are processed one at a
  // time, each by merging its first two pieces until it is whole.
  std::map<std::pair<std::string, std::string>, size_t> ranks;
  for (const auto& w : words) {
    for (auto parts = bpe(w, ranks); parts.size() > 1; parts = bpe(w, ranks)) {
      auto pair = std::make_pair(parts[0], parts[1]);
      ranks.emplace(pair, v.merges.size());
      v.merges.push_back(pair);
      const std::string merged = pair.first + pair.second;
      if (!v.vocab.count(merged)) v.vocab[merged] = next_id++;
    }
    v.words.push_back(w);
  }
  v.vocab["<|startoftext|>"] = next_id++;
  v.vocab["<|endoftext|>"] = next_id++;
  return v;
}

void write_world_tokenizer(const fs::path& dir, int64_t model_max_length, const std::vector<std::string>& words) {
  if (model_max_length < 3) throw UsageError(cat("[vocab] model_max_length ", model_max_length, " < 3"));
  const WorldVocab v = build_world_vocab(words);
  fs::create_directories(dir);
  std::vector<std::pair<int64_t, std::string>> by_id;
  for (const auto& [tok, id] : v.vocab) by_id.emplace_back(id, tok);
  std::sort(by_id.begin(), by_id.end());
  io::OrderedJson vocab = io::OrderedJson::object();
  for (const auto& [id, tok] : by_id) vocab[tok] = id;
  io::write_json(dir / "vocab.json", vocab);
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : v.merges) merges += a + " " + b + "\n";
  io::write_file_atomically(dir / "merges.txt", merges);

  const int64_t bos = v.vocab.at("<|startoftext|>"), eos = v.vocab.at("<|endoftext|>");
  auto special = [](const std::string& content) {
    io::OrderedJson t;
    t["content"] = content;
    t["lstrip"] = false;
    t["normalized"] = true;
    t["rstrip"] = false;
    t["single_word"] = false;
    return t;
  };
  io::OrderedJson cfg;
  cfg["add_prefix_space"] = false;
  io::OrderedJson added;
  added[std::to_string(bos)] = special("<|startoftext|>");
  added[std::to_string(bos)]["special"] = true;
  added[std::to_string(eos)] = special("<|endoftext|>");
  added[std::to_string(eos)]["normalized"] = false;
  added[std::to_string(eos)]["special"] = true;
  cfg["added_tokens_decoder"] = added;
  cfg["bos_token"] = "<|startoftext|>";
  cfg["clean_up_tokenization_spaces"] = true;
  cfg["do_lower_case"] = true;
  cfg["eos_token"] = "<|endoftext|>";
  cfg["errors"] = "replace";
  cfg["model_max_length"] = model_max_length;
  cfg["pad_token"] = "<|endoftext|>";
  cfg["tokenizer_class"] = "CLIPTokenizer";
  cfg["unk_token"] = "<|endoftext|>";
  io::write_json(dir / "tokenizer_config.json", cfg);
  io::OrderedJson map;
  map["bos_token"] = special("<|startoftext|>");
  map["eos_token"] = special("<|endoftext|>");
  map["pad_token"] = "<|endoftext|>";
  map["unk_token"] = special("<|endoftext|>");
  io::write_json(dir / "special_tokens_map.json", map);
}

}  // namespace dro::world
