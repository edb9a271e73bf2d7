// Images: PNG round trips, atomic writes, errors that name the file, tensor conversion, the
// resize / crop steps of the training transform, and grids.
#include "dro/io/image.h"

#include <fstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"

namespace dro {
namespace {

io::Image gradient(int w, int h, int c = 3) {
  io::Image im(w, h, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        im.at(y, x, k) = static_cast<uint8_t>((x * 7 + y * 13 + k * 50) % 256);
  return im;
}

void expect_io_error_naming(const std::filesystem::path& path) {
  try {
    io::read_image(path);
    FAIL() << "no error for " << path;
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

TEST(Image, PngRoundTripIsExact) {
  test::TempDir dir;
  for (int c : {1, 3, 4}) {
    const io::Image im = gradient(13, 7, c);
    const auto path = dir / ("g" + std::to_string(c) + ".png");
    io::write_png(path, im);
    EXPECT_EQ(io::read_image(path, 0), im) << "channels " << c;
  }
  // No temporary files are left behind by the atomic write.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    files += e.is_regular_file();
  EXPECT_EQ(files, 3u);
}

TEST(Image, ReadConvertsChannels) {
  test::TempDir dir;
  io::Image grey(4, 3, 1);
  for (size_t i = 0; i < grey.pixels.size(); ++i) grey.pixels[i] = static_cast<uint8_t>(i * 20);
  io::write_png(dir / "grey.png", grey);
  const io::Image rgb = io::read_image(dir / "grey.png");  // default: 3 channels
  ASSERT_EQ(rgb.channels, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(rgb.at(y, x, c), grey.at(y, x, 0));
  io::write_png(dir / "rgba.png", gradient(5, 5, 4));
  const io::Image dropped = io::read_image(dir / "rgba.png", 3);
  EXPECT_EQ(dropped.channels, 3);
  EXPECT_EQ(dropped.at(2, 3, 1), gradient(5, 5, 4).at(2, 3, 1));
}

TEST(Image, MissingOrCorruptFileIsIoErrorNamingTheFile) {
  test::TempDir dir;
  expect_io_error_naming(dir / "missing.png");
  io::write_file_atomically(dir / "empty.png", "");
  expect_io_error_naming(dir / "empty.png");
  io::write_file_atomically(dir / "text.png", "this is not an image at all");
  expect_io_error_naming(dir / "text.png");
  // A real PNG cut in half.
  const std::string png = io::encode_png(gradient(32, 32));
  io::write_file_atomically(dir / "truncated.png", png.substr(0, png.size() / 2));
  expect_io_error_naming(dir / "truncated.png");
}

// A PNG whose header claims 18000 x 18000 pixels is refused before stb allocates 0.97 GB for it
// (stb itself refuses only images over 1 GB).
TEST(Image, DecompressionBombIsRefusedBeforeDecoding) {
  std::string png = io::encode_png(gradient(4, 4));
  for (int at : {16, 20}) {  // IHDR width and height, big-endian
    const uint32_t v = 18000;
    for (int k = 0; k < 4; ++k) png[at + k] = static_cast<char>((v >> (24 - 8 * k)) & 0xff);
  }
  try {
    io::decode_image(png, "bomb.png", 3);
    ADD_FAILURE() << "decoded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("bomb.png: 18000x18000 pixels is more than 178956970"), std::string::npos)
        << e.what();
  }
}

TEST(Image, TensorRoundTripInBothRanges) {
  const io::Image im = gradient(6, 5);
  for (auto range : {io::PixelRange::kZeroOne, io::PixelRange::kMinusOneOne}) {
    const auto t = io::to_tensor(im, range);
    ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 5, 6}));
    EXPECT_EQ(t.dtype(), torch::kFloat32);
    const double lo = range == io::PixelRange::kZeroOne ? 0.0 : -1.0;
    EXPECT_NEAR(t[1][2][3].item<double>(), lo + (1.0 - lo) * im.at(2, 3, 1) / 255.0, 1e-6);
    EXPECT_EQ(io::from_tensor(t, range), im);
  }
  // Out-of-range values clamp; other shapes are a usage error.
  auto t = torch::full({3, 2, 2}, 3.0f);
  EXPECT_EQ(io::from_tensor(t).pixels, std::vector<uint8_t>(12, 255));
  EXPECT_THROW(io::from_tensor(torch::zeros({2, 2})), UsageError);
}

TEST(Image, ResizeShorterSideAndCrops) {
  const io::Image im = gradient(40, 20);
  const io::Image r = io::resize_shorter_side(im, 10);
  EXPECT_EQ(r.width, 20);
  EXPECT_EQ(r.height, 10);
  EXPECT_EQ(io::resize_shorter_side(gradient(20, 30), 7).height, 10);  // 30 * 7 / 20 = 10.5 -> 10
  // A constant image stays constant through the filter.
  io::Image flat(17, 9, 3);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 77);
  for (uint8_t v : io::resize(flat, 5, 11).pixels) EXPECT_EQ(v, 77);
  // Downscaling by 2 with the tent filter averages neighbours (antialiasing): a 1-pixel
  // checkerboard becomes flat grey rather than aliasing.
  io::Image checker(16, 16, 1);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) checker.at(y, x, 0) = ((x + y) % 2) ? 255 : 0;
  const io::Image half = io::resize(checker, 8, 8);
  for (int y = 1; y < 7; ++y)  // away from the clamped edges
    for (int x = 1; x < 7; ++x) EXPECT_NEAR(half.at(y, x, 0), 128, 2) << y << "," << x;

  const io::Image c = io::center_crop(im, 10);
  EXPECT_EQ(c.width, 10);
  EXPECT_EQ(c.at(0, 0, 0), im.at(5, 15, 0));  // offsets round((H-10)/2), round((W-10)/2)
  EXPECT_EQ(io::crop(im, 3, 4, 5, 6).at(1, 2, 2), im.at(5, 5, 2));
  EXPECT_THROW(io::crop(im, 36, 0, 5, 5), UsageError);
  const io::Image f = io::flip_horizontal(im);
  EXPECT_EQ(f.at(3, 0, 1), im.at(3, 39, 1));
  EXPECT_EQ(io::flip_horizontal(f), im);
}

TEST(Image, GridTilesWithMargins) {
  std::vector<io::Image> tiles;
  for (int i = 0; i < 5; ++i) {
    io::Image t(4, 3, 3);
    std::fill(t.pixels.begin(), t.pixels.end(), static_cast<uint8_t>(i * 10));
    tiles.push_back(t);
  }
  const io::Image g = io::make_grid(tiles, 3, 2, 255);
  EXPECT_EQ(g.width, 3 * 4 + 4 * 2);
  EXPECT_EQ(g.height, 2 * 3 + 3 * 2);
  EXPECT_EQ(g.at(0, 0, 0), 255);
  EXPECT_EQ(g.at(2, 2, 0), 0);                          // tile 0
  EXPECT_EQ(g.at(2 + 3 + 2, 2 + 4 + 2, 0), 40);         // tile 4: row 1, column 1
  EXPECT_EQ(g.at(2 + 3 + 2, 2 + 2 * (4 + 2), 0), 255);  // empty slot stays margin colour
  tiles[2] = io::Image(5, 3, 3);
  EXPECT_THROW(io::make_grid(tiles, 3), UsageError);
}

}  // namespace
}  // namespace dro
