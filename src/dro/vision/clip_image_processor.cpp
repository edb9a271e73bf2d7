#include "dro/vision/clip_image_processor.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dro/core/error.h"

namespace dro::vision {
namespace fs = std::filesystem;

namespace {

std::string bad(const std::string& where, const std::string& key, const std::string& expected,
                const io::OrderedJson& found) {
  return cat("[config] ", where, ": field '", key, "' must be ", expected, " (found ", found.dump(),
             ")");
}

bool get_bool(const io::OrderedJson& j, const std::string& key, bool fallback,
              const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw UsageError(bad(where, key, "true or false", *it));
  return it->get<bool>();
}

int positive_int(const io::OrderedJson& v, const std::string& where, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 20))
    throw UsageError(bad(where, key, "a positive integer", v));
  return static_cast<int>(v.get<int64_t>());
}

// image_processing_utils.get_size_dict: int -> shortest edge (size) or square (crop_size), list
// -> (height, width), dict as is. Returns {shortest_edge, height, width} (0 where absent).
std::array<int, 3> size_dict(const io::OrderedJson& v, bool default_to_square,
                             const std::string& where, const std::string& key) {
  if (v.is_number()) {
    const int n = positive_int(v, where, key);
    return default_to_square ? std::array<int, 3>{0, n, n} : std::array<int, 3>{n, 0, 0};
  }
  if (v.is_array()) {
    if (v.size() != 2)
      throw UsageError(bad(where, key, "an integer, [height, width] or a size dict", v));
    return {0, positive_int(v[0], where, key + "[0]"), positive_int(v[1], where, key + "[1]")};
  }
  if (!v.is_object())
    throw UsageError(bad(where, key, "an integer, [height, width] or a size dict", v));
  std::array<int, 3> out{0, 0, 0};
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string k = key + "." + it.key();
    if (it.key() == "shortest_edge")
      out[0] = positive_int(*it, where, k);
    else if (it.key() == "height")
      out[1] = positive_int(*it, where, k);
    else if (it.key() == "width")
      out[2] = positive_int(*it, where, k);
    else if (it.key() == "longest_edge")
      positive_int(*it, where, k);  // valid, unused by CLIP's resize
    else
      throw UsageError(
          bad(where, key, "a dict of shortest_edge / longest_edge or height and width", v));
  }
  if ((out[1] > 0) != (out[2] > 0) || (out[0] > 0 && out[1] > 0))
    throw UsageError(bad(where, key, "{\"shortest_edge\": N} or {\"height\": H, \"width\": W}", v));
  return out;
}

std::vector<double> float_list(const io::OrderedJson& j, const std::string& key,
                               std::vector<double> fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  const std::string expected = "a number or a list of numbers";
  if (it->is_number()) return {it->get<double>()};
  if (!it->is_array() || it->empty()) throw UsageError(bad(where, key, expected, *it));
  std::vector<double> out;
  for (const auto& e : *it) {
    if (!e.is_number()) throw UsageError(bad(where, key, expected, *it));
    out.push_back(e.get<double>());
  }
  return out;
}

}  // namespace

ClipImageProcessorConfig ClipImageProcessorConfig::from_json(const io::OrderedJson& j,
                                                             const std::string& where) {
  if (!j.is_object()) throw UsageError(cat("[config] ", where, ": expected a JSON object"));
  ClipImageProcessorConfig c;
  c.do_resize = get_bool(j, "do_resize", c.do_resize, where);
  if (auto it = j.find("size"); it != j.end() && !it->is_null()) {
    const auto s = size_dict(*it, /*default_to_square=*/false, where, "size");
    if (s[0] == 0 && s[1] == 0)
      throw UsageError(
          bad(where, "size", "{\"shortest_edge\": N} or {\"height\": H, \"width\": W}", *it));
    c.shortest_edge = s[0];
    c.size_height = s[1];
    c.size_width = s[2];
  }
  if (auto it = j.find("resample"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer())
      throw UsageError(bad(where, "resample", "a PIL filter code 0..5", *it));
    c.resample =
        resample_from_code(static_cast<int>(it->get<int64_t>()), cat(where, ": field 'resample'"));
  }
  c.do_center_crop = get_bool(j, "do_center_crop", c.do_center_crop, where);
  if (auto it = j.find("crop_size"); it != j.end() && !it->is_null()) {
    const auto s = size_dict(*it, /*default_to_square=*/true, where, "crop_size");
    if (s[1] == 0)
      throw UsageError(bad(where, "crop_size", "an integer or {\"height\": H, \"width\": W}", *it));
    c.crop_height = s[1];
    c.crop_width = s[2];
  }
  c.do_rescale = get_bool(j, "do_rescale", c.do_rescale, where);
  if (auto it = j.find("rescale_factor"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || !std::isfinite(it->get<double>()))
      throw UsageError(bad(where, "rescale_factor", "a number", *it));
    c.rescale_factor = it->get<double>();
  }
  c.do_normalize = get_bool(j, "do_normalize", c.do_normalize, where);
  c.image_mean = float_list(j, "image_mean", c.image_mean, where);
  c.image_std = float_list(j, "image_std", c.image_std, where);
  for (double s : c.image_std)
    if (s == 0.0 || !std::isfinite(s))
      throw UsageError(bad(where, "image_std", "non-zero numbers", j["image_std"]));
  c.do_convert_rgb = get_bool(j, "do_convert_rgb", c.do_convert_rgb, where);
  return c;
}

