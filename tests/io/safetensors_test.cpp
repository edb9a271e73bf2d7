// safetensors reader/writer: round trip of every dtype, layout as the reference writes it, and
// one test per malformed-file case (each file is written here byte by byte).
#include "dro/io/safetensors.h"

#include <fstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"

namespace dro::io {
namespace {

using test::TempDir;

// Writes a raw safetensors file: 8-byte length + header text + data bytes.
void write_raw(const std::filesystem::path& p, const std::string& header, const std::string& data,
               int64_t declared_len = -1) {
  std::ofstream out(p, std::ios::binary);
  uint64_t len = declared_len >= 0 ? uint64_t(declared_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(char((len >> (8 * i)) & 0xff));
  out << header << data;
}

std::string open_error(const std::filesystem::path& p) {
  try {
    SafetensorsFile::open(p);
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir;
  torch::manual_seed(1);
  NamedTensors in = {
      {"f64", torch::randn({3, 2}, torch::kFloat64)},
      {"f32", torch::randn({2, 3, 4})},
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"i64", torch::randint(-1000000, 1000000, {4}, torch::kInt64)},
      {"i32", torch::randint(-1000, 1000, {4}, torch::kInt32)},
      {"i16", torch::randint(-100, 100, {3}, torch::kInt16)},
      {"i8", torch::randint(-100, 100, {3}, torch::kInt8)},
      {"u8", torch::randint(0, 255, {7}, torch::kUInt8)},
      {"bool", torch::randint(0, 2, {6}).to(torch::kBool)},
      {"scalar", torch::tensor(3.5f).reshape({})},
      {"empty", torch::zeros({0, 4})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input
  };
  save_safetensors(dir / "a.safetensors", in, {{"format", "pt"}, {"note", "x"}});
  auto f = SafetensorsFile::open(dir / "a.safetensors");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "x");
  ASSERT_EQ(f->tensors().size(), in.size());
  for (const auto& [name, t] : in) {
    auto got = f->get(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(got, t.contiguous())) << name;
  }
  // Conversion on request.
  auto h = f->get("f16", torch::kFloat32);
  EXPECT_EQ(h.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(h, in[2].second.to(torch::kFloat32)));
}

TEST(Safetensors, ReferenceLayout) {
  TempDir dir;
  save_safetensors(dir / "b.safetensors",
                   {{"b", torch::zeros({3}, torch::kInt8)}, {"a", torch::ones({2}, torch::kFloat16)},
                    {"c", torch::ones({1}, torch::kFloat64)}},
                   {{"format", "pt"}});
  const std::string bytes = read_file(dir / "b.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "header padded to 8 bytes";
  const std::string header = bytes.substr(8, n);
  // __metadata__ first, then larger dtypes first: c (F64), a (F16), b (I8).
  EXPECT_LT(header.find("__metadata__"), header.find("\"c\""));
  EXPECT_LT(header.find("\"c\""), header.find("\"a\""));
  EXPECT_LT(header.find("\"a\""), header.find("\"b\""));
  EXPECT_EQ(bytes.size(), 8 + n + 8 + 4 + 3);
}

TEST(Safetensors, TensorsViewTheMappingWithoutChangingTheFile) {
  TempDir dir;
  save_safetensors(dir / "c.safetensors", {{"x", torch::arange(16, torch::kFloat32)}});
  {
    auto f = SafetensorsFile::open(dir / "c.safetensors");
    auto x = f->get("x");
    x.mul_(0);  // copy-on-write: must not reach the file
  }
  auto x = SafetensorsFile::open(dir / "c.safetensors")->get("x");
  EXPECT_EQ(x[15].item<float>(), 15.0f);
  // The tensor keeps the mapping alive after the file object is gone.
  torch::Tensor kept;
  {
    kept = SafetensorsFile::open(dir / "c.safetensors")->get("x");
  }
  EXPECT_EQ(kept.sum().item<float>(), 120.0f);
}

TEST(Safetensors, AtomicWriteKeepsTheOldFileOnFailure) {
  TempDir dir;
  save_safetensors(dir / "d.safetensors", {{"x", torch::ones({2})}});
  EXPECT_THROW(save_safetensors(dir / "d.safetensors", {{"x", torch::ones({2})}, {"x", torch::ones({1})}}),
               UsageError);
  EXPECT_THROW(save_safetensors(dir / "d.safetensors", {{"y", torch::Tensor()}}), UsageError);
  EXPECT_TRUE(torch::equal(SafetensorsFile::open(dir / "d.safetensors")->get("x"), torch::ones({2})));
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++files;
  EXPECT_EQ(files, 1u) << "no temporary file left behind";
}

struct BadCase {
  const char* name;
  std::string header;
  std::string data;
  int64_t declared_len;
  const char* expect;  // substring of the error
};

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  TempDir dir;
  const std::string f32x2 = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::vector<BadCase> cases = {
      {"header_too_long", "{}", "", int64_t(200) << 20, "exceeds the limit"},
      {"header_past_eof", "{}", "", 4096, "truncated download"},
      {"not_json", "{nope", "", -1, "not valid JSON"},
      {"not_object", "[1,2]", "", -1, "must be a JSON object"},
      {"unknown_dtype", R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", "x", -1, "unknown dtype 'Q7'"},
      {"unsupported_dtype", R"({"w":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}})", "xxxx", -1, "LibTorch"},
      {"shape_mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'), -1, "needs 12 bytes"},
      {"negative_shape", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'), -1, "non-negative"},
      {"truncated_data", f32x2, std::string(4, '\0'), -1, "truncated download"},
      {"reversed_offsets", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0'), -1, "end before"},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       std::string(12, '\0'), -1, "overlap"},
      {"missing_field", R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0'), -1, "missing field 'data_offsets'"},
      {"metadata_not_string", R"({"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       std::string(8, '\0'), -1, "must be a string"},
      {"bad_offsets", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", std::string(8, '\0'), -1, "two non-negative"},
  };
  for (const auto& c : cases) {
    const auto p = dir / (std::string(c.name) + ".safetensors");
    write_raw(p, c.header, c.data, c.declared_len);
    const std::string err = open_error(p);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.name << ": got '" << err << "'";
    EXPECT_NE(err.find(p.string()), std::string::npos) << c.name << ": error names the file";
  }
  // Shorter than the length field.
  {
    const auto p = dir / "tiny.safetensors";
    std::ofstream(p, std::ios::binary) << "abc";
    EXPECT_NE(open_error(p).find("fewer than the 8-byte"), std::string::npos);
  }
  // PyTorch checkpoints are pointed at the checkpoint reader and `dro convert`.
  {
    const auto p = dir / "model.ckpt";
    std::ofstream(p, std::ios::binary) << "PK";
    const std::string e = open_error(p);
    EXPECT_NE(e.find("PyTorch checkpoint"), std::string::npos) << e;
    EXPECT_NE(e.find("dro convert"), std::string::npos) << e;
  }
  EXPECT_NE(open_error(dir / "absent.safetensors").find("cannot open"), std::string::npos);
}

TEST(Safetensors, HeaderParserRejectsEveryPrefixOfAValidHeader) {
  // A cheap fuzz: every truncation of a valid header must throw IoError, never crash.
  const std::string h =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}})";
  for (size_t n = 0; n < h.size(); ++n)
    EXPECT_THROW(parse_safetensors_header(h.substr(0, n), 12, "prefix", nullptr), IoError) << n;
  EXPECT_EQ(parse_safetensors_header(h, 12, "full", nullptr).size(), 1u);
}

}  // namespace
}  // namespace dro::io
