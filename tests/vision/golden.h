// Shared by the vision tests: the scorer fixtures (images and golden tensors) and a tiny PNG
// writer for colour types stb_image_write cannot produce (palette, 16-bit, tRNS).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/vision/decode.h"
#include "test_util.h"

namespace dro::test {

struct GoldenImage {
  std::string file;  // relative to the scorer fixtures, e.g. "images/wide_87x39.png"
  std::string name;  // the stem, which prefixes the golden tensors
  std::string mode;  // as images.json spells it ("JPEG" for the JPEG file)
  int width = 0, height = 0;
};

inline std::vector<GoldenImage> golden_images() {
  std::vector<GoldenImage> out;
  for (const auto& e : io::read_json(scorer_fixtures() / "golden" / "images.json")) {
    GoldenImage g;
    g.file = e.at("file").get<std::string>();
    g.name = std::filesystem::path(g.file).stem().string();
    g.mode = e.at("mode").get<std::string>();
    g.width = e.at("width").get<int>();
    g.height = e.at("height").get<int>();
    out.push_back(g);
  }
  return out;
}

// Whether this build decodes `file` as PIL does: a JPEG is only exact with libjpeg (the stb
// fallback differs by +-1..2 on some pixels; the tests then print the difference and go on).
inline bool decoded_exactly(const GoldenImage& g) {
  return vision::jpeg_decoder_is_exact() || std::filesystem::path(g.file).extension() != ".jpg";
}

inline std::map<std::string, torch::Tensor> golden(const std::string& file) {
  return io::load_safetensors(scorer_fixtures() / "golden" / file);
}

// A PNG from raw scanlines (filter byte 0 added here), stored (uncompressed) deflate blocks.
std::string make_png(int width, int height, int bit_depth, int colour_type, const std::string& raw,
                     const std::vector<uint8_t>& plte = {}, const std::vector<uint8_t>& trns = {});

}  // namespace dro::test
