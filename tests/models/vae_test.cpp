// AutoencoderKL against diffusers 0.32: encode (posterior mean / logvar) and decode of the tiny
// SD1.5 and SDXL VAEs, key sets, legacy attention names, save / reload, sampling and slicing.
#include "dro/models/autoencoder_kl.h"

#include <set>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "test_util.h"

namespace dro::models {
namespace {

using test::fixtures;
using test::TempDir;

constexpr double kForwardTol = 1e-4;  // fixtures/README.md: single module forwards

std::map<std::string, torch::Tensor> golden() {
  return io::load_safetensors(fixtures() / "golden/vae.safetensors");
}

void check_vae(const std::string& model) {
  auto vae = load_vae(fixtures() / ("tiny-" + model) / "vae");
  const auto g = golden();
  torch::NoGradGuard no_grad;
  const DiagonalGaussian posterior = vae->encode(g.at(model + ".image"));
  const torch::Tensor decoded = vae->decode(g.at(model + ".decode_in"));
  const std::pair<const char*, const torch::Tensor*> outputs[] = {
      {".latent_mean", &posterior.mean},
      {".latent_logvar", &posterior.logvar},
      {".decode_out", &decoded}};
  for (const auto& [suffix, actual] : outputs) {
    const torch::Tensor& expected = g.at(model + suffix);
    std::cout << "[ parity   ] vae " << model << suffix
              << " max |diff| = " << test::max_abs_diff(*actual, expected) << "\n";
    EXPECT_TRUE(test::allclose(*actual, expected, kForwardTol)) << model << suffix;
  }
}

std::set<std::string> keys_of(const torch::nn::Module& m) {
  std::set<std::string> keys;
  for (const auto& [name, t] : nn::state_tensors(m)) keys.insert(name);
  return keys;
}

TEST(VaeParity, Sd15EncodeDecode) {
  DRO_REQUIRE_FIXTURES();
  check_vae("sd15");
}

TEST(VaeParity, SdxlEncodeDecode) {
  DRO_REQUIRE_FIXTURES();
  check_vae("sdxl");
}

TEST(VaeLoad, ParameterNamesAreTheCheckpointKeys) {
  DRO_REQUIRE_FIXTURES();
  for (const char* dir : {"tiny-sd15/vae", "tiny-sdxl/vae"}) {
    AutoencoderKL vae(VaeConfig::load(fixtures() / dir));
    std::set<std::string> file;
    const auto st =
        io::SafetensorsFile::open(fixtures() / dir / "diffusion_pytorch_model.safetensors");
    for (const auto& info : st->tensors()) file.insert(info.name);
    EXPECT_EQ(keys_of(*vae), file) << dir;
  }
}

TEST(VaeLoad, LegacyAttentionNames) {
  DRO_REQUIRE_FIXTURES();
  EXPECT_EQ(vae_legacy_key("encoder.mid_block.attentions.0.query.weight"),
            "encoder.mid_block.attentions.0.to_q.weight");
  EXPECT_EQ(vae_legacy_key("decoder.mid_block.attentions.0.proj_attn.bias"),
            "decoder.mid_block.attentions.0.to_out.0.bias");
  EXPECT_EQ(vae_legacy_key("decoder.up_blocks.0.resnets.0.conv1.weight"),
            "decoder.up_blocks.0.resnets.0.conv1.weight");

  // Rewrite the fixture VAE the way old checkpoints stored it: old names, [C, C, 1, 1] weights.
  TempDir dir;
  std::filesystem::create_directories(dir / "vae");
  std::filesystem::copy_file(fixtures() / "tiny-sd15/vae/config.json", dir / "vae/config.json");
  const std::pair<std::string, std::string> kOld[] = {{".to_q.", ".query."},
                                                      {".to_k.", ".key."},
                                                      {".to_v.", ".value."},
                                                      {".to_out.0.", ".proj_attn."}};
  io::NamedTensors tensors;
  int renamed = 0;
  for (const auto& [name, t] :
       io::load_safetensors(fixtures() / "tiny-sd15/vae/diffusion_pytorch_model.safetensors")) {
    std::string key = name;
    torch::Tensor value = t;
    for (const auto& [now, old] : kOld) {
      const auto at = key.find(now);
      if (key.find("mid_block.attentions") == std::string::npos || at == std::string::npos)
        continue;
      key = key.substr(0, at) + old + key.substr(at + now.size());
      if (value.dim() == 2) value = value.reshape({value.size(0), value.size(1), 1, 1});
      ++renamed;
    }
    tensors.emplace_back(key, value);
  }
  EXPECT_EQ(renamed, 16);  // 4 projections x weight/bias x encoder/decoder
  io::save_safetensors(dir / "vae/diffusion_pytorch_model.safetensors", tensors);

  auto legacy = load_vae(dir / "vae");
  auto current = load_vae(fixtures() / "tiny-sd15/vae");
  const auto g = golden();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(legacy->decode(g.at("sd15.decode_in")),
                           current->decode(g.at("sd15.decode_in"))));
  EXPECT_TRUE(torch::equal(legacy->encode(g.at("sd15.image")).mean,
                           current->encode(g.at("sd15.image")).mean));
}

TEST(VaeLoad, SaveAndReloadGiveBitwiseEqualOutputs) {
  DRO_REQUIRE_FIXTURES();
  auto vae = load_vae(fixtures() / "tiny-sdxl/vae");
  TempDir dir;
  save_vae(dir / "vae", vae);
  EXPECT_EQ(io::read_json(dir / "vae/config.json"),
            io::read_json(fixtures() / "tiny-sdxl/vae/config.json"));
  auto again = load_vae(dir / "vae");
  const auto g = golden();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(
      torch::equal(vae->decode(g.at("sdxl.decode_in")), again->decode(g.at("sdxl.decode_in"))));
  EXPECT_TRUE(torch::equal(vae->encode(g.at("sdxl.image")).logvar,
                           again->encode(g.at("sdxl.image")).logvar));
}

TEST(VaeLoad, MissingKeyIsNamed) {
  DRO_REQUIRE_FIXTURES();
  TempDir dir;
  std::filesystem::create_directories(dir / "vae");
  std::filesystem::copy_file(fixtures() / "tiny-sd15/vae/config.json", dir / "vae/config.json");
  io::NamedTensors tensors;
  for (const auto& [name, t] :
       io::load_safetensors(fixtures() / "tiny-sd15/vae/diffusion_pytorch_model.safetensors"))
    if (name != "quant_conv.bias") tensors.emplace_back(name, t);
  io::save_safetensors(dir / "vae/diffusion_pytorch_model.safetensors", tensors);
  try {
    load_vae(dir / "vae");
    FAIL() << "a VAE with a missing weight loaded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing 1: 'quant_conv.bias'"), std::string::npos)
        << e.what();
  }
}