ClipImageProcessorConfig ClipImageProcessorConfig::load(const fs::path& path) {
  const fs::path file = fs::is_directory(path) ? path / "preprocessor_config.json" : path;
  return from_json(io::read_json(file), file.string());
}

ClipImageProcessor::ClipImageProcessor(ClipImageProcessorConfig config)
    : config_(std::move(config)) {}

std::array<int, 2> ClipImageProcessor::resize_size(int height, int width) const {
  if (!config_.do_resize) return {height, width};
  if (config_.shortest_edge <= 0) return {config_.size_height, config_.size_width};
  // get_resize_output_image_size(default_to_square=False): int(size * long / short)
  const int64_t s = config_.shortest_edge;
  const int64_t shorter = std::min(height, width), longer = std::max(height, width);
  const int new_long =
      static_cast<int>(static_cast<double>(s * longer) / static_cast<double>(shorter));
  return width <= height ? std::array<int, 2>{new_long, int(s)}
                         : std::array<int, 2>{int(s), new_long};
}

ClipProcessorOutput ClipImageProcessor::preprocess(const PilImage& image) const {
  const auto& c = config_;
  PilImage img;
  if (c.do_convert_rgb) {
    img = image.mode == "RGB" ? image : from_pixels(convert_to_rgb(image));
  } else if (image.mode == "RGB" || image.mode == "RGBA") {
    img = image;  // to_pil_image(np.array(img)) gives the same mode back
  } else {
    throw UsageError(
        cat("[processor] image mode '", image.mode,
            "' needs do_convert_rgb (transformers only takes 3- or 4-channel arrays)"));
  }
  ClipProcessorOutput out;
  out.resize_hw = resize_size(img.height(), img.width());
  if (c.do_resize) img = pil_resize(img, out.resize_hw[1], out.resize_hw[0], c.resample);

  // center_crop in uint8: floor offsets, zero padding for a smaller image
  const io::Image& src = img.image;
  const int H = src.height, W = src.width, C = src.channels;
  const int oh = c.do_center_crop ? c.crop_height : H, ow = c.do_center_crop ? c.crop_width : W;
  auto floor_half = [](int d) { return d >= 0 ? d / 2 : -((-d + 1) / 2); };  // Python's d // 2
  const int top = c.do_center_crop ? floor_half(H - oh) : 0;
  const int left = c.do_center_crop ? floor_half(W - ow) : 0;
  out.crop_top_left = {top, left};
  // Where the crop window starts in the source: the floor offset, or 0 in the padded canvas
  // (the image sits at ceil((oh - H) / 2); both give source row y = out_row + top).
  std::vector<uint8_t> cropped(static_cast<size_t>(oh) * ow * C, 0);
  for (int y = 0; y < oh; ++y) {
    const int sy = y + top;
    if (sy < 0 || sy >= H) continue;
    for (int x = 0; x < ow; ++x) {
      const int sx = x + left;
      if (sx < 0 || sx >= W) continue;
      std::memcpy(&cropped[(static_cast<size_t>(y) * ow + x) * C],
                  &src.pixels[(static_cast<size_t>(sy) * W + sx) * C], C);
    }
  }

  // rescale (float64 product, then float32) and normalize (float32), channels last
  std::vector<float> mean(C), stdev(C);
  if (c.do_normalize) {
    auto per_channel = [&](const std::vector<double>& v, std::vector<float>& dst,
                           const char* name) {
      if (v.size() == 1) {
        std::fill(dst.begin(), dst.end(), float(v[0]));
      } else if (static_cast<int>(v.size()) == C) {
        for (int k = 0; k < C; ++k) dst[k] = float(v[k]);
      } else {
        throw UsageError(cat("[processor] ", name, " must have ", C, " elements, got ", v.size()));
      }
    };
    per_channel(c.image_mean, mean, "image_mean");
    per_channel(c.image_std, stdev, "image_std");
  }
  auto pv = torch::empty({C, oh, ow}, torch::kFloat32);
  float* dst = pv.data_ptr<float>();
  const size_t plane = static_cast<size_t>(oh) * ow;
  for (size_t i = 0; i < plane; ++i) {
    for (int k = 0; k < C; ++k) {
      const uint8_t v = cropped[i * C + k];
      float x = c.do_rescale ? static_cast<float>(static_cast<double>(v) * c.rescale_factor)
                             : static_cast<float>(v);
      if (c.do_normalize) x = (x - mean[k]) / stdev[k];
      dst[k * plane + i] = x;
    }
  }
  out.pixel_values = pv;
  return out;
}

}  // namespace dro::vision
