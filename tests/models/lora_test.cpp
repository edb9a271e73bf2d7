// LoRA on the tiny UNets: zero-initialised adapters change nothing, a merged adapter computes what
// the on-the-fly one does, the adapter slots are per thread, both file layouts round-trip with
// the key names diffusers and kohya write, and bad targets or files are refused by name.
#include <fstream>
#include <thread>

#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dro/io/safetensors.h"
#include "dro/models/lora_file.h"
#include "dro/models/unet.h"
#include "test_util.h"

namespace dro::models {
namespace {
namespace fs = std::filesystem;

UNet2DConditionModel tiny_unet(const std::string& name) {
  auto u = load_unet(test::fixtures() / name / "unet");
  u->eval();
  return u;
}

// A fixed batch of UNet inputs for `u` (SDXL's added conditions when it takes them).
struct Inputs {
  torch::Tensor x, t, c, te, ids;
};
Inputs inputs_for(UNet2DConditionModel& u, uint64_t seed = 3) {
  auto gen = make_generator(seed);
  const auto& cfg = u->config();
  Inputs in;
  in.x = torch::randn({2, cfg.in_channels, 16, 16}, gen);
  in.t = torch::tensor({10, 700}, torch::kLong);
  in.c = torch::randn({2, 5, cfg.cross_attention_dim[0]}, gen);
  if (u->needs_added_conditions()) {
    in.te = torch::randn(
        {2, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim}, gen);
    in.ids = torch::tensor({32., 32., 0., 0., 32., 32.}).repeat({2, 1});
  }
  return in;
}

torch::Tensor run(UNet2DConditionModel& u, const Inputs& in) {
  torch::NoGradGuard no_grad;
  return u->forward(in.x, in.t, in.c, in.te, in.ids);
}

// Every kind of layer: attention projections, feed-forward, 1x1/linear projections, 3x3 convs,
// the time embedding's projections.
LoraOptions wide_options(int64_t rank = 2, double alpha = 3) {
  LoraOptions o;
  o.rank = rank;
  o.alpha = alpha;
  o.targets = {"to_q",     "to_k",  "to_v",  "to_out.0",      "ff.net.*",           "proj_in",
               "proj_out", "conv1", "conv2", "time_emb_proj", "downsamplers.0.conv"};
  return o;
}

// Random values for every up (lora_B), so the adapters act.
void randomise_up(UnetLora& lora, uint64_t seed) {
  auto gen = make_generator(seed);
  torch::NoGradGuard no_grad;
  for (size_t i = 1; i < lora.parameters().size(); i += 2) {
    auto p = lora.parameters()[i];
    p.copy_(torch::randn(p.sizes(), gen) * 0.3);
  }
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(Lora, ZeroUpLeavesTheOutputUnchanged) {
  DRO_REQUIRE_FIXTURES();
  for (const char* name : {"tiny-sd15", "tiny-sdxl"}) {
    auto u = tiny_unet(name);
    const auto in = inputs_for(u);
    const auto base = run(u, in);
    UnetLora lora(*u, wide_options(), torch::kFloat32, torch::kCPU, 1);
    EXPECT_GT(lora.layer_count(), 20u) << name;
    // peft's initialisation: down drawn, up zero.
    EXPECT_GT(lora.parameters()[0].abs().sum().item<double>(), 0.0);
    EXPECT_EQ(lora.parameters()[1].abs().sum().item<double>(), 0.0);
    EXPECT_TRUE(torch::equal(run(u, in), base)) << name;
  }
}

TEST(Lora, InitialisationIsPeftsKaimingUniform) {
  DRO_REQUIRE_FIXTURES();
  auto u = tiny_unet("tiny-sd15");
  LoraOptions o;
  o.rank = 4;
  UnetLora lora(*u, o, torch::kFloat32, torch::kCPU, 7);
  for (size_t i = 0; i < lora.parameters().size(); i += 2) {
    const auto& down = lora.parameters()[i];
    const double bound = 1.0 / std::sqrt(static_cast<double>(down.size(1)));
    EXPECT_LE(down.abs().max().item<double>(), bound) << lora.names()[i];
    EXPECT_GT(down.abs().max().item<double>(), 0.5 * bound) << lora.names()[i];
  }
  // The same seed draws the same adapters.
  auto u2 = tiny_unet("tiny-sd15");
  UnetLora again(*u2, o, torch::kFloat32, torch::kCPU, 7);
  EXPECT_TRUE(torch::equal(lora.parameters()[0], again.parameters()[0]));
}

TEST(Lora, MergedWeightsComputeWhatTheAdaptersDo) {
  DRO_REQUIRE_FIXTURES();
  for (const char* name : {"tiny-sd15", "tiny-sdxl"}) {
    auto u = tiny_unet(name);
    const auto in = inputs_for(u);
    const auto base = run(u, in);
    torch::Tensor on_the_fly;
    LoraLayers layers;
    {
      UnetLora lora(*u, wide_options(), torch::kFloat32, torch::kCPU, 1);
      randomise_up(lora, 2);
      on_the_fly = run(u, in);
      {
        nn::LoraScope off(nn::LoraSlot::kOff);  // the frozen reference: the base exactly
        EXPECT_TRUE(torch::equal(run(u, in), base)) << name;
      }
      layers = lora.layers(lora.parameters());
    }
    EXPECT_TRUE(torch::equal(run(u, in), base)) << name << ": the destructor detaches the adapters";
    EXPECT_GT(max_diff(on_the_fly, base), 1e-2) << name;
    auto merged = tiny_unet(name);
    merge_lora(*merged, layers, 1.0);
    const double d = max_diff(run(merged, in), on_the_fly);
    std::cout << "[ lora     ] " << name << ": merged vs on the fly, max |diff| " << d
              << " (outputs differ from the "
              << "base by " << max_diff(on_the_fly, base) << ")\n";
    EXPECT_LT(d, 1e-4) << name;
  }
}

TEST(Lora, SlotsArePerThread) {
  DRO_REQUIRE_FIXTURES();
  auto u = tiny_unet("tiny-sd15");
  const auto in = inputs_for(u);
  const auto base = run(u, in);
  UnetLora lora(*u, wide_options(), torch::kFloat32, torch::kCPU, 1);
  lora.add_policy_slot();  // a copy of the zero-up adapters
  randomise_up(lora, 2);
  const auto trained = run(u, in);
  torch::Tensor policy, off;
  std::thread other([&] {
    {
      nn::LoraScope s(nn::LoraSlot::kPolicy);
      policy = run(u, in);
    }
    nn::LoraScope s(nn::LoraSlot::kOff);
    off = run(u, in);
  });
  other.join();
  EXPECT_TRUE(torch::equal(policy, base));  // the policy copy still has up = 0
  EXPECT_TRUE(torch::equal(off, base));
  lora.copy_to_policy();
  nn::LoraScope s(nn::LoraSlot::kPolicy);
  EXPECT_TRUE(torch::equal(run(u, in), trained));
}

TEST(Lora, LdmNamesOfTheSdLayouts) {
  DRO_REQUIRE_FIXTURES();
  // tiny-sd15 has SD1.5's block layout (three cross-attention down blocks, then a plain one).
  const auto sd = UNetConfig::load(test::fixtures() / "tiny-sd15" / "unet");
  const std::pair<const char*, const char*> kSd[] = {
      {"conv_in", "input_blocks.0.0"},
      {"time_embedding.linear_1", "time_embed.0"},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
       "input_blocks.1.1.transformer_blocks.0.attn1.to_q"},
      {"down_blocks.0.resnets.1.conv1", "input_blocks.2.0.in_layers.2"},
      {"down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"},
      {"down_blocks.1.attentions.1.proj_in", "input_blocks.5.1.proj_in"},
      {"down_blocks.3.resnets.1.time_emb_proj", "input_blocks.11.0.emb_layers.1"},
      {"mid_block.attentions.0.transformer_blocks.0.ff.net.2",
       "middle_block.1.transformer_blocks.0.ff.net.2"},
      {"mid_block.resnets.1.conv2", "middle_block.2.out_layers.3"},
      {"up_blocks.0.resnets.2.conv_shortcut", "output_blocks.2.0.skip_connection"},
      {"up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv"},
      {"up_blocks.1.upsamplers.0.conv", "output_blocks.5.2.conv"},
      {"up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0",
       "output_blocks.11.1.transformer_blocks.0.attn2.to_out.0"},
      {"conv_out", "out.2"},
  };
  for (const auto& [d, l] : kSd) EXPECT_EQ(ldm_module_name(d, sd), l) << d;
  // tiny-sdxl has SDXL's (a plain down block first, cross-attention up blocks first).
  const auto xl = UNetConfig::load(test::fixtures() / "tiny-sdxl" / "unet");
  const std::pair<const char*, const char*> kXl[] = {
      {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k",
       "input_blocks.4.1.transformer_blocks.0.attn1.to_k"},
      {"down_blocks.2.attentions.1.transformer_blocks.1.attn2.to_v",
       "input_blocks.8.1.transformer_blocks.1.attn2.to_v"},
      {"up_blocks.0.attentions.2.proj_out", "output_blocks.2.1.proj_out"},
      {"up_blocks.0.upsamplers.0.conv", "output_blocks.2.2.conv"},
      {"up_blocks.2.resnets.0.conv1", "output_blocks.6.0.in_layers.2"},
      {"add_embedding.linear_2", "label_emb.0.2"},
  };
  for (const auto& [d, l] : kXl) EXPECT_EQ(ldm_module_name(d, xl), l) << d;
  EXPECT_EQ(ldm_module_name("down_blocks.9.attentions.0.proj_in", xl), "");
  EXPECT_EQ(ldm_module_name("mid_block.norm", xl), "");
}

TEST(Lora, FilesRoundTripInBothLayoutsWithTheirKeyNames) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  for (const char* name : {"tiny-sd15", "tiny-sdxl"}) {
    auto u = tiny_unet(name);
    UnetLora lora(*u, wide_options(2, 3), torch::kFloat32, torch::kCPU, 1);
    randomise_up(lora, 2);
    const auto layers = lora.layers(lora.parameters());
    const fs::path diffusers = tmp / cat(name, "-diffusers.safetensors"),
                   kohya = tmp / cat(name, "-kohya.safetensors");
    save_lora_diffusers(diffusers, layers, torch::kFloat32);
    save_lora_kohya(kohya, layers, u->config(), torch::kFloat32);
    const bool xl = std::string(name) == "tiny-sdxl";
    // The keys the ecosystem's writers use.
    auto d = io::SafetensorsFile::open(diffusers);
    const std::string q = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q";
    EXPECT_TRUE(d->contains("unet." + q + ".lora.down.weight"));
    EXPECT_TRUE(d->contains("unet." + q + ".lora.up.weight"));
    EXPECT_TRUE(
        d->contains("unet.down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.lora_A.weight"));
    EXPECT_TRUE(d->contains("unet.down_blocks.1.resnets.0.conv1.lora_B.weight"));
    EXPECT_EQ(d->info("unet.down_blocks.1.resnets.0.conv1.lora_A.weight").shape.size(), 4u);
    EXPECT_EQ(d->tensors().size(), 2 * layers.size());  // no alpha: folded into lora_B
    auto k = io::SafetensorsFile::open(kohya);
    const std::string kq =
        xl ? "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
           : "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q";
    for (const char* s : {".lora_down.weight", ".lora_up.weight", ".alpha"})
      EXPECT_TRUE(k->contains(kq + s)) << kq + s;
    EXPECT_EQ(k->get(kq + ".alpha").item<double>(), 3.0);
    EXPECT_EQ(k->tensors().size(), 3 * layers.size());
    // Both read back to the same update (alpha / r) * up @ down for every layer.
    for (const auto& file : {diffusers, kohya}) {
      const auto back = load_lora_file(file, *u);
      ASSERT_EQ(back.size(), layers.size()) << file;
      for (const auto& [n, l] : layers) {
        const auto& b = back.at(n);
        const auto want = torch::mm(l.up.flatten(1), l.down.flatten(1)) * l.scale();
        const auto got = torch::mm(b.up.flatten(1), b.down.flatten(1)) * b.scale();
        EXPECT_LT(max_diff(want, got), 1e-6) << file.filename() << ": " << n;
      }
    }
  }
}

// Files written by hand in the other spellings: kohya with diffusers names on SDXL, the older
// diffusers attention-processor keys, peft's lora_A without a prefix, text-encoder keys.
TEST(Lora, ReadsTheOtherSpellings) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  auto u = tiny_unet("tiny-sdxl");
  const std::string m = "down_blocks.1.attentions.0.transformer_blocks.0.attn1";
  const auto w = u->named_parameters()[m + ".to_q.weight"];  // [out, in]
  auto gen = make_generator(5);
  const auto down = torch::randn({2, w.size(1)}, gen), up = torch::randn({w.size(0), 2}, gen);
  const fs::path f1 = tmp / "kohya-diffusers-names.safetensors", f2 = tmp / "old.safetensors",
                 f3 = tmp / "peft.safetensors";
  const std::string kk =
      "lora_unet_" + std::string("down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q");
  io::save_safetensors(
      f1, {{kk + ".lora_down.weight", down},
           {kk + ".lora_up.weight", up},
           {kk + ".alpha", torch::tensor(1.0)},
           {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", down}});
  io::save_safetensors(f2, {{"unet." + m + ".processor.to_q_lora.down.weight", down},
                            {"unet." + m + ".processor.to_q_lora.up.weight", up}});
  io::save_safetensors(f3, {{m + ".to_q.lora_A.weight", down}, {m + ".to_q.lora_B.weight", up}});
  for (const auto& f : {f1, f2, f3}) {
    const auto l = load_lora_file(f, *u);
    ASSERT_EQ(l.size(), 1u) << f;
    const auto& a = l.at(m + ".to_q");
    EXPECT_TRUE(torch::equal(a.down, down)) << f;
    EXPECT_TRUE(torch::equal(a.up, up)) << f;
    EXPECT_DOUBLE_EQ(a.scale(), f == f1 ? 0.5 : 1.0) << f;
  }
}

TEST(Lora, BadTargetsAndFilesAreNamed) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  auto u = tiny_unet("tiny-sd15");
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  LoraOptions o;
  o.rank = 2;
  o.targets = {"to_q", "attn9.to_qq"};
  expect_error([&] { UnetLora l(*u, o, torch::kFloat32, torch::kCPU, 1); }, "attn9.to_qq");
  o.targets = {"to_q"};
  o.rank = 9;  // the tiny model's attention projections are 8 x 8
  expect_error([&] { UnetLora l(*u, o, torch::kFloat32, torch::kCPU, 1); }, "larger than layer");
  // A LoRA of the SDXL-layout model does not fit the SD1.5-layout one: its keys name other layers
  // or shapes.
  auto xl = tiny_unet("tiny-sdxl");
  LoraOptions xo;
  xo.rank = 2;
  UnetLora xlora(*xl, xo, torch::kFloat32, torch::kCPU, 1);
  save_lora_kohya(tmp / "xl.safetensors", xlora.layers(xlora.parameters()), xl->config(),
                  torch::kFloat32);
  expect_error([&] { load_lora_file(tmp / "xl.safetensors", *u); }, "another architecture");
  save_lora_diffusers(tmp / "xl-d.safetensors", xlora.layers(xlora.parameters()), torch::kFloat32);
  expect_error([&] { load_lora_file(tmp / "xl-d.safetensors", *u); }, "another architecture");
  const std::string q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
  io::save_safetensors(tmp / "half.safetensors",
                       {{"unet." + q + ".lora.down.weight", torch::zeros({2, 8})}});
  expect_error([&] { load_lora_file(tmp / "half.safetensors", *u); }, "has no up weight");
  io::save_safetensors(tmp / "shape.safetensors",
                       {{"unet." + q + ".lora.down.weight", torch::zeros({2, 5})},
                        {"unet." + q + ".lora.up.weight", torch::zeros({8, 2})}});
  expect_error([&] { load_lora_file(tmp / "shape.safetensors", *u); },
               "lora.down.weight' has shape");
  io::save_safetensors(tmp / "loha.safetensors",
                       {{"lora_unet_conv_in.hada_w1_a", torch::zeros({2, 2})}});
  expect_error([&] { load_lora_file(tmp / "loha.safetensors", *u); }, "hada_w1_a");
  expect_error([&] { load_lora_file(tmp / "missing.safetensors", *u); }, "no such file");
}

TEST(Lora, SpecsAndPatterns) {
  EXPECT_EQ(parse_lora_spec("a/b.safetensors").scale, 1.0);
  const auto s = parse_lora_spec("a/b.safetensors:0.75");
  EXPECT_EQ(s.file, "a/b.safetensors");
  EXPECT_EQ(s.scale, 0.75);
  EXPECT_EQ(parse_lora_spec("c:/x.safetensors").file, "c:/x.safetensors");
  EXPECT_EQ(parse_lora_spec("x.safetensors:-1").scale, -1.0);
  EXPECT_THROW(parse_lora_spec(":2"), UsageError);
  const std::string n = "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj";
  EXPECT_TRUE(lora_pattern_matches("ff.net.*", n));
  EXPECT_TRUE(lora_pattern_matches("proj", n));
  EXPECT_TRUE(lora_pattern_matches("down_blocks.1.*.proj", n));
  EXPECT_FALSE(lora_pattern_matches("roj", n));
  EXPECT_FALSE(lora_pattern_matches("to_q", n));
  EXPECT_FALSE(lora_pattern_matches("down_blocks.2.*", n));
}

}  // namespace
}  // namespace dro::models
