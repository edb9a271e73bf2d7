// Runs the real `dro convert` and `dro inspect` on the scorer fixtures' PyTorch checkpoints, and
// scores with a converted HPSv2 checkpoint.
#include <fstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/io/torch_checkpoint.h"
#include "test_util.h"

namespace dro {
namespace {

namespace fs = std::filesystem;

TEST(CliConvert, CheckpointToSafetensorsKeepsEveryTensorAndScoresAlike) {
  DRO_REQUIRE_SCORER_FIXTURES();
  test::TempDir tmp;
  const fs::path pt = test::scorer_fixtures() / "hpsv2-tiny" / "HPS_v2_compressed.pt";
  auto [rc, out] =
      test::run_command(cat(DRO_BINARY, " convert ", pt, " --out ", tmp / "hps.safetensors"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("state_dict"), std::string::npos) << out;
  const auto converted = io::load_safetensors(tmp / "hps.safetensors");
  const auto original = io::torch_state_dict(pt);
  ASSERT_EQ(converted.size(), original.size());
  for (const auto& [k, t] : original) {
    ASSERT_TRUE(converted.count(k)) << k;
    EXPECT_TRUE(torch::equal(converted.at(k), t)) << k;
  }
  // inspect reads the checkpoint itself, through the same safe reader.
  auto [rc2, out2] = test::run_command(cat(DRO_BINARY, " inspect --json ", pt));
  ASSERT_EQ(rc2, 0) << out2;
  const auto j = io::OrderedJson::parse(out2);
  EXPECT_EQ(j["kind"], "checkpoint");
  EXPECT_EQ(j["num_tensors"].get<size_t>(), original.size());
  EXPECT_EQ(j["metadata"]["state_dict_key"], "state_dict");

  // dro score gives the same HPSv2 with the .pt and with its conversion.
  fs::create_directories(tmp / "set" / "p0");
  io::write_file_atomically(tmp / "set" / "p0" / "caption.txt", "a red fox");
  fs::copy_file(test::scorer_fixtures() / "images" / "square_64x64.png",
                tmp / "set" / "p0" / "a.png");
  fs::copy_file(test::scorer_fixtures() / "images" / "photo_75x56.jpg",
                tmp / "set" / "p0" / "b.jpg");
  const std::string flags =
      cat(" score --hpsv2 --quiet --dir ", tmp / "set", " --hpsv2-config ",
          test::scorer_fixtures() / "hpsv2-tiny" / "ViT-H-14.json", " --open-clip-tokenizer ",
          test::scorer_fixtures() / "clip-vit-h-14-tiny");
  auto [rc3, out3] = test::run_command(
      cat(DRO_BINARY, flags, " --hpsv2-checkpoint ", pt, " --out ", tmp / "a.jsonl"));
  ASSERT_EQ(rc3, 0) << out3;
  auto [rc4, out4] = test::run_command(cat(DRO_BINARY, flags, " --hpsv2-checkpoint ",
                                           tmp / "hps.safetensors", " --out ", tmp / "b.jsonl"));
  ASSERT_EQ(rc4, 0) << out4;
  std::ifstream a(tmp / "a.jsonl"), b(tmp / "b.jsonl");
  std::string la, lb;
  int rows = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    const auto ja = io::OrderedJson::parse(la), jb = io::OrderedJson::parse(lb);
    EXPECT_EQ(ja["hpsv2"].get<double>(), jb["hpsv2"].get<double>());
    ++rows;
  }
  EXPECT_EQ(rows, 2);
}

TEST(CliConvert, RefusesAMaliciousPickle) {
  test::TempDir tmp;
  // A stored ZIP whose data.pkl calls os.system: rejected by name, nothing runs.
  const std::string pkl =
      "\x80\x02"
      "cos\nsystem\nq\x00X\x05\x00\x00\x00touch\x85R.";
  auto le16 = [](uint16_t v) { return std::string{char(v & 0xff), char(v >> 8)}; };
  auto le32 = [](uint32_t v) {
    return std::string{char(v & 0xff), char((v >> 8) & 0xff), char((v >> 16) & 0xff),
                       char(v >> 24)};
  };
  // CRC-32 of the pickle (the reader checks data.pkl's).
  uint32_t crc = 0xffffffffu;
  for (unsigned char ch : pkl) {
    crc ^= ch;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  const std::string name = "evil/data.pkl";
  std::string zip = "PK\x03\x04" + le16(20) + le16(0) + le16(0) + le16(0) + le16(0) + le32(crc) +
                    le32(pkl.size()) + le32(pkl.size()) + le16(name.size()) + le16(0) + name + pkl;
  const uint32_t cd_offset = zip.size();
  std::string cd = "PK\x01\x02" + le16(20) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0) +
                   le32(crc) + le32(pkl.size()) + le32(pkl.size()) + le16(name.size()) + le16(0) +
                   le16(0) + le16(0) + le16(0) + le32(0) + le32(0) + name;
  zip += cd + "PK\x05\x06" + le16(0) + le16(0) + le16(1) + le16(1) + le32(cd.size()) +
         le32(cd_offset) + le16(0);
  io::write_file_atomically(tmp / "evil.pt", zip);
  auto [rc, out] = test::run_command(
      cat("cd ", tmp.path(), " && ", DRO_BINARY, " convert evil.pt --out evil.safetensors"));
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("os.system"), std::string::npos) << out;
  EXPECT_NE(out.find("evil.pt"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(tmp / "touch"));
  EXPECT_FALSE(fs::exists(tmp / "evil.safetensors"));
}

}  // namespace
}  // namespace dro
