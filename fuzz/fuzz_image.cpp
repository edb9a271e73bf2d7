// libFuzzer target: the image decoders. The input is a file's bytes, decoded by io::decode_image
// (stb_image: PNG, JPEG, BMP; stored channels and forced RGB) and by vision::decode_image_bytes
// (PIL-exact modes; libjpeg for JPEG when built with it) followed by convert_to_rgb. Rejections
// are dro::Error; a crash, a sanitizer report, another exception escaping, an allocation past
// -malloc_limit_mb, or a decoded image inconsistent with its size is a finding.
#include <cstdint>
#include <string>

#include "dro/core/error.h"
#include "dro/io/image.h"
#include "dro/vision/decode.h"
#include "fuzz_util.h"

namespace {

void check_image(const dro::io::Image& im, int channels, const char* what) {
  DRO_FUZZ_CHECK(im.width > 0 && im.height > 0, "%s: %dx%d image", what, im.width, im.height);
  DRO_FUZZ_CHECK(channels == 0 || im.channels == channels, "%s: %d channels, expected %d", what,
                 im.channels, channels);
  DRO_FUZZ_CHECK(im.channels >= 1 && im.channels <= 4, "%s: %d channels", what, im.channels);
  DRO_FUZZ_CHECK(im.pixels.size() == static_cast<size_t>(im.width) * im.height * im.channels,
                 "%s: %zu bytes for %dx%dx%d", what, im.pixels.size(), im.width, im.height,
                 im.channels);
}

int mode_channels(const std::string& mode) {
  if (mode == "1" || mode == "L" || mode == "I;16") return 1;
  if (mode == "LA") return 2;
  if (mode == "RGB" || mode == "P") return 3;
  if (mode == "RGBA" || mode == "CMYK") return 4;
  return -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (int channels : {0, 3}) {
    try {
      check_image(dro::io::decode_image(bytes, "fuzz", channels), channels, "io::decode_image");
    } catch (const dro::Error&) {
    }
  }
  try {
    const dro::vision::PilImage im = dro::vision::decode_image_bytes(bytes, "fuzz");
    const int c = mode_channels(im.mode);
    DRO_FUZZ_CHECK(c > 0, "unknown mode '%s'", im.mode.c_str());
    check_image(im.image, c, im.mode.c_str());
    const size_t n = static_cast<size_t>(im.width()) * im.height();
    if (im.mode == "I;16")
      DRO_FUZZ_CHECK(im.pixels16.size() == n, "I;16: %zu values", im.pixels16.size());
    if (im.mode == "P") {
      DRO_FUZZ_CHECK(!im.palette.empty(), "P without a palette");
      DRO_FUZZ_CHECK(im.indices.empty() || im.indices.size() == n, "P: %zu indices",
                     im.indices.size());
      for (uint8_t i : im.indices)
        DRO_FUZZ_CHECK(i < im.palette.size(), "P: index %d past %zu entries", i, im.palette.size());
    }
    check_image(dro::vision::convert_to_rgb(im), 3, "convert_to_rgb");
  } catch (const dro::Error&) {
  }
  return 0;
}
