// Decoding as PIL's Image.open: modes, pixels against np.array(Image.open(f)) (the JPEG exactly),
// PNG colour types built by hand, and errors that name the file.
#include "dro/vision/decode.h"

#include <cstring>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "golden.h"

namespace dro::vision {
namespace {

torch::Tensor as_tensor(const io::Image& im, bool squeeze_single = true) {
  auto t = torch::from_blob(const_cast<uint8_t*>(im.pixels.data()),
                            {im.height, im.width, im.channels}, torch::kUInt8)
               .to(torch::kFloat32);
  return squeeze_single && im.channels == 1 ? t.squeeze(2) : t;
}

TEST(VisionDecode, GoldenImagesHavePilModesAndSizes) {
  DRO_REQUIRE_SCORER_FIXTURES();
  for (const auto& g : test::golden_images()) {
    const PilImage im = decode_image_file(test::scorer_fixtures() / g.file);
    const std::string mode = g.mode == "JPEG" ? "RGB" : g.mode;
    EXPECT_EQ(im.mode, mode) << g.file;
    EXPECT_EQ(im.width(), g.width) << g.file;
    EXPECT_EQ(im.height(), g.height) << g.file;
  }
}

TEST(VisionDecode, DecodedPixelsMatchPil) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto gold = test::golden("images.safetensors");
  const std::map<std::string, std::string> files = {{"palette_48x40", "images/palette_48x40.png"},
                                                    {"photo_75x56", "images/photo_75x56.jpg"},
                                                    {"rgba_50x50", "images/rgba_50x50.png"}};
  for (const auto& [name, file] : files) {
    const PilImage im = decode_image_file(test::scorer_fixtures() / file);
    torch::Tensor got;
    if (im.mode == "P") {
      ASSERT_FALSE(im.indices.empty()) << file;
      got = torch::from_blob(const_cast<uint8_t*>(im.indices.data()), {im.height(), im.width()},
                             torch::kUInt8)
                .to(torch::kFloat32);
    } else {
      got = as_tensor(im.image);
    }
    const torch::Tensor& want = gold.at(name + ".decoded");
    const double diff = test::max_abs_diff(got, want);
    std::cout << "[vision] " << file << " (" << im.mode << ") decoded: max |diff| vs PIL = " << diff
              << (file.size() > 4 && file.substr(file.size() - 4) == ".jpg"
                      ? (jpeg_decoder_is_exact() ? " (libjpeg)" : " (stb fallback)")
                      : "")
              << "\n";
    if (file.substr(file.size() - 4) == ".jpg" && !jpeg_decoder_is_exact())
      continue;  // stb: +-1 expected
    EXPECT_TRUE(test::allclose(got, want, 0.0)) << file;
  }
  const PilImage pal = decode_image_file(test::scorer_fixtures() / "images/palette_48x40.png");
  const double diff =
      test::max_abs_diff(as_tensor(convert_to_rgb(pal)), gold.at("palette_48x40.rgb"));
  std::cout << "[vision] palette_48x40.png convert('RGB'): max |diff| = " << diff << "\n";
  EXPECT_EQ(diff, 0.0);
}

TEST(VisionDecode, ConvertToRgbFollowsPil) {
  io::Image la(2, 1, 2);
  la.pixels = {10, 0, 200, 255};
  PilImage im = from_pixels(la);
  EXPECT_EQ(im.mode, "LA");
  EXPECT_EQ(convert_to_rgb(im).pixels, (std::vector<uint8_t>{10, 10, 10, 200, 200, 200}));
  io::Image rgba(1, 1, 4);
  rgba.pixels = {1, 2, 3, 0};  // fully transparent: colour kept, no compositing
  EXPECT_EQ(convert_to_rgb(from_pixels(rgba)).pixels, (std::vector<uint8_t>{1, 2, 3}));
  PilImage cmyk;
  cmyk.mode = "CMYK";
  cmyk.image = io::Image(2, 1, 4);
  cmyk.image.pixels = {0, 0, 0, 0, 255, 128, 0, 64};
  // Convert.c cmyk2rgb: nk - c * nk / 255 (rounded), nk = 255 - k
  EXPECT_EQ(convert_to_rgb(cmyk).pixels, (std::vector<uint8_t>{255, 255, 255, 0, 95, 191}));
}

TEST(VisionDecode, PngColourTypesGivePilModes) {
  // 1-bit gray -> "1" with 0/255
  {
    const PilImage im =
        decode_image_bytes(test::make_png(8, 1, 1, 0, std::string(1, '\xA5')), "g1");
    EXPECT_EQ(im.mode, "1");
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{255, 0, 255, 0, 0, 255, 0, 255}));
  }
  // 4-bit gray -> "L" scaled by 17
  {
    const PilImage im =
        decode_image_bytes(test::make_png(2, 1, 4, 0, std::string(1, '\x1F')), "g4");
    EXPECT_EQ(im.mode, "L");
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{17, 255}));
  }
  // 16-bit gray -> "I;16": the values kept, the 8-bit view saturated
  {
    const std::string raw = {'\x00', '\x07', '\x01', '\x00', '\xFF', '\xFF'};
    const PilImage im = decode_image_bytes(test::make_png(3, 1, 16, 0, raw), "g16");
    EXPECT_EQ(im.mode, "I;16");
    EXPECT_EQ(im.pixels16, (std::vector<uint16_t>{7, 256, 65535}));
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{7, 255, 255}));
    EXPECT_EQ(convert_to_rgb(im).pixels,
              (std::vector<uint8_t>{7, 7, 7, 255, 255, 255, 255, 255, 255}));
  }
  // gray + tRNS -> "L" (transparency in info only)
  {
    const PilImage im =
        decode_image_bytes(test::make_png(2, 1, 8, 0, "\x05\x09", {}, {0, 5}), "gt");
    EXPECT_EQ(im.mode, "L");
    EXPECT_TRUE(im.has_transparency);
    EXPECT_EQ(im.image.channels, 1);
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{5, 9}));
  }
  // RGB + tRNS -> "RGB", 3 channels
  {
    const PilImage im = decode_image_bytes(
        test::make_png(1, 1, 8, 2, "\x01\x02\x03", {}, {0, 1, 0, 2, 0, 3}), "rt");
    EXPECT_EQ(im.mode, "RGB");
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{1, 2, 3}));
  }
  // 16-bit RGB -> "RGB" high bytes
  {
    const std::string raw = {'\x12', '\x34', '\x56', '\x78', '\x9A', '\xBC'};
    const PilImage im = decode_image_bytes(test::make_png(1, 1, 16, 2, raw), "r16");
    EXPECT_EQ(im.mode, "RGB");
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{0x12, 0x56, 0x9A}));
  }
  // 16-bit gray + alpha -> "RGBA"
  {
    const std::string raw = {'\x40', '\x00', '\x80', '\x01'};
    const PilImage im = decode_image_bytes(test::make_png(1, 1, 16, 4, raw), "la16");
    EXPECT_EQ(im.mode, "RGBA");
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{0x40, 0x40, 0x40, 0x80}));
  }
  // 8-bit gray + alpha -> "LA"
  {
    const PilImage im = decode_image_bytes(test::make_png(1, 1, 8, 4, "\x40\x80"), "la8");
    EXPECT_EQ(im.mode, "LA");
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{0x40, 0x80}));
  }
  // 2-bit palette with tRNS: indices, RGB colours, alpha in the palette
  {
    const std::vector<uint8_t> plte = {255, 0, 0, 0, 255, 0, 0, 0, 255};
    const PilImage im =
        decode_image_bytes(test::make_png(4, 1, 2, 3, std::string(1, '\x24'), plte, {0}), "p2");
    EXPECT_EQ(im.mode, "P");
    EXPECT_TRUE(im.has_transparency);
    EXPECT_EQ(im.indices, (std::vector<uint8_t>{0, 2, 1, 0}));
    EXPECT_EQ(im.image.pixels, (std::vector<uint8_t>{255, 0, 0, 0, 0, 255, 0, 255, 0, 255, 0, 0}));
    ASSERT_EQ(im.palette.size(), 3u);
    EXPECT_EQ(im.palette[0][3], 0);
    EXPECT_EQ(im.palette[1][3], 255);
  }
}

