// `dro select`: the official tools/pickapic.py. Every unique (image, caption) of the inputs is
// scored with one scorer (human labels are ignored), sorted by score, and the top K are written
// in the training layout OUT/<i>/<i>.png + caption.txt, folder 0 the best. Inputs are read as
// lists of references (paths, archive offsets), never all images at once:
//   - a folder in the expert or test layout: DIR/<id>/caption.txt + one or more images;
//   - a JSONL or CSV manifest with `image` and `caption` (optional `uid`), image paths relative to
//     the manifest's folder;
//   - a pairs manifest (JSONL or CSV) with `caption` and `image_0` / `image_1` (Pick-a-Pic, optional
//     `image_0_uid` / `image_1_uid`) or `chosen` / `rejected` (dro world's feedback): both images of
//     every pair;
//   - a webdataset `.tar` shard (`key.jpg|jpeg|png` with `key.txt` or `key.json` holding "caption"),
//     or a folder of such shards.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "dro/eval/score_run.h"
#include "dro/io/json.h"

namespace dro::eval {

struct SelectListing {
  std::vector<ScoreItem> items;  // unique (image, caption), in input order
  int64_t references = 0;        // (image, caption) references read, duplicates included
  std::vector<std::string> warnings;
};

// Lists the candidates of every input; IoError naming the file and entry for malformed input.
SelectListing list_select_items(const std::vector<std::string>& inputs);

struct Selected {
  ScoreItem item;
  double score = 0;
};

// The K best of `items` by `key` in the scores JSONL rows (ties: input order), best first.
std::vector<Selected> top_k(const std::vector<ScoreItem>& items, const std::vector<io::OrderedJson>& rows,
                            const std::string& key, int64_t k);

// Writes OUT/<i>/<i>.png (re-encoded as PNG) + caption.txt for the selected, i from 0 with as many
// digits as K needs (the official naming); an existing complete folder is kept (resume).
void write_selected(const std::vector<Selected>& selected, const std::filesystem::path& out);

}  // namespace dro::eval
