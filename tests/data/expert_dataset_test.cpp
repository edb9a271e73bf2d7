// The expert folder scan: folders train.py's glob would not see are ignored with one warning, and
// every image's header (not its pixels) is checked so a broken file is named before training.
#include <fstream>

#include "dro/core/error.h"
#include "dro/data/expert_dataset.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"
#include "train/train_helpers.h"

// Declarations only: the library compiles stb's implementation.
#include <stb_image_write.h>

namespace dro::data {
namespace {
namespace fs = std::filesystem;

// The IoError message of scanning `root`, or "no error".
std::string scan_error(const fs::path& root, bool skip_bad = false) {
  try {
    ExpertDataset::scan(root, skip_bad);
  } catch (const IoError& e) {
    return e.what();
  }
  return "no error";
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(ExpertDataset, FoldersWithoutCaptionOrHiddenAreIgnoredWithOneWarning) {
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  test::write_experts(root, 3);
  fs::create_directories(root / "__MACOSX");
  write_bytes(root / "__MACOSX" / "._000.png", "resource fork");
  fs::create_directories(root / ".ipynb_checkpoints");
  write_bytes(root / ".ipynb_checkpoints" / "caption.txt",
              "hidden: the official glob skips it too");
  fs::create_directories(root / "notes");
  ::testing::internal::CaptureStderr();
  const auto d = ExpertDataset::scan(root);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.skipped(), 0);
  EXPECT_EQ(d.ignored_folders(),
            (std::vector<std::string>{".ipynb_checkpoints", "__MACOSX", "notes"}));
  EXPECT_EQ(d.prompt(0), "a red circle");
  EXPECT_TRUE(has(
      err,
      "ignoring 3 sub-folders hidden or without caption.txt: .ipynb_checkpoints, __MACOSX, notes"))
      << err;
  EXPECT_EQ(count(err, "warning"), 1u) << err;
}

TEST(ExpertDataset, TheWarningListsTheFirstFewIgnoredFolders) {
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  test::write_experts(root, 1);
  for (int i = 0; i < 8; ++i) fs::create_directories(root / cat("junk", i));
  ::testing::internal::CaptureStderr();
  const auto d = ExpertDataset::scan(root);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(d.size(), 1);
  EXPECT_EQ(d.ignored_folders().size(), 8u);
  EXPECT_TRUE(has(
      err,
      "ignoring 8 sub-folders hidden or without caption.txt: junk0, junk1, junk2, junk3, junk4, "
      "... (3 more)"))
      << err;
}

TEST(ExpertDataset, NothingLeftAfterIgnoringIsAClearError) {
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  fs::create_directories(root / "__MACOSX");
  fs::create_directories(root / "notes");
  const std::string m = scan_error(root);
  EXPECT_TRUE(has(m, cat("[data] ", root.string(), ": no examples"))) << m;
  EXPECT_TRUE(has(m, "ignored 2 sub-folders hidden or without caption.txt: __MACOSX, notes")) << m;
  EXPECT_TRUE(has(scan_error(tmp / "missing"), "is not a folder"));
  test::TempDir empty;
  EXPECT_TRUE(has(scan_error(empty.path()), "no examples")) << scan_error(empty.path());
}

TEST(ExpertDataset, ACaptionWithoutAnImageIsNamed) {
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  test::write_experts(root, 2);
  fs::create_directories(root / "007");
  write_bytes(root / "007" / "caption.txt", "no image here");
  const std::string m = scan_error(root);
  EXPECT_TRUE(has(m, "007: no .png/.jpg image (pass --skip-bad-images")) << m;
  ::testing::internal::CaptureStderr();
  const auto d = ExpertDataset::scan(root, /*skip_bad=*/true);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.skipped(), 1);
}

TEST(ExpertDataset, BrokenImageHeadersAreNamedAtScanTime) {
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  test::write_experts(root, 3);
  const fs::path png = root / "001" / "001.png";
  const std::string good = io::read_file(png);
  ASSERT_GT(good.size(), 100u);
  struct Case {
    const char* what;
    std::string bytes;
    const char* message;
  };
  const Case cases[] = {
      {"not an image", "this is not a png", "001/001.png: not a readable PNG/JPEG image"},
      {"empty", "", "001/001.png: empty file"},
      {"JPEG start only", std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF", 10),
       "001/001.png: not a readable PNG/JPEG"},
      {"header only", good.substr(0, 40), "truncated download or copy?"},
      {"cut in the middle", good.substr(0, good.size() / 2), "truncated download or copy?"},
      {"no IEND", good.substr(0, good.size() - 12), "before its IEND chunk"},
  };
  for (const auto& c : cases) {
    write_bytes(png, c.bytes);
    const std::string m = scan_error(root);
    EXPECT_TRUE(has(m, c.message)) << c.what << ": " << m;
    EXPECT_TRUE(has(m, "001/001.png")) << c.what << ": " << m;
    // --skip-bad-images skips the folder instead.
    ::testing::internal::CaptureStderr();
    const auto d = ExpertDataset::scan(root, true);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(d.size(), 2) << c.what;
    EXPECT_EQ(d.skipped(), 1) << c.what;
    EXPECT_TRUE(has(err, "skipping ") && has(err, "001/001.png")) << err;
  }
  write_bytes(png, good);
  EXPECT_EQ(scan_error(root), "no error");
}

TEST(ExpertDataset, JpegHeadersAreFoundPastLongMetadata) {
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  test::write_experts(root, 2);
  std::string jpeg;
  std::vector<unsigned char> rgb(24 * 16 * 3, 128);
  ASSERT_TRUE(stbi_write_jpg_to_func(
      [](void* ctx, void* data, int n) {
        static_cast<std::string*>(ctx)->append(static_cast<char*>(data), n);
      },
      &jpeg, 24, 16, 3, rgb.data(), 90));
  // Two 64 KiB APP1 segments after SOI push the frame header past the first read.
  std::string app = std::string("\xFF\xE1\xFF\xFF", 4) + std::string(0xFFFF - 2, 'x');
  const std::string padded = jpeg.substr(0, 2) + app + app + jpeg.substr(2);
  fs::remove(root / "001" / "001.png");
  write_bytes(root / "001" / "001.jpg", padded);
  const auto d = ExpertDataset::scan(root);
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.image_path(1).filename(), "001.jpg");
  // Cut inside the metadata: no frame header, named at scan time.
  write_bytes(root / "001" / "001.jpg", padded.substr(0, 100000));
  const std::string m = scan_error(root);
  EXPECT_TRUE(has(m, "001/001.jpg: not a readable PNG/JPEG image")) << m;
}

TEST(ExpertDataset, TheScanReadsHeadersNotPixels) {
  // A PNG whose chunks are intact but whose compressed pixels are not: the header check passes
  // (no decode at scan time), loading names the file, and --skip-bad-images decodes to find it.
  test::TempDir tmp;
  const fs::path root = tmp / "data";
  test::write_experts(root, 2);
  const fs::path png = root / "000" / "000.png";
  std::string bytes = io::read_file(png);
  const size_t idat = bytes.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  bytes[idat + 4] = '\xFF';  // the zlib header of the pixel stream
  bytes[idat + 5] = '\xFF';
  write_bytes(png, bytes);
  const auto d = ExpertDataset::scan(root);
  ASSERT_EQ(d.size(), 2);
  try {
    d.load(0, TransformOptions{32, false, false}, 0.9, 0, 0);
    FAIL() << "a PNG with corrupt pixel data decoded";
  } catch (const IoError& e) {
    EXPECT_TRUE(has(e.what(), "000/000.png")) << e.what();
  }
  ::testing::internal::CaptureStderr();
  const auto skipped = ExpertDataset::scan(root, true);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(skipped.size(), 1);
  EXPECT_EQ(skipped.skipped(), 1);
}

}  // namespace
}  // namespace dro::data
