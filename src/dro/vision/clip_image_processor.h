// transformers' CLIPImageProcessor (4.47, the slow PIL/numpy one) configured from a
// `preprocessor_config.json`, reproducing its pixel_values exactly:
//   convert_to_rgb   PIL convert("RGB") unless already RGB (alpha dropped, L replicated, P via
//                    its palette)
//   resize           shortest edge -> size["shortest_edge"], the other side
//                    int(size * long / short) (image_transforms.get_resize_output_image_size),
//                    or exactly {"height", "width"}; PIL's resize with `resample` on uint8
//   center_crop      top = (H - h) // 2, left = (W - w) // 2 (floor); a smaller image is placed
//                    at ceil((h - H) / 2) in a zero canvas
//   rescale          float32(float64(x) * rescale_factor)
//   normalize        (x - mean) / std in float32, then HWC -> CHW
// Config shapes: old feature extractors' `"size": 224, "crop_size": 224` (int size = shortest
// edge, int crop = square), lists [h, w], and the dicts {"shortest_edge": N} (a "longest_edge"
// beside it is ignored, as CLIPImageProcessor.resize does) / {"height": H, "width": W}. Unknown
// keys are ignored; a wrong type or value is a UsageError naming the file and the key.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/types.h>

#include "dro/io/json.h"
#include "dro/vision/decode.h"
#include "dro/vision/pil_resize.h"

namespace dro::vision {

// Fields and defaults of CLIPImageProcessor.__init__.
struct ClipImageProcessorConfig {
  bool do_resize = true;
  int shortest_edge = 224;  // > 0: shortest-edge resize; 0: exact size_height x size_width
  int size_height = 0, size_width = 0;
  Resample resample = Resample::kBicubic;
  bool do_center_crop = true;
  int crop_height = 224, crop_width = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::vector<double> image_mean = {0.48145466, 0.4578275, 0.40821073};  // OPENAI_CLIP_MEAN
  std::vector<double> image_std = {0.26862954, 0.26130258, 0.27577711};  // OPENAI_CLIP_STD
  bool do_convert_rgb = true;

  // Parses a preprocessor_config.json object; `where` names it in errors.
  static ClipImageProcessorConfig from_json(const io::OrderedJson& j, const std::string& where);
  // Reads `preprocessor_config.json` (a folder holding one, or the file itself).
  static ClipImageProcessorConfig load(const std::filesystem::path& path);
};

struct ClipProcessorOutput {
  torch::Tensor pixel_values;          // [C, H, W] float32 (C 3 after convert_to_rgb)
  std::array<int, 2> resize_hw{};      // (height, width) after the resize (input size if none)
  std::array<int, 2> crop_top_left{};  // floor offsets of the crop; negative where it padded
};

class ClipImageProcessor {
 public:
  explicit ClipImageProcessor(ClipImageProcessorConfig config = {});
  static ClipImageProcessor from_pretrained(const std::filesystem::path& path) {
    return ClipImageProcessor(ClipImageProcessorConfig::load(path));
  }

  // processor(images=image)["pixel_values"][0] with the resize and crop geometry.
  // UsageError for a mode transformers cannot take (do_convert_rgb off and not RGB/RGBA) or a
  // mean/std list whose length is not the channel count.
  ClipProcessorOutput preprocess(const PilImage& image) const;

  // The output (height, width) for an image of that size.
  std::array<int, 2> resize_size(int height, int width) const;

  const ClipImageProcessorConfig& config() const { return config_; }

 private:
  ClipImageProcessorConfig config_;
};

}  // namespace dro::vision
