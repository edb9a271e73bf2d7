// Inputs found while fuzzing the readers (fuzz/README.md), each answered now by the project's
// own error: an out_of_range from nlohmann's number parsing, an overlap and a huge dimension the
// safetensors range checks missed, a TOML literal string nlohmann could not write back, and image
// headers stb_image 2.27 trusted (a JPEG Huffman table it overflows on, a table never defined, a
// PNG chunk, a JPEG frame and BMP rows larger than the file).
#include <fstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/io/toml.h"
#include "dro/text/clip_tokenizer.h"
#include "dro/train/train_config.h"
#include "dro/vision/decode.h"
#include "test_util.h"

namespace dro {
namespace {

using test::TempDir;

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

// A safetensors file: 8-byte little-endian header length + header + data.
void write_safetensors(const std::filesystem::path& p, const std::string& header,
                       const std::string& data) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  write_text(p, bytes + header + data);
}

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "no error";
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(FuzzRegression, SafetensorsHeaderNumberOverflowIsIoError) {
  // fuzz_safetensors crash-7e93e931: nlohmann throws out_of_range (not parse_error) for 3e666.
  const std::string found = "{\"ap6[\":3e" + std::string(45, '6') + "\xb8]}}";
  const std::string e = error_of<IoError>(
      [&] { io::parse_safetensors_header(found, 0, "crash.safetensors", nullptr); });
  EXPECT_TRUE(has(e, "crash.safetensors: header is not valid JSON")) << e;
  EXPECT_TRUE(has(e, "number overflow")) << e;

  TempDir dir;
  write_safetensors(dir / "a.safetensors", R"({"__metadata__":{"x":"1"},"a":1e400})", "");
  const std::string e2 =
      error_of<IoError>([&] { io::SafetensorsFile::open(dir / "a.safetensors"); });
  EXPECT_TRUE(has(e2, "header is not valid JSON")) << e2;
}

TEST(FuzzRegression, SafetensorsEmptyTensorDoesNotHideOverlap) {
  // 'b' is empty at byte 4: the neighbour check compared a with b and b with c, never a with c.
  TempDir dir;
  write_safetensors(dir / "x.safetensors",
                    R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)"
                    R"("c":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                    "12345678");
  const std::string e =
      error_of<IoError>([&] { io::SafetensorsFile::open(dir / "x.safetensors"); });
  EXPECT_TRUE(has(e, "tensors 'a' [0, 8) and 'c' [4, 8) overlap")) << e;

  // An empty tensor inside another's bytes is still fine (it holds none).
  write_safetensors(dir / "ok.safetensors",
                    R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}})",
                    "12345678");
  auto f = io::SafetensorsFile::open(dir / "ok.safetensors");
  EXPECT_EQ(f->get("b").sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(FuzzRegression, SafetensorsZeroDimDoesNotAdmitHugeDims) {
  // A 0 made numel 0, so no dimension was bounded: 2^64-1 became the int64 -1 and get() threw
  // LibTorch's c10::Error ("negative dimension") instead of an IoError.
  TempDir dir;
  write_safetensors(
      dir / "x.safetensors",
      R"({"a":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", "");
  const std::string e =
      error_of<IoError>([&] { io::SafetensorsFile::open(dir / "x.safetensors"); });
  EXPECT_TRUE(has(e, "tensor 'a': shape [0,18446744073709551615] is too large")) << e;
}

TEST(FuzzRegression, ReadJsonNumberOverflowIsIoError) {
  // `dro train --config cfg.json` with 1e400: nlohmann's out_of_range escaped io::read_json.
  TempDir dir;
  write_text(dir / "cfg.json", R"({"margin": 1e400})");
  const std::string e = error_of<IoError>([&] { io::read_json(dir / "cfg.json"); });
  EXPECT_TRUE(has(e, "cfg.json: not valid JSON")) << e;
  EXPECT_TRUE(has(e, "number overflow")) << e;
}

TEST(FuzzRegression, TokenizerVocabNumberOverflowIsIoError) {
  TempDir dir;
  write_text(dir / "vocab.json", R"({"a</w>": 1e400})");
  write_text(dir / "merges.txt", "#version: 0.2\n");
  const std::string e = error_of<IoError>([&] { text::ClipTokenizer::load(dir.path()); });
  EXPECT_TRUE(has(e, "vocab.json: not valid JSON")) << e;
}

TEST(FuzzRegression, TomlInvalidUtf8IsUsageError) {
  // A literal string was copied into the JSON unchecked; nlohmann then threw type_error 316 when
  // the value was printed in an error message or saved with the run's config.
  TempDir dir;
  write_text(dir / "cfg.toml", "[train]\nlogdir = 'runs/\xff'\nseed = '\xc3\x28'\n");
  const std::string e =
      error_of<UsageError>([&] { io::read_flat_toml(dir / "cfg.toml", "train"); });
  EXPECT_TRUE(has(e, "cfg.toml:2: byte 16 is not valid UTF-8")) << e;

  // Overlong forms and surrogates are not UTF-8 either; valid multi-byte text still reads.
  for (const std::string bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    write_text(dir / "bad.toml", "logdir = '" + bad + "'\n");
    EXPECT_THROW(io::read_flat_toml(dir / "bad.toml"), UsageError);
  }
  write_text(dir / "ok.toml", "logdir = 'runs/caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80'\n");
  const io::OrderedJson j = io::read_flat_toml(dir / "ok.toml");
  train::TrainConfig c;
  c.update_from_json(j, "ok.toml");
  EXPECT_EQ(c.logdir, "runs/caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_NO_THROW((void)c.to_json().dump());
}

TEST(FuzzRegression, JpegHuffmanTableOverflowIsIoError) {
  // fuzz_image crash-8cc3838c, reduced: SOI, then a DHT whose 16 counts are 255 (4080 codes).
  // stb_image 2.27 wrote them past its 257-entry size table (UBSan: index 257 out of bounds).
  const std::string dht = std::string("\xff\xd8\xff\xc4\x00\x13\x00", 7) + std::string(16, '\xff');
  const std::string e = error_of<IoError>([&] { io::decode_image(dht, "x.jpg"); });
  EXPECT_TRUE(has(e, "x.jpg: JPEG Huffman table at byte 6 defines 4080 codes")) << e;
  // The check also follows a DHT placed after the first scan (entropy data skipped, FF00 stuffed).
  const std::string later =
      std::string("\xff\xd8\xff\xda\x00\x02\x12\xff\x00\x34\xff\xd0", 12) + dht.substr(2);
  EXPECT_THROW(io::check_image_bytes(later, "y.jpg"), IoError);
  // Real files pass, through both decoders.
  DRO_REQUIRE_SCORER_FIXTURES();
  const auto photo = test::scorer_fixtures() / "images" / "photo_75x56.jpg";
  EXPECT_NO_THROW(io::check_image_bytes(io::read_file(photo), photo.string()));
  EXPECT_EQ(io::read_image(photo).width, 75);
  EXPECT_EQ(vision::decode_image_file(photo).width(), 75);
}

TEST(FuzzRegression, UndefinedJpegHuffmanTableDecodesAlike) {
  // fuzz_image crash-8d8db5b2: the photo with its last DHT (the chroma AC table) turned into an
  // APP4 segment. stb 2.27 decoded the scan with whatever its allocation held (UBSan: index 624 out
  // of bounds) before giving up on the file; with zeroed allocations every decode ends the same
  // way, whatever the heap held before.
  DRO_REQUIRE_SCORER_FIXTURES();
  std::string jpg = io::read_file(test::scorer_fixtures() / "images" / "photo_75x56.jpg");
  const size_t at = jpg.rfind("\xff\xc4");
  ASSERT_NE(at, std::string::npos);
  jpg[at + 1] = '\xe4';
  std::vector<std::string> errors;
  for (const uint8_t fill : {0x00, 0xab, 0x5c}) {
    {  // leave bytes behind for the next allocation (passed out so the buffer is not elided)
      const std::string junk(1 << 16, static_cast<char>(fill));
      io::check_image_bytes(junk, "junk");
    }
    errors.push_back(error_of<IoError>([&] { io::decode_image(jpg, "x.jpg"); }));
  }
  EXPECT_TRUE(has(errors[0], "x.jpg: cannot decode image")) << errors[0];
  EXPECT_EQ(errors[0], errors[1]);
  EXPECT_EQ(errors[0], errors[2]);
}

TEST(FuzzRegression, PngChunkLongerThanFileIsIoError) {
  // fuzz_image oom-5178609c, reduced: an IDAT claiming 1375732351 bytes in a 50-byte file; stb
  // reserved 2 GB for it before reading.
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0dIHDR\0\0\0\x3c\0\0\0\x30\x08\0\0\0\0\0\0\0\0", 25);
  png += std::string("\x52\x00\x77\x7fIDAT", 8) + std::string(9, 'x');
  const std::string e = error_of<IoError>([&] { io::decode_image(png, "x.png"); });
  EXPECT_TRUE(has(e, "x.png: PNG chunk 'IDAT' at byte 33 claims 1375762303 bytes")) << e;
  EXPECT_THROW(vision::decode_image_bytes(png, "x.png"), IoError);
}

TEST(FuzzRegression, JpegFrameLargerThanItsDataIsIoError) {
  // fuzz_image oom-118890f7: 77 bytes whose frame stb decoded into 1.4 GB of zeros. A frame of
  // 16384 x 16384 needs at least 512 KB of Huffman-coded data.
  const std::string jpg = std::string("\xff\xd8\xff\xc0\x00\x11\x08\x40\x00\x40\x00\x03", 12) +
                          std::string("\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9", 11);
  const std::string e = error_of<IoError>([&] { io::decode_image(jpg, "x.jpg"); });
  EXPECT_TRUE(has(e, "x.jpg: JPEG frame of 16384x16384 pixels cannot fit in 23 bytes")) << e;
  EXPECT_THROW(vision::decode_image_bytes(jpg, "x.jpg"), IoError);
}

TEST(FuzzRegression, TruncatedBmpIsIoError) {
  // fuzz_image slow-unit-1b972aef: 54 bytes claiming 3 x 16776706 pixels; stb allocated 150 MB per
  // decode and zero-filled the rows (10 s under the sanitizers).
  std::string bmp = "BM";
  const auto le = [&](uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) bmp += char((v >> (8 * i)) & 0xff);
  };
  le(78, 4), le(0, 4), le(54, 4);                             // file size, reserved, data offset
  le(40, 4), le(3, 4), le(16776706, 4), le(1, 2), le(24, 2);  // BITMAPINFOHEADER: 3 x 16776706
  le(0, 4), le(24, 4), le(2835, 4), le(2835, 4), le(0, 4), le(0, 4);
  const std::string e = error_of<IoError>([&] { io::decode_image(bmp, "x.bmp"); });
  EXPECT_TRUE(has(e, "x.bmp: BMP of 3x16776706 pixels at 24 bits needs 201320523 bytes")) << e;
  EXPECT_THROW(vision::decode_image_bytes(bmp, "x.bmp"), IoError);

  // The same header with 2 rows and their 24 bytes decodes (the last row's padding may be missing).
  bmp.replace(22, 4, std::string("\x02\x00\x00\x00", 4));
  bmp += std::string(21, '\x7f');
  const io::Image im = io::decode_image(bmp, "ok.bmp");
  EXPECT_EQ(im.width, 3);
  EXPECT_EQ(im.height, 2);
  EXPECT_EQ(vision::decode_image_bytes(bmp, "ok.bmp").mode, "RGB");

  // fuzz_image crash-5e124f53 and crash-5ab2ea26: stb decodes a height or width of 0 (the latter
  // with a compression field stb reads as negative) as an image without pixels.
  bmp.replace(22, 4, std::string(4, '\0'));
  const std::string e0 = error_of<IoError>([&] { io::decode_image(bmp, "zero.bmp"); });
  EXPECT_TRUE(has(e0, "zero.bmp: BMP of 3x0 pixels (corrupt file)")) << e0;
  EXPECT_THROW(vision::decode_image_bytes(bmp, "zero.bmp"), IoError);
  bmp.replace(18, 8, std::string("\0\0\0\0\x02\0\0\0", 8));  // 0 x 2
  bmp.replace(30, 4, std::string("\0\0\0\xf8", 4));          // compression -134217728
  EXPECT_THROW(io::decode_image(bmp, "zero.bmp"), IoError);
  EXPECT_THROW(vision::decode_image_bytes(bmp, "zero.bmp"), IoError);
}

}  // namespace
}  // namespace dro
