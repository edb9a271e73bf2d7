// torch.save checkpoints: the scorer fixtures as torch 1.13 wrote them, archives built here byte
// by byte (torch 2 layout, ZIP64, odd alignment, every storage dtype, strided and shared
// storages), and hostile or broken files, each of which must give an IoError naming the file.
#include "dro/io/torch_checkpoint.h"

#include <fstream>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/io/weights.h"
#include "test_util.h"

namespace dro::io {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;
using test::TempDir;

// --- building pickles and archives -------------------------------------------------------------

void put_le(std::string& b, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b += static_cast<char>((v >> (8 * i)) & 0xff);
}

// Emits pickle opcodes the way CPython's pickler (protocol 2) spells them.
struct Pickle {
  std::string b;
  Pickle& raw(const std::string& s) {
    b += s;
    return *this;
  }
  Pickle& op(char c) {
    b += c;
    return *this;
  }
  Pickle& proto(int v) {
    b += '\x80';
    b += static_cast<char>(v);
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {
    b += 'c' + module + '\n' + name + '\n';
    return *this;
  }
  Pickle& str(const std::string& s) {
    b += 'X';
    put_le(b, s.size(), 4);
    b += s;
    return *this;
  }
  Pickle& integer(int64_t v) {
    if (v >= 0 && v < 256) {
      b += 'K';
      put_le(b, v, 1);
    } else if (v >= 0 && v < 65536) {
      b += 'M';
      put_le(b, v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      b += 'J';
      put_le(b, static_cast<uint32_t>(v), 4);
    } else {
      b += "\x8a\x08";
      put_le(b, static_cast<uint64_t>(v), 8);
    }
    return *this;
  }
  Pickle& mark() { return op('('); }
  Pickle& tuple() { return op('t'); }
  Pickle& reduce() { return op('R'); }
  Pickle& put(int i) {
    b += 'q';
    b += static_cast<char>(i);
    return *this;
  }
  Pickle& get(int i) {
    b += 'h';
    b += static_cast<char>(i);
    return *this;
  }
  Pickle& ints(const std::vector<int64_t>& v) {
    mark();
    for (auto x : v) integer(x);
    return tuple();
  }
  Pickle& ordered_dict() { return global("collections", "OrderedDict").op(')').reduce(); }
  // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()), with the
  // storage as the persistent id ('storage', torch.<type>, key, 'cpu', numel).
  Pickle& tensor(const std::string& type, const std::string& key, int64_t numel, int64_t offset,
                 const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    mark().str("storage").global("torch", type).str(key).str("cpu").integer(numel).tuple().op('Q');
    integer(offset).ints(size).ints(stride).op('\x89').ordered_dict();
    return tuple().reduce();
  }
  Pickle& stop() { return op('.'); }
};

uint32_t test_crc32(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A ZIP_STORED archive as torch.save writes it: record data 64-byte aligned through padding in the
// local header's extra field; optionally in ZIP64 form, unaligned, or with a given method.
struct Zip {
  struct Entry {
    std::string name, data;
    uint16_t method = 0;
  };
  std::vector<Entry> entries;
  bool zip64 = false;
  size_t align = 64;

  Zip& add(const std::string& name, const std::string& data, uint16_t method = 0) {
    entries.push_back({name, data, method});
    return *this;
  }
  std::string bytes() const {
    std::string out, cd;
    for (const auto& e : entries) {
      const uint64_t offset = out.size();
      const uint32_t crc = test_crc32(e.data);
      size_t pad = 0;
      if (align > 1) {
        const size_t at = out.size() + 30 + e.name.size() + 4;
        pad = (align - at % align) % align;
      }
      out += "PK\x03\x04";
      put_le(out, zip64 ? 45 : 20, 2);
      put_le(out, 0, 2);
      put_le(out, e.method, 2);
      put_le(out, 0, 4);  // time, date
      put_le(out, crc, 4);
      put_le(out, e.data.size(), 4);
      put_le(out, e.data.size(), 4);
      put_le(out, e.name.size(), 2);
      put_le(out, align > 1 ? 4 + pad : 0, 2);
      out += e.name;
      if (align > 1) {
        put_le(out, 0x4246, 2);  // "FB": the padding torch's writer uses
        put_le(out, pad, 2);
        out.append(pad, 'Z');
      }
      out += e.data;

      cd += "PK\x01\x02";
      put_le(cd, zip64 ? 45 : 20, 2);
      put_le(cd, zip64 ? 45 : 20, 2);
      put_le(cd, 0, 2);
      put_le(cd, e.method, 2);
      put_le(cd, 0, 4);
      put_le(cd, crc, 4);
      put_le(cd, zip64 ? 0xFFFFFFFF : e.data.size(), 4);
      put_le(cd, zip64 ? 0xFFFFFFFF : e.data.size(), 4);
      put_le(cd, e.name.size(), 2);
      put_le(cd, zip64 ? 28 : 0, 2);
      put_le(cd, 0, 2);  // comment
      put_le(cd, 0, 2);  // disk
      put_le(cd, 0, 2);
      put_le(cd, 0, 4);
      put_le(cd, zip64 ? 0xFFFFFFFF : offset, 4);
      cd += e.name;
      if (zip64) {
        put_le(cd, 1, 2);
        put_le(cd, 24, 2);
        put_le(cd, e.data.size(), 8);
        put_le(cd, e.data.size(), 8);
        put_le(cd, offset, 8);
      }
    }
    const uint64_t cd_offset = out.size();
    out += cd;
    if (zip64) {
      const uint64_t z = out.size();
      out += "PK\x06\x06";
      put_le(out, 44, 8);
      put_le(out, 45, 2);
      put_le(out, 45, 2);
      put_le(out, 0, 4);
      put_le(out, 0, 4);
      put_le(out, entries.size(), 8);
      put_le(out, entries.size(), 8);
      put_le(out, cd.size(), 8);
      put_le(out, cd_offset, 8);
      out += "PK\x06\x07";
      put_le(out, 0, 4);
      put_le(out, z, 8);
      put_le(out, 1, 4);
    }
    out += "PK\x05\x06";
    put_le(out, 0, 4);
    put_le(out, zip64 ? 0xFFFF : entries.size(), 2);
    put_le(out, zip64 ? 0xFFFF : entries.size(), 2);
    put_le(out, zip64 ? 0xFFFFFFFF : cd.size(), 4);
    put_le(out, zip64 ? 0xFFFFFFFF : cd_offset, 4);
    put_le(out, 0, 2);
    return out;
  }
};

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string floats(int n, float start = 0.0f) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return raw_bytes(v);
}

// A torch 1.x style archive: folder = stem, data.pkl, data/<key>, version.
Zip checkpoint(const std::string& folder, const Pickle& p,
               const std::vector<std::pair<std::string, std::string>>& storages) {
  Zip z;
  z.add(folder + "/data.pkl", p.b);
  for (const auto& [key, bytes] : storages) z.add(folder + "/data/" + key, bytes);
  z.add(folder + "/version", "3\n");
  return z;
}

// The message of the IoError `f` throws ("" and a test failure when it throws none).
template <typename F>
std::string io_error(F&& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an IoError: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

bool has(const std::string& msg, const std::string& part) {
  return msg.find(part) != std::string::npos;
}

// A file holding `pickle` as its data.pkl (no storages); the error of loading it.
std::string load_error(const TempDir& dir, const std::string& name, const Pickle& p,
                       const std::vector<std::pair<std::string, std::string>>& storages = {}) {
  const fs::path path = dir / name;
  write_bytes(path, checkpoint(path.stem().string(), p, storages).bytes());
  return io_error([&] { load_torch_checkpoint(path); });
}

// --- the fixtures ------------------------------------------------------------------------------

fs::path scorers() {
  return test::fixtures() / "scorers";
}

#define REQUIRE_SCORER_FIXTURES()                                   \
  do {                                                              \
    if (!fs::exists(scorers() / "clip-vit-h-14-tiny"))              \
      GTEST_SKIP() << "scorer fixtures not found at " << scorers(); \
  } while (0)

TEST(TorchCheckpoint, TransformersBinEqualsSafetensors) {
  REQUIRE_SCORER_FIXTURES();
  const auto bin = torch_state_dict(scorers() / "clip-vit-h-14-tiny" / "pytorch_model.bin");
  const auto st = load_safetensors(scorers() / "clip-vit-h-14-tiny" / "model.safetensors");
  std::vector<std::string> extra;
  for (const auto& [name, t] : bin) {
    auto it = st.find(name);
    if (it == st.end()) {
      extra.push_back(name);
      continue;
    }
    EXPECT_EQ(t.scalar_type(), it->second.scalar_type()) << name;
    EXPECT_EQ(t.sizes(), it->second.sizes()) << name;
    EXPECT_TRUE(torch::equal(t, it->second))
        << name << ": max diff " << test::max_abs_diff(t, it->second);
  }
  for (const auto& [name, t] : st)
    EXPECT_TRUE(bin.count(name)) << "missing from the .bin: " << name;
  // The two position_ids buffers older checkpoints carry (README, loader quirk 5).
  ASSERT_EQ(extra, (std::vector<std::string>{"text_model.embeddings.position_ids",
                                             "vision_model.embeddings.position_ids"}));
  const auto& text_ids = bin.at("text_model.embeddings.position_ids");
  const auto& vision_ids = bin.at("vision_model.embeddings.position_ids");
  EXPECT_EQ(text_ids.scalar_type(), torch::kInt64);
  EXPECT_EQ(text_ids.sizes(), (std::vector<int64_t>{1, 77}));
  EXPECT_EQ(vision_ids.sizes(), (std::vector<int64_t>{1, 10}));  // (42 / 14)^2 patches + class
  EXPECT_TRUE(torch::equal(text_ids[0], torch::arange(77)));
  EXPECT_EQ(bin.at("logit_scale").dim(), 0);
}

TEST(TorchCheckpoint, OpenClipKeysMatchTheHuggingFaceWeights) {
  REQUIRE_SCORER_FIXTURES();
  const auto oc =
      torch_state_dict(scorers() / "clip-vit-h-14-tiny" / "open_clip_pytorch_model.bin");
  const auto hf = load_safetensors(scorers() / "clip-vit-h-14-tiny" / "model.safetensors");
  EXPECT_EQ(oc.at("logit_scale").dim(), 0);
  EXPECT_EQ(oc.at("visual.conv1.weight").sizes(), (std::vector<int64_t>{16, 3, 14, 14}));
  EXPECT_EQ(oc.at("visual.proj").sizes(), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(oc.at("text_projection").sizes(), (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(oc.at("positional_embedding").sizes(), (std::vector<int64_t>{77, 4}));
  EXPECT_EQ(oc.at("token_embedding.weight").sizes(), (std::vector<int64_t>{49408, 4}));
  EXPECT_EQ(oc.at("visual.transformer.resblocks.1.attn.in_proj_weight").sizes(),
            (std::vector<int64_t>{48, 16}));
  EXPECT_FALSE(oc.count("attn_mask"));
  // Same numbers under the key mapping of the README.
  EXPECT_TRUE(torch::equal(oc.at("logit_scale"), hf.at("logit_scale")));
  EXPECT_TRUE(torch::equal(oc.at("visual.proj").t(), hf.at("visual_projection.weight")));
  EXPECT_TRUE(torch::equal(oc.at("text_projection").t(), hf.at("text_projection.weight")));
  EXPECT_TRUE(torch::equal(oc.at("visual.conv1.weight"),
                           hf.at("vision_model.embeddings.patch_embedding.weight")));
  const auto& in_proj = oc.at("visual.transformer.resblocks.0.attn.in_proj_weight");
  EXPECT_TRUE(torch::equal(in_proj.slice(0, 16, 32),
                           hf.at("vision_model.encoder.layers.0.self_attn.k_proj.weight")));
  EXPECT_TRUE(torch::equal(oc.at("ln_final.bias"), hf.at("text_model.final_layer_norm.bias")));
}

TEST(TorchCheckpoint, HpsV2StateDictIsNested) {
  REQUIRE_SCORER_FIXTURES();
  const fs::path path = scorers() / "hpsv2-tiny" / "HPS_v2_compressed.pt";
  const CheckpointValue root = load_torch_checkpoint(path);
  ASSERT_TRUE(root.is(CheckpointValue::Kind::Dict));
  ASSERT_EQ(root.entries().size(), 1u);
  ASSERT_NE(root.find("state_dict"), nullptr);
  const auto sd = read_torch_state_dict(path);
  EXPECT_EQ(sd.key, "state_dict");
  EXPECT_TRUE(sd.skipped.empty());
  EXPECT_EQ(sd.tensors.at("logit_scale").dim(), 0);
  EXPECT_EQ(sd.tensors.at("visual.proj").sizes(), (std::vector<int64_t>{16, 8}));
  // Same key set as the laion open_clip file (HPSv2 loads it strictly onto that model).
  const auto laion =
      torch_state_dict(scorers() / "clip-vit-h-14-tiny" / "open_clip_pytorch_model.bin");
  std::vector<std::string> a, b;
  for (const auto& [k, v] : sd.tensors) a.push_back(k);
  for (const auto& [k, v] : laion) b.push_back(k);
  EXPECT_EQ(a, b);
  EXPECT_FALSE(torch::equal(sd.tensors.at("visual.proj"), laion.at("visual.proj")));  // fine-tuned

  const auto w = ComponentWeights::open_file(path);
  EXPECT_EQ(w.state_dict_key(), "state_dict");
  EXPECT_EQ(w.info("visual.proj").dtype, "F32");
  EXPECT_EQ(w.info("visual.proj").shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(w.info("visual.proj").end - w.info("visual.proj").begin, 16u * 8 * 4);
}

TEST(TorchCheckpoint, AestheticHeads) {
  REQUIRE_SCORER_FIXTURES();
  const auto v1 = torch_state_dict(scorers() / "aesthetic-tiny" / "sa_0_4_vit_l_14_linear.pth");
  ASSERT_EQ(v1.size(), 2u);
  EXPECT_EQ(v1.at("weight").sizes(), (std::vector<int64_t>{1, 768}));
  EXPECT_EQ(v1.at("bias").sizes(), (std::vector<int64_t>{1}));
  const auto v2 =
      torch_state_dict(scorers() / "aesthetic-tiny" / "sac+logos+ava1-l14-linearMSE.pth");
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"layers.0.weight", {16, 768}}, {"layers.0.bias", {16}},     {"layers.2.weight", {8, 16}},
      {"layers.2.bias", {8}},         {"layers.4.weight", {8, 8}}, {"layers.4.bias", {8}},
      {"layers.6.weight", {4, 8}},    {"layers.6.bias", {4}},      {"layers.7.weight", {1, 4}},
      {"layers.7.bias", {1}}};
  ASSERT_EQ(v2.size(), shapes.size());
  for (const auto& [name, shape] : shapes) {
    ASSERT_TRUE(v2.count(name)) << name;
    EXPECT_EQ(v2.at(name).sizes(), shape) << name;
    EXPECT_EQ(v2.at(name).scalar_type(), torch::kFloat32) << name;
    EXPECT_TRUE(torch::isfinite(v2.at(name)).all().item<bool>()) << name;
  }
}

TEST(TorchCheckpoint, ImageRewardPlainStateDict) {
  REQUIRE_SCORER_FIXTURES();
  const auto sd = read_torch_state_dict(scorers() / "imagereward-tiny" / "ImageReward.pt");
  EXPECT_EQ(sd.key, "");
  EXPECT_EQ(sd.tensors.at("blip.visual_encoder.cls_token").sizes(),
            (std::vector<int64_t>{1, 1, 16}));
  EXPECT_EQ(sd.tensors.at("blip.visual_encoder.pos_embed").sizes(),
            (std::vector<int64_t>{1, 10, 16}));
  const auto& ids = sd.tensors.at("blip.text_encoder.embeddings.position_ids");
  EXPECT_EQ(ids.scalar_type(), torch::kInt64);
  EXPECT_EQ(ids.sizes(), (std::vector<int64_t>{1, 40}));
  EXPECT_EQ(sd.tensors.at("mlp.layers.0.weight").sizes(), (std::vector<int64_t>{16, 6}));
  for (const auto& [name, t] : sd.tensors)
    EXPECT_TRUE(name.rfind("blip.", 0) == 0 || name.rfind("mlp.", 0) == 0) << name;
}

TEST(TorchCheckpoint, ComponentFolderFallsBackToPytorchModelBin) {
  REQUIRE_SCORER_FIXTURES();
  const fs::path src = scorers() / "clip-vit-h-14-tiny";
  // Both present: safetensors wins.
  const auto both = ComponentWeights::open(src);
  ASSERT_EQ(both.files().size(), 1u);
  EXPECT_EQ(both.files()[0].filename(), "model.safetensors");
  // Only the .bin: read it.
  TempDir dir;
  fs::copy_file(src / "pytorch_model.bin", dir / "pytorch_model.bin");
  const auto w = ComponentWeights::open(dir.path());
  EXPECT_EQ(w.files()[0].filename(), "pytorch_model.bin");
  EXPECT_TRUE(w.contains("text_model.embeddings.position_ids"));
  EXPECT_EQ(w.info("text_model.embeddings.position_ids").dtype, "I64");
  EXPECT_EQ(w.info("logit_scale").shape, std::vector<int64_t>{});
  for (const auto& name : both.names())
    EXPECT_TRUE(torch::equal(w.get(name), both.get(name))) << name;
  // A single explicit file of either kind.
  EXPECT_EQ(ComponentWeights::open_file(src / "model.safetensors").names(), both.names());
  EXPECT_EQ(
      ComponentWeights::open_file(src / "open_clip_pytorch_model.bin").get("visual.proj").size(0),
      16);
}

// --- archives built here -----------------------------------------------------------------------

TEST(TorchCheckpoint, EveryStorageDtype) {
  TempDir dir;
  Pickle p;
  p.proto(2).ordered_dict().mark();
  struct Case {
    std::string storage;
    torch::Dtype dtype;
    torch::Tensor values;
  };
  const std::vector<Case> cases = {
      {"FloatStorage", torch::kFloat32, torch::tensor({1.5f, -2.0f, 3.25f})},
      {"DoubleStorage", torch::kFloat64, torch::tensor({1e300, -0.5, 2.0}, torch::kFloat64)},
      {"HalfStorage", torch::kFloat16, torch::tensor({0.5f, -1.0f, 65504.0f}).to(torch::kFloat16)},
      {"BFloat16Storage", torch::kBFloat16,
       torch::tensor({1.0f, -3.0f, 1e30f}).to(torch::kBFloat16)},
      {"LongStorage", torch::kInt64, torch::tensor({int64_t(1) << 40, int64_t(-7), int64_t(0)})},
      {"IntStorage", torch::kInt32, torch::tensor({1 << 30, -5, 9}, torch::kInt32)},
      {"ShortStorage", torch::kInt16, torch::tensor({-300, 200, 1}, torch::kInt16)},
      {"CharStorage", torch::kInt8, torch::tensor({-128, 127, 0}, torch::kInt8)},
      {"ByteStorage", torch::kUInt8, torch::tensor({255, 0, 7}, torch::kUInt8)},
      {"BoolStorage", torch::kBool, torch::tensor({true, false, true})},
  };
  std::vector<std::pair<std::string, std::string>> storages;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    p.str(c.storage).tensor(c.storage, std::to_string(i), 3, 0, {3}, {1});
    const auto t = c.values.contiguous();
    storages.emplace_back(std::to_string(i), std::string(static_cast<const char*>(t.data_ptr()),
                                                         t.numel() * t.element_size()));
  }
  p.op('u').stop();
  const fs::path path = dir / "dtypes.pt";
  write_bytes(path, checkpoint("dtypes", p, storages).bytes());
  const auto sd = torch_state_dict(path);
  for (const auto& c : cases) {
    const auto& t = sd.at(c.storage);
    EXPECT_EQ(t.scalar_type(), c.dtype) << c.storage;
    EXPECT_TRUE(torch::equal(t, c.values)) << c.storage << ": " << t;
  }
}

TEST(TorchCheckpoint, OffsetsStridesAndSharedStorages) {
  TempDir dir;
  Pickle p;
  p.proto(2).ordered_dict().mark();
  p.str("a").tensor("FloatStorage", "0", 12, 0, {3, 4}, {4, 1}).put(50);
  p.str("a_t").tensor("FloatStorage", "0", 12, 0, {4, 3}, {1, 4});  // a transposed view
  p.str("mid").tensor("FloatStorage", "0", 12, 5, {2}, {1});
  p.str("scalar").tensor("FloatStorage", "0", 12, 7, {}, {});
  p.str("expanded").tensor("FloatStorage", "0", 12, 0, {2, 3}, {0, 1});
  p.str("empty").tensor("FloatStorage", "0", 12, 12, {0, 4}, {4, 1});
  p.str("tied").get(50);  // the same tensor object under a second name
  p.op('u').stop();
  const fs::path path = dir / "views.pt";
  write_bytes(path, checkpoint("views", p, {{"0", floats(12)}}).bytes());
  const auto sd = torch_state_dict(path);
  const auto base = torch::arange(12, torch::kFloat32);
  EXPECT_TRUE(torch::equal(sd.at("a"), base.view({3, 4})));
  EXPECT_TRUE(torch::equal(sd.at("a_t"), base.view({3, 4}).t()));
  EXPECT_TRUE(sd.at("a_t").is_contiguous());
  EXPECT_TRUE(torch::equal(sd.at("mid"), torch::tensor({5.0f, 6.0f})));
  EXPECT_EQ(sd.at("scalar").dim(), 0);
  EXPECT_EQ(sd.at("scalar").item<float>(), 7.0f);
  EXPECT_TRUE(torch::equal(sd.at("expanded"), torch::tensor({0.0f, 1.0f, 2.0f}).expand({2, 3})));
  EXPECT_EQ(sd.at("empty").sizes(), (std::vector<int64_t>{0, 4}));
  // Views of one storage share memory (no copy), as torch.load gives them.
  EXPECT_EQ(static_cast<float*>(sd.at("mid").data_ptr()),
            static_cast<float*>(sd.at("a").data_ptr()) + 5);
  EXPECT_EQ(sd.at("tied").data_ptr(), sd.at("a").data_ptr());

  // What `dro convert` does with them: every tensor written on its own, read back equal.
  NamedTensors named(sd.begin(), sd.end());
  save_safetensors(dir / "views.safetensors", named, {{"format", "pt"}});
  const auto back = load_safetensors(dir / "views.safetensors");
  ASSERT_EQ(back.size(), sd.size());
  for (const auto& [name, t] : sd) EXPECT_TRUE(torch::equal(back.at(name), t)) << name;
  EXPECT_NE(back.at("tied").data_ptr(), back.at("a").data_ptr());
}

TEST(TorchCheckpoint, Torch2LayoutZip64AndUnalignedRecords) {
  TempDir dir;
  Pickle p;
  p.proto(2).ordered_dict().mark().str("w").tensor("HalfStorage", "0", 4, 0, {2, 2}, {2, 1});
  p.op('u').stop();
  const auto halves = torch::tensor({1.0f, 2.0f, -3.0f, 0.25f}).to(torch::kFloat16);
  const std::string bytes(static_cast<const char*>(halves.data_ptr()), 8);
  auto torch2 = [&] {
    Zip z;
    z.add("archive/data.pkl", p.b).add("archive/byteorder", "little");
    z.add("archive/data/0", bytes)
        .add("archive/version", "3\n")
        .add("archive/.data/serialization_id", "1");
    return z;
  };
  for (int variant = 0; variant < 4; ++variant) {
    Zip z = torch2();
    z.zip64 = variant == 1;
    if (variant >= 2) {
      // Unpadded records after a 1- or 2-byte entry: one of the two puts the storage at an odd
      // offset, where the tensor is copied rather than viewed.
      z.align = 1;
      z.entries.insert(z.entries.begin() + 1, {"archive/.data/pad", std::string(variant - 1, 'p')});
    }
    const fs::path path = dir / cat("v", variant, ".pt");
    write_bytes(path, z.bytes());
    const auto sd = torch_state_dict(path);
    EXPECT_TRUE(torch::equal(sd.at("w"), halves.view({2, 2}))) << "variant " << variant;
  }
  Zip big = torch2();
  big.entries[1].data = "big";
  write_bytes(dir / "big.pt", big.bytes());
  const std::string msg = io_error([&] { load_torch_checkpoint(dir / "big.pt"); });
  EXPECT_TRUE(has(msg, "big.pt") && has(msg, "'big'-endian")) << msg;
}

TEST(TorchCheckpoint, RebuildTensorV3AndParameters) {
  TempDir dir;
  Pickle p;
  p.proto(2).op('}').mark();
  // _rebuild_tensor_v3(UntypedStorage, 0, (2,), (1,), False, OrderedDict(), torch.float16)
  p.str("v3").global("torch._utils", "_rebuild_tensor_v3").mark();
  p.mark()
      .str("storage")
      .global("torch", "UntypedStorage")
      .str("0")
      .str("cpu")
      .integer(4)
      .tuple()
      .op('Q');
  p.integer(0)
      .ints({2})
      .ints({1})
      .op('\x89')
      .ordered_dict()
      .global("torch", "float16")
      .tuple()
      .reduce();
  // _rebuild_parameter(tensor, True, OrderedDict())
  p.str("param").global("torch._utils", "_rebuild_parameter").mark();
  p.tensor("FloatStorage", "1", 1, 0, {1}, {1}).op('\x88').ordered_dict().tuple().reduce();
  p.op('u').stop();
  const auto halves = torch::tensor({1.5f, -2.0f}).to(torch::kFloat16);
  const fs::path path = dir / "v3.pt";
  write_bytes(path, checkpoint("v3", p,
                               {{"0", std::string(static_cast<const char*>(halves.data_ptr()), 4)},
                                {"1", floats(1, 9.0f)}})
                        .bytes());
  const auto sd = torch_state_dict(path);
  EXPECT_TRUE(torch::equal(sd.at("v3"), halves));
  EXPECT_EQ(sd.at("param").item<float>(), 9.0f);

  // A dtype this LibTorch cannot hold is refused by name.
  Pickle u;
  u.proto(2).op('}').str("x").global("torch._utils", "_rebuild_tensor_v3").mark();
  u.mark()
      .str("storage")
      .global("torch", "UntypedStorage")
      .str("0")
      .str("cpu")
      .integer(4)
      .tuple()
      .op('Q');
  u.integer(0)
      .ints({2})
      .ints({1})
      .op('\x89')
      .ordered_dict()
      .global("torch", "uint16")
      .tuple()
      .reduce();
  u.op('s').stop();
  const std::string msg = load_error(dir, "u16.pt", u, {{"0", "abcd"}});
  EXPECT_TRUE(has(msg, "u16.pt") && has(msg, "torch.uint16")) << msg;
}

TEST(TorchCheckpoint, FindsTheStateDict) {
  TempDir dir;
  auto write = [&](const std::string& name, Pickle& p) {
    write_bytes(dir / name,
                checkpoint(fs::path(name).stem().string(), p, {{"0", floats(2)}}).bytes());
    return dir / name;
  };
  // {'epoch': 3, 'optimizer': {}, 'model': OrderedDict(w=..., _metadata-like int)} with torch's
  // BUILD of the _metadata attribute.
  Pickle p;
  p.proto(2).op('}').mark().str("epoch").integer(3).str("optimizer").op('}');
  p.str("model").ordered_dict().mark().str("w").tensor("FloatStorage", "0", 2, 0, {2}, {1});
  p.str("n_averaged").integer(5).op('u');
  p.op('}')
      .str("_metadata")
      .ordered_dict()
      .str("")
      .op('}')
      .str("version")
      .integer(1)
      .op('s')
      .op('s')
      .op('s')
      .op('b');
  p.op('u').stop();
  const auto path = write("nested.pth", p);
  const auto sd = read_torch_state_dict(path);
  EXPECT_EQ(sd.key, "model");
  EXPECT_EQ(sd.tensors.size(), 1u);
  EXPECT_EQ(sd.skipped, std::vector<std::string>{"n_averaged"});
  EXPECT_EQ(read_torch_state_dict(path, "model").tensors.size(), 1u);
  std::string msg = io_error([&] { read_torch_state_dict(path, "optimizer"); });
  EXPECT_TRUE(has(msg, "nested.pth") && has(msg, "'optimizer'")) << msg;
  msg = io_error([&] { read_torch_state_dict(path, "ema"); });
  EXPECT_TRUE(has(msg, "'epoch'") && has(msg, "'model'")) << msg;
  const auto w = ComponentWeights::open_file(path, "model");
  EXPECT_EQ(w.state_dict_key(), "model");
  EXPECT_EQ(w.skipped(), std::vector<std::string>{"n_averaged"});
  EXPECT_THROW(ComponentWeights::open_file(dir / "absent.pt"), IoError);

  // No tensors anywhere: the error lists the top-level keys.
  Pickle q;
  q.proto(2).op('}').mark().str("epoch").integer(3).str("args").op('}').op('u').stop();
  msg = io_error([&] { read_torch_state_dict(write("nothing.pt", q)); });
  EXPECT_TRUE(has(msg, "nothing.pt") && has(msg, "'epoch' (int)") && has(msg, "'args' (dict)"))
      << msg;
}

TEST(TorchCheckpoint, ShardedPytorchFolder) {
  TempDir dir;
  auto shard = [&](const std::string& name, const std::string& key, float start) {
    Pickle p;
    p.proto(2)
        .ordered_dict()
        .mark()
        .str(key)
        .tensor("FloatStorage", "0", 3, 0, {3}, {1})
        .op('u')
        .stop();
    write_bytes(dir / name,
                checkpoint(fs::path(name).stem().string(), p, {{"0", floats(3, start)}}).bytes());
  };
  shard("pytorch_model-00001-of-00002.bin", "a", 0.0f);
  shard("pytorch_model-00002-of-00002.bin", "b", 10.0f);
  write_json(dir / "pytorch_model.bin.index.json",
             OrderedJson{{"metadata", {{"total_size", 24}}},
                         {"weight_map",
                          {{"a", "pytorch_model-00001-of-00002.bin"},
                           {"b", "pytorch_model-00002-of-00002.bin"}}}});
  const auto w = ComponentWeights::open(dir.path());
  EXPECT_EQ(w.files().size(), 2u);
  EXPECT_EQ(w.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(w.get("b")[2].item<float>(), 12.0f);
  EXPECT_EQ(w.info("a").dtype, "F32");
  EXPECT_EQ(ComponentWeights::open_file(dir / "pytorch_model.bin.index.json").names(), w.names());
  // A diffusers-named single file in a folder of its own.
  TempDir unet;
  Pickle p;
  p.proto(2)
      .ordered_dict()
      .mark()
      .str("conv_in.weight")
      .tensor("HalfStorage", "0", 2, 0, {2}, {1})
      .op('u')
      .stop();
  write_bytes(unet / "diffusion_pytorch_model.bin",
              checkpoint("diffusion_pytorch_model", p, {{"0", std::string("\x00\x3c\x00\xc0", 4)}})
                  .bytes());
  const auto u = ComponentWeights::open(unet.path());
  EXPECT_TRUE(
      torch::equal(u.get("conv_in.weight"), torch::tensor({1.0f, -2.0f}).to(torch::kFloat16)));
}

TEST(TorchCheckpoint, PlainValuesOfEveryProtocol) {
  // Protocol 4: FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE, as Python writes it.
  Pickle p;
  p.proto(4).raw("\x95").raw(std::string(8, '\0'));  // an (advisory) frame length
  p.raw(
       "\x8c\x0b"
       "collections")
      .op('\x94')
      .raw(
          "\x8c\x0b"
          "OrderedDict")
      .op('\x94')
      .op('\x93')
      .op(')')
      .reduce();
  p.op('\x94').mark();
  p.raw(
       "\x8c\x01"
       "i")
      .raw("J")
      .raw(std::string("\xfe\xff\xff\xff", 4));  // BININT -2
  p.raw(
       "\x8c\x01"
       "l")
      .raw("\x8a\x08")
      .raw(std::string("\x00\x00\x00\x00\x00\x00\x00\x80", 8));  // LONG1 -2^63
  p.raw(
       "\x8c\x01"
       "L")
      .raw("\x8a\x0a")
      .raw(std::string("\xfe\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10));  // -2, sign-extended
  p.raw(
       "\x8c\x01"
       "t")
      .raw("I123456789012\n");
  p.raw(
       "\x8c\x01"
       "f")
      .raw("G")
      .raw(std::string("\x3f\xf8\x00\x00\x00\x00\x00\x00", 8));  // 1.5
  p.raw(
       "\x8c\x01"
       "g")
      .raw("F-0.25\n");
  p.raw(
       "\x8c\x01"
       "b")
      .raw(
          "C\x03"
          "abc");
  p.raw(
       "\x8c\x01"
       "e")
      .global("_codecs", "encode")
      .str(
          "\xc3\xbf"
          "A")
      .str("latin1")
      .raw("\x86")
      .reduce();
  p.raw(
       "\x8c\x01"
       "z")
      .global("__builtin__", "bytes")
      .op(')')
      .reduce();
  p.raw(
       "\x8c\x01"
       "s")
      .global("__builtin__", "set")
      .op(']')
      .mark()
      .integer(1)
      .integer(2)
      .op('e')
      .raw("\x85")
      .reduce();
  p.raw(
       "\x8c\x01"
       "n")
      .op('N')
      .raw(
          "\x8c\x01"
          "T")
      .op('\x88');
  p.raw(
       "\x8c\x01"
       "u")
      .raw("V\\u00e9t\\u00e9\n");
  p.raw(
       "\x8c\x01"
       "d")
      .op('}')
      .integer(7)
      .str("seven")
      .op('s');
  p.raw(
       "\x8c\x01"
       "x")
      .mark()
      .integer(1)
      .op(']')
      .integer(2)
      .op('a')
      .tuple();
  p.raw(
       "\x8c\x01"
       "S")
      .global("torch", "Size")
      .mark()
      .integer(3)
      .integer(4)
      .tuple()
      .raw("\x85")
      .reduce();
  p.op('u').stop();
  const CheckpointValue v = unpickle_restricted(p.b, "values.pkl");
  using K = CheckpointValue::Kind;
  ASSERT_TRUE(v.is(K::Dict));
  EXPECT_EQ(v.find("i")->as_int(), -2);
  EXPECT_EQ(v.find("l")->as_int(), INT64_MIN);
  EXPECT_EQ(v.find("L")->as_int(), -2);
  EXPECT_EQ(v.find("t")->as_int(), 123456789012);
  EXPECT_EQ(v.find("f")->as_float(), 1.5);
  EXPECT_EQ(v.find("g")->as_float(), -0.25);
  EXPECT_TRUE(v.find("b")->is(K::Bytes));
  EXPECT_EQ(v.find("b")->as_string(), "abc");
  EXPECT_EQ(v.find("e")->as_string(),
            "\xff"
            "A");
  EXPECT_EQ(v.find("z")->as_string(), "");
  ASSERT_TRUE(v.find("s")->is(K::List));
  EXPECT_EQ(v.find("s")->items().size(), 2u);
  EXPECT_TRUE(v.find("n")->is(K::None));
  EXPECT_TRUE(v.find("T")->as_bool());
  EXPECT_EQ(v.find("u")->as_string(), "\xc3\xa9t\xc3\xa9");
  ASSERT_EQ(v.find("d")->entries().size(), 1u);
  EXPECT_EQ(std::get<int64_t>(v.find("d")->entries()[0].first), 7);
  const auto& x = v.find("x")->items();
  ASSERT_EQ(x.size(), 2u);
  EXPECT_EQ(x[1].items()[0].as_int(), 2);
  EXPECT_EQ(v.find("S")->items()[1].as_int(), 4);
  EXPECT_EQ(v.find("missing"), nullptr);
}

// --- hostile and broken files ------------------------------------------------------------------

TEST(TorchCheckpoint, RefusesCodeGlobalsByName) {
  TempDir dir;
  // The classic: os.system('echo pwned') through GLOBAL + REDUCE.
  Pickle sys;
  sys.proto(2).global("os", "system").str("echo pwned").raw("\x85").reduce().stop();
  std::string msg = load_error(dir, "evil.pt", sys);
  EXPECT_TRUE(has(msg, "evil.pt") && has(msg, "refuses to load global 'os.system'") &&
              has(msg, "nothing in the file is executed"))
      << msg;

  Pickle eval;  // protocol 4 spelling
  eval.proto(4)
      .raw(
          "\x8c\x08"
          "builtins")
      .raw(
          "\x8c\x04"
          "eval")
      .op('\x93')
      .str("1+1")
      .raw("\x85")
      .reduce()
      .stop();
  msg = load_error(dir, "eval.pt", eval);
  EXPECT_TRUE(has(msg, "eval.pt") && has(msg, "'builtins.eval'")) << msg;

  Pickle getattr;
  getattr.proto(2).global("__builtin__", "getattr").stop();  // refused even when never called
  msg = load_error(dir, "getattr.bin", getattr);
  EXPECT_TRUE(has(msg, "getattr.bin") && has(msg, "'__builtin__.getattr'")) << msg;

  Pickle inst;  // INST instantiates directly
  inst.proto(0).mark().str("x").raw("ios\nsystem\n").stop();
  msg = load_error(dir, "inst.pt", inst);
  EXPECT_TRUE(has(msg, "'os.system'")) << msg;

  Pickle torch_load;  // a torch function outside the allow-list
  torch_load.proto(2).global("torch", "load").stop();
  msg = load_error(dir, "tl.pt", torch_load);
  EXPECT_TRUE(has(msg, "'torch.load'")) << msg;

  Pickle codec;
  codec.proto(2).global("_codecs", "encode").str("x").str("rot13").raw("\x86").reduce().stop();
  msg = load_error(dir, "codec.pt", codec);
  EXPECT_TRUE(has(msg, "codec.pt") && has(msg, "latin1")) << msg;

  Pickle storage_call;  // an allowed class called outside a persistent id
  storage_call.proto(2).global("torch", "FloatStorage").op(')').reduce().stop();
  msg = load_error(dir, "sc.pt", storage_call);
  EXPECT_TRUE(has(msg, "not callable")) << msg;
}

TEST(TorchCheckpoint, RefusesTensorsOutsideTheirStorage) {
  TempDir dir;
  auto one = [&](const std::string& name, int64_t numel, int64_t offset, std::vector<int64_t> size,
                 std::vector<int64_t> stride, const std::string& bytes) {
    Pickle p;
    p.proto(2)
        .op('}')
        .str("w")
        .tensor("FloatStorage", "0", numel, offset, size, stride)
        .op('s')
        .stop();
    return load_error(dir, name, p, {{"0", bytes}});
  };
  std::string msg = one("range.pt", 4, 2, {3}, {1}, floats(4));
  EXPECT_TRUE(has(msg, "range.pt") && has(msg, "reaches element 4") && has(msg, "4 elements"))
      << msg;
  msg = one("stride.pt", 4, 0, {2, 2}, {4, 1}, floats(4));
  EXPECT_TRUE(has(msg, "reaches element 5")) << msg;
  msg = one("negative.pt", 4, 0, {2}, {-1}, floats(4));
  EXPECT_TRUE(has(msg, "negative stride")) << msg;
  msg = one("dims.pt", 4, 0, {2, 2}, {1}, floats(4));
  EXPECT_TRUE(has(msg, "different lengths")) << msg;
  msg = one("short.pt", 100, 0, {4}, {1}, floats(4));  // the record holds 4 of the 100 floats
  EXPECT_TRUE(has(msg, "short.pt") && has(msg, "holds 16 bytes")) << msg;
  msg = one("overflow.pt", 4, 0, {int64_t(1) << 40, int64_t(1) << 40}, {1, 1}, floats(4));
  EXPECT_TRUE(has(msg, "overflow") || has(msg, "reaches")) << msg;
  // A broadcast view far larger than the file: refused instead of materialised.
  msg = one("bomb.pt", 1, 0, {int64_t(1) << 20, int64_t(1) << 20}, {0, 0}, floats(1));
  EXPECT_TRUE(has(msg, "bomb.pt") && has(msg, "beyond what a file of this size can need")) << msg;

  Pickle missing;
  missing.proto(2).op('}').str("w").tensor("FloatStorage", "7", 1, 0, {1}, {1}).op('s').stop();
  msg = load_error(dir, "missing.pt", missing, {{"0", floats(1)}});
  EXPECT_TRUE(has(msg, "missing.pt") && has(msg, "storage '7'") && has(msg, "missing")) << msg;

  Pickle persid;  // a persistent id that is not a storage
  persid.proto(2).str("weird").op('Q').stop();
  msg = load_error(dir, "pid.pt", persid);
  EXPECT_TRUE(has(msg, "persistent id")) << msg;
}

TEST(TorchCheckpoint, MalformedPicklesGiveErrorsNotCrashes) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x80\x02R."s, "stack underflow"},
      {"\x80\x02(K\x01R."s, "stack underflow"},  // the MARK hides what lies below it
      {"\x80\x02\xff"s, "unknown opcode 0xff"},
      {"\x80\x02h\x05."s, "memo has no entry 5"},
      {"\x80\x02K\x01"s, "without STOP"},
      {"\x80\x02X\x10\x00\x00\x00"
       "abc"s,
       "runs past the end"},
      {"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"s, "runs past the end"},
      {"\x80\x02\x8b\xff\xff\xff\x7f"s, "runs past the end"},
      {"\x80\x02\x8a\x09"
       "123456789."s,
       "does not fit in 64 bits"},
      {"\x80\x02."s, "stack underflow"},
      {"\x80\x02}K\x01s."s, "stack underflow"},
      {"\x80\x02]K\x01K\x02s."s, "needs a dict"},
      {"\x80\x02(K\x01"
       "d."s,
       "odd number"},
      {"\x80\x02}(]K\x01u."s, "dict key of type list"},
      {"\x80\x02]q\x00h\x00"
       "a."s,
       "holds itself"},
      {"\x80\x02]q\x00h\x00\x85K\x01h\x00K\x02"
       "a."s,
       "already placed"},  // fills a list already inside a tuple
      {"\x80\x09."s, "protocol 9"},
      {"\x80\x02\x82\x01."s, "extension registry"},
      {"\x80\x02K\x01"
       "b."s,
       "stack underflow"},
      {"\x80\x02]Nb."s, "BUILD"},
      {"\x80\x02"
       "ccollections\nOrderedDict\n(K\x01t\x81."s,
       "list of pairs"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [bytes, expected] = cases[i];
    Pickle p;
    p.raw(bytes);
    const std::string name = cat("bad", i, ".pt");
    const std::string msg = load_error(dir, name, p);
    EXPECT_TRUE(has(msg, name)) << i << ": " << msg;
    EXPECT_TRUE(has(msg, expected)) << i << ": expected '" << expected << "' in: " << msg;
  }
  EXPECT_TRUE(has(io_error([] {
                    unpickle_restricted(
                        "\x80\x02]q\x00h\x00\x85K\x01h\x00K\x02"
                        "a."s,
                        "x");
                  }),
                  "already placed in another container"));
}

TEST(TorchCheckpoint, NestingBombsAreRefused) {
  // A chain built through the memo: each list wraps the previous one.
  Pickle memo_chain;
  memo_chain.proto(2).op(']').put(0);
  for (int i = 0; i < 100000; ++i) memo_chain.mark().get(0).op('l').put(0);
  memo_chain.stop();
  std::string msg = io_error([&] { unpickle_restricted(memo_chain.b, "chain.pkl"); });
  EXPECT_TRUE(has(msg, "chain.pkl") && has(msg, "nested deeper than")) << msg;
  // A million MARKs closed one by one.
  Pickle marks;
  marks.proto(2).raw(std::string(1000000, '(')).raw(std::string(1000000, 'l')).stop();
  msg = io_error([&] { unpickle_restricted(marks.b, "marks.pkl"); });
  EXPECT_TRUE(has(msg, "nested deeper than")) << msg;
  // Tuples too, and dicts of dicts.
  Pickle tuples;
  tuples.proto(2).op(')');
  for (int i = 0; i < 5000; ++i) tuples.raw("\x85");
  tuples.stop();
  EXPECT_TRUE(has(io_error([&] { unpickle_restricted(tuples.b, "t"); }), "nested deeper than"));
  // Within the limit is fine.
  Pickle fine;
  fine.proto(2).op(')');
  for (int i = 0; i < kMaxCheckpointDepth - 1; ++i) fine.raw("\x85");
  fine.stop();
  EXPECT_TRUE(unpickle_restricted(fine.b, "ok").is(CheckpointValue::Kind::Tuple));
}

TEST(TorchCheckpoint, BrokenArchives) {
  TempDir dir;
  Pickle p;
  p.proto(2)
      .ordered_dict()
      .mark()
      .str("w")
      .tensor("FloatStorage", "0", 256, 0, {256}, {1})
      .op('u')
      .stop();
  const std::string good = checkpoint("model", p, {{"0", floats(256)}}).bytes();
  write_bytes(dir / "good.pt", good);
  ASSERT_EQ(torch_state_dict(dir / "good.pt").at("w").size(0), 256);

  // Cut short anywhere: an IoError that suggests a truncated download, never a crash.
  for (size_t cut :
       {good.size() - 1, good.size() - 30, good.size() / 2, size_t(100), size_t(10), size_t(0)}) {
    const fs::path path = dir / cat("cut", cut, ".pt");
    write_bytes(path, good.substr(0, cut));
    const std::string msg = io_error([&] { load_torch_checkpoint(path); });
    EXPECT_TRUE(has(msg, path.filename().string())) << msg;
    EXPECT_TRUE(has(msg, "truncated")) << cut << ": " << msg;
  }
  // Every single-byte corruption of the directory area gives an error or a correct result.
  for (size_t at = good.size() - 120; at < good.size(); ++at) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    write_bytes(dir / "flip.pt", bad);
    try {
      const auto sd = torch_state_dict(dir / "flip.pt");
      EXPECT_EQ(sd.at("w").size(0), 256);
    } catch (const IoError&) {
    }
  }

  Zip compressed = checkpoint("model", p, {{"0", floats(256)}});
  compressed.entries[1].method = 8;
  write_bytes(dir / "deflate.pt", compressed.bytes());
  std::string msg = io_error([&] { load_torch_checkpoint(dir / "deflate.pt"); });
  EXPECT_TRUE(has(msg, "deflate.pt") && has(msg, "model/data/0") && has(msg, "compressed")) << msg;

  std::string crc = good;
  crc[crc.find("storage")] = 'S';  // inside data.pkl
  write_bytes(dir / "crc.pt", crc);
  EXPECT_TRUE(has(io_error([&] { load_torch_checkpoint(dir / "crc.pt"); }), "CRC"));

  // The legacy format is a bare pickle stream starting with the protocol opcode.
  write_bytes(dir / "legacy.pt",
              std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
  msg = io_error([&] { load_torch_checkpoint(dir / "legacy.pt"); });
  EXPECT_TRUE(has(msg, "legacy.pt") && has(msg, "legacy PyTorch format") && has(msg, "re-save"))
      << msg;

  Zip script;
  script.add("m/data.pkl", p.b)
      .add("m/constants.pkl", "\x80\x02).")
      .add("m/code/__torch__/m.py", "");
  write_bytes(dir / "script.pt", script.bytes());
  EXPECT_TRUE(has(io_error([&] { load_torch_checkpoint(dir / "script.pt"); }), "TorchScript"));

  Zip other;
  other.add("readme.txt", "hello");
  write_bytes(dir / "other.zip", other.bytes());
  EXPECT_TRUE(has(io_error([&] { load_torch_checkpoint(dir / "other.zip"); }), "data.pkl"));

  write_bytes(dir / "text.bin", "this is not a checkpoint at all");
  msg = io_error([&] { load_torch_checkpoint(dir / "text.bin"); });
  EXPECT_TRUE(has(msg, "text.bin") && has(msg, "not a PyTorch checkpoint")) << msg;

  EXPECT_TRUE(has(io_error([&] { load_torch_checkpoint(dir / "absent.pt"); }), "cannot open"));
}

}  // namespace
}  // namespace dro::io