TEST(VaePosterior, SampleScaleAndSlicing) {
  DRO_REQUIRE_FIXTURES();
  auto vae = load_vae(fixtures() / "tiny-sd15/vae");
  EXPECT_TRUE(vae->force_upcast());
  const auto g = golden();
  torch::NoGradGuard no_grad;
  const DiagonalGaussian posterior = vae->encode(g.at("sd15.image"));
  EXPECT_TRUE(torch::allclose(posterior.std, (0.5 * posterior.logvar).exp()));
  EXPECT_TRUE(posterior.logvar.max().item<double>() <= 20.0 &&
              posterior.logvar.min().item<double>() >= -30.0);

  // sample = mean + std * randn(generator), reproducible from the seed.
  const torch::Tensor a = posterior.sample(at::detail::createCPUGenerator(42));
  const torch::Tensor b = posterior.sample(at::detail::createCPUGenerator(42));
  const torch::Tensor noise =
      torch::randn(posterior.mean.sizes(), at::detail::createCPUGenerator(42));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(torch::allclose(a, posterior.mean + posterior.std * noise));
  EXPECT_TRUE(torch::equal(posterior.mode(), posterior.mean));

  const torch::Tensor z = vae->scale_latents(posterior.mean);
  EXPECT_TRUE(torch::allclose(z, posterior.mean * 0.18215));
  EXPECT_TRUE(torch::allclose(vae->unscale_latents(z), posterior.mean));

  const torch::Tensor batched = vae->decode(g.at("sd15.decode_in"));
  vae->set_slicing(true);
  EXPECT_TRUE(test::allclose(vae->decode(g.at("sd15.decode_in")), batched, 1e-5));
  EXPECT_TRUE(test::allclose(vae->encode(g.at("sd15.image")).mean, posterior.mean, 1e-5));
  EXPECT_THROW(vae->decode(g.at("sd15.image")), UsageError);  // an image where latents belong
}

TEST(VaeCheckpointing, SameGradientsAsWithout) {
  DRO_REQUIRE_FIXTURES();
  auto vae = load_vae(fixtures() / "tiny-sdxl/vae");
  const auto g = golden();
  auto run = [&](bool checkpointing) {
    vae->zero_grad();
    vae->set_gradient_checkpointing(checkpointing);
    torch::Tensor image = g.at("sdxl.image").clone().requires_grad_(true);
    const DiagonalGaussian posterior = vae->encode(image);
    (vae->decode(posterior.mean).square().mean() + posterior.logvar.mean()).backward();
    std::map<std::string, torch::Tensor> grads{{"<image>", image.grad()}};
    for (const auto& p : vae->named_parameters()) grads[p.key()] = p.value().grad().clone();
    return grads;
  };
  const auto plain = run(false);
  const auto ckpt = run(true);
  for (const auto& [name, grad] : plain)
    EXPECT_TRUE(test::allclose(ckpt.at(name), grad, 1e-5)) << name;
}

}  // namespace
}  // namespace dro::models