void expect_io_error(const std::string& bytes, const std::string& what,
                     const std::string& fragment = "") {
  try {
    decode_image_bytes(bytes, what);
    FAIL() << "no error for " << what;
  } catch (const IoError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    if (!fragment.empty()) {
      EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    }
    std::cout << "[vision] " << msg << "\n";
  }
}

TEST(VisionDecode, BadFilesAreIoErrorsNamingTheSource) {
  test::TempDir dir;
  try {
    decode_image_file(dir / "missing.png");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos);
  }
  expect_io_error("", "empty.png", "empty");
  expect_io_error("GIF89a......", "anim.gif", "not a PNG");
  const std::string png = test::make_png(4, 4, 8, 2, std::string(48, '\x40'));
  expect_io_error(png.substr(0, png.size() - 30), "cut.png", "truncated");
  std::string bad_idat = png;
  bad_idat[bad_idat.size() - 40] ^= 0x5A;  // inside the IDAT payload/adler: zlib or CRC fails
  try {
    decode_image_bytes(bad_idat, "flipped.png");
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("flipped.png"), std::string::npos);
  }
  expect_io_error(std::string("\xFF\xD8\xFF\xE0", 4) + std::string(20, '\0'), "header.jpg", "JPEG");
}

TEST(VisionDecode, TruncatedJpegIsAnError) {
  DRO_REQUIRE_SCORER_FIXTURES();
  const std::string jpg = io::read_file(test::scorer_fixtures() / "images/photo_75x56.jpg");
  if (!jpeg_decoder_is_exact()) GTEST_SKIP() << "stb fallback";
  expect_io_error(jpg.substr(0, jpg.size() / 2), "half.jpg", "truncated");
  // Without its end marker libjpeg asks for more data while still in the scan: Pillow's
  // Image.load() raises "image file is truncated" for such files too.
  expect_io_error(jpg.substr(0, jpg.size() - 2), "no_eoi.jpg", "truncated");
  // Bytes after the end marker are ignored.
  EXPECT_NO_THROW(decode_image_bytes(jpg + std::string(16, '\0'), "trailing.jpg"));
}

}  // namespace
}  // namespace dro::vision
