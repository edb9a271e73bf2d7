// UNet2DConditionModel against diffusers 0.32: every golden forward (tiny SD1.5 and SDXL UNets),
// the DRO loss gradients of golden/dro.safetensors, key sets, save / reload, gradient
// checkpointing and the errors a caller can hit.
#include "dro/models/unet.h"

#include <fstream>
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

std::map<std::string, torch::Tensor> golden(const std::string& file) {
  return io::load_safetensors(fixtures() / "golden" / file);
}

// Runs one golden case ("sd15.a", "sdxl.b", ...) and checks it.
void check_case(UNet2DConditionModel& unet, const std::map<std::string, torch::Tensor>& g,
                const std::string& p) {
  const bool batched = g.count(p + ".timesteps") > 0;
  const torch::Tensor t = g.at(p + (batched ? ".timesteps" : ".timestep"));
  torch::Tensor text_embeds, time_ids;
  if (g.count(p + ".text_embeds")) {
    text_embeds = g.at(p + ".text_embeds");
    time_ids = g.at(p + ".time_ids");
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor out = unet->forward(
      g.at(p + ".sample_in"), t, g.at(p + ".encoder_hidden_states"), text_embeds, time_ids);
  const double diff = test::max_abs_diff(out, g.at(p + ".out"));
  std::cout << "[ parity   ] unet " << p << " max |diff| = " << diff << "\n";
  EXPECT_TRUE(test::allclose(out, g.at(p + ".out"), kForwardTol)) << p;
}

std::set<std::string> parameter_keys(const torch::nn::Module& m) {
  std::set<std::string> keys;
  for (const auto& p : m.named_parameters(true)) keys.insert(p.key());
  for (const auto& b : m.named_buffers(true)) keys.insert(b.key());
  return keys;
}

std::set<std::string> file_keys(const std::filesystem::path& file) {
  std::set<std::string> keys;
  const auto st = io::SafetensorsFile::open(file);
  for (const auto& info : st->tensors()) keys.insert(info.name);
  return keys;
}

TEST(UnetParity, Sd15GoldenForwards) {
  DRO_REQUIRE_FIXTURES();
  auto unet = load_unet(fixtures() / "tiny-sd15/unet");
  const auto g = golden("unet.safetensors");
  check_case(unet, g, "sd15.a");  // per-sample int64 timesteps [1, 500, 999]
  check_case(unet, g, "sd15.b");  // 0-dim float32 timestep 321.5
}

TEST(UnetParity, SdxlGoldenForwards) {
  DRO_REQUIRE_FIXTURES();
  auto unet = load_unet(fixtures() / "tiny-sdxl/unet");
  const auto g = golden("unet.safetensors");
  check_case(unet, g, "sdxl.a");
  check_case(unet, g, "sdxl.b");
}

TEST(UnetParity, InferenceModeAndGradModeAgree) {
  DRO_REQUIRE_FIXTURES();
  auto unet = load_unet(fixtures() / "tiny-sdxl/unet");
  const auto g = golden("unet.safetensors");
  torch::Tensor with_grad = unet->forward(g.at("sdxl.a.sample_in"), g.at("sdxl.a.timesteps"),
                                          g.at("sdxl.a.encoder_hidden_states"),
                                          g.at("sdxl.a.text_embeds"), g.at("sdxl.a.time_ids"));
  EXPECT_TRUE(with_grad.requires_grad());
  torch::InferenceMode guard;
  torch::Tensor inference = unet->forward(g.at("sdxl.a.sample_in"), g.at("sdxl.a.timesteps"),
                                          g.at("sdxl.a.encoder_hidden_states"),
                                          g.at("sdxl.a.text_embeds"), g.at("sdxl.a.time_ids"));
  EXPECT_TRUE(test::allclose(inference, with_grad.detach(), 1e-6));
  EXPECT_TRUE(inference.is_contiguous());
}

// The UNet forwards inside the Diffusion-DRO loss (batch 8, per-sample timesteps), reference and
// perturbed policy UNet, then the gradients of the loss for the four recorded parameters, with and
// without gradient checkpointing.
TEST(UnetParity, DroLossForwardsAndGradients) {
  DRO_REQUIRE_FIXTURES();
  const auto g = golden("dro.safetensors");
  const torch::Tensor xt = torch::cat({g.at("loss.xt_expert"), g.at("loss.xt_policy")});
  const torch::Tensor t = torch::cat({g.at("loss.t"), g.at("loss.t")});
  const torch::Tensor c = torch::cat({g.at("loss.c"), g.at("loss.c")});
  const torch::Tensor eps = torch::cat({g.at("loss.eps_expert"), g.at("loss.eps_policy")});
  {
    auto ref = load_unet(fixtures() / "tiny-sd15/unet");
    torch::NoGradGuard no_grad;
    const torch::Tensor out = ref->forward(xt, t, c);
    std::cout << "[ parity   ] unet dro pred_eps_ref max |diff| = "
              << test::max_abs_diff(out, g.at("loss.pred_eps_ref")) << "\n";
    EXPECT_TRUE(test::allclose(out, g.at("loss.pred_eps_ref"), kForwardTol));
  }
  for (bool checkpointing : {false, true}) {
    auto policy = load_unet(fixtures() / "golden/dro_policy_unet");
    policy->set_gradient_checkpointing(checkpointing);
    const torch::Tensor pred = policy->forward(xt, t, c);
    EXPECT_TRUE(test::allclose(pred.detach(), g.at("loss.pred_eps"), kForwardTol));
    const torch::Tensor losses = (pred - eps).square().mean({1, 2, 3});
    const torch::Tensor losses0 = g.at("loss.losses0");
    const torch::Tensor diff = (losses.slice(0, 0, 4) - losses0.slice(0, 0, 4)) -
                               (losses.slice(0, 4, 8) - losses0.slice(0, 4, 8));
    const torch::Tensor loss = torch::clamp_min(diff + g.at("loss.margin"), 0.0).mean();
    EXPECT_TRUE(test::allclose(loss.detach(), g.at("loss.loss"), 1e-5));
    loss.backward();
    auto params = policy->named_parameters();
    for (const std::string name :
         {"conv_in.weight", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
          "time_embedding.linear_1.weight", "up_blocks.3.resnets.2.conv2.bias"}) {
      const torch::Tensor expected = g.at("grad." + name);
      const double tol = 1e-3 * expected.abs().max().item<double>();
      std::cout << "[ parity   ] unet grad " << name << (checkpointing ? " (checkpointed)" : "")
                << " max |diff| = " << test::max_abs_diff(params[name].grad(), expected) << "\n";
      EXPECT_TRUE(test::allclose(params[name].grad(), expected, tol)) << name;
    }
  }
}

TEST(UnetLoad, ParameterNamesAreTheCheckpointKeys) {
  DRO_REQUIRE_FIXTURES();
  for (const char* dir : {"tiny-sd15/unet", "tiny-sdxl/unet", "golden/dro_policy_unet"}) {
    UNet2DConditionModel unet(UNetConfig::load(fixtures() / dir));
    EXPECT_EQ(parameter_keys(*unet),
              file_keys(fixtures() / dir / "diffusion_pytorch_model.safetensors"))
        << dir;
  }
}

TEST(UnetLoad, SaveAndReloadGiveBitwiseEqualOutputs) {
  DRO_REQUIRE_FIXTURES();
  const auto g = golden("unet.safetensors");
  auto unet = load_unet(fixtures() / "tiny-sdxl/unet");
  TempDir dir;
  save_unet(dir / "unet", unet);
  EXPECT_EQ(io::read_json(dir / "unet/config.json"),
            io::read_json(fixtures() / "tiny-sdxl/unet/config.json"));
  auto again = load_unet(dir / "unet");
  torch::NoGradGuard no_grad;
  auto run = [&](UNet2DConditionModel& m) {
    return m->forward(g.at("sdxl.b.sample_in"), g.at("sdxl.b.timestep"),
                      g.at("sdxl.b.encoder_hidden_states"), g.at("sdxl.b.text_embeds"),
                      g.at("sdxl.b.time_ids"));
  };
  EXPECT_TRUE(torch::equal(run(unet), run(again)));
}

TEST(UnetLoad, VariantWeightsAndDtype) {
  DRO_REQUIRE_FIXTURES();
  auto unet = load_unet(fixtures() / "tiny-sd15/unet");
  TempDir dir;
  std::filesystem::create_directories(dir / "unet");
  std::filesystem::copy_file(fixtures() / "tiny-sd15/unet/config.json", dir / "unet/config.json");
  io::NamedTensors half;
  for (const auto& [name, t] : nn::state_tensors(*unet))
    half.emplace_back(name, t.detach().to(torch::kFloat16));
  io::save_safetensors(dir / "unet/diffusion_pytorch_model.fp16.safetensors", half);
  nn::LoadOptions options;
  options.dtype = torch::kFloat16;
  auto loaded = load_unet(dir / "unet", options, "fp16");
  EXPECT_EQ(loaded->conv_in->weight.scalar_type(), torch::kFloat16);
  EXPECT_THROW(load_unet(dir / "unet", {}, "bf16"), IoError);
}

TEST(UnetLoad, MissingKeyIsNamed) {
  DRO_REQUIRE_FIXTURES();
  TempDir dir;
  std::filesystem::create_directories(dir / "unet");
  std::filesystem::copy_file(fixtures() / "tiny-sd15/unet/config.json", dir / "unet/config.json");
  io::NamedTensors tensors;
  for (const auto& [name, t] :
       io::load_safetensors(fixtures() / "tiny-sd15/unet/diffusion_pytorch_model.safetensors"))
    if (name != "mid_block.attentions.0.proj_out.weight") tensors.emplace_back(name, t);
  io::save_safetensors(dir / "unet/diffusion_pytorch_model.safetensors", tensors);
  try {
    load_unet(dir / "unet");
    FAIL() << "a UNet with a missing weight loaded";
  } catch (const IoError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing 1: 'mid_block.attentions.0.proj_out.weight'"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("unet"), std::string::npos) << msg;
  }
}

TEST(UnetForward, SdxlWithoutAddedConditionsIsAUsageError) {
  DRO_REQUIRE_FIXTURES();
  const auto g = golden("unet.safetensors");
  auto sdxl = load_unet(fixtures() / "tiny-sdxl/unet");
  EXPECT_TRUE(sdxl->needs_added_conditions());
  torch::NoGradGuard no_grad;
  try {
    sdxl->forward(g.at("sdxl.a.sample_in"), g.at("sdxl.a.timesteps"),
                  g.at("sdxl.a.encoder_hidden_states"));
    FAIL() << "SDXL UNet ran without text_embeds / time_ids";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("text_embeds"), std::string::npos) << e.what();
  }
  auto sd15 = load_unet(fixtures() / "tiny-sd15/unet");
  EXPECT_THROW(sd15->forward(g.at("sd15.a.sample_in"), torch::tensor({1, 2}),
                             g.at("sd15.a.encoder_hidden_states")),
               UsageError);  // 2 timesteps for a batch of 3
  EXPECT_THROW(sd15->forward(g.at("sd15.a.sample_in"), g.at("sd15.a.timesteps"),
                             g.at("sdxl.a.encoder_hidden_states")),
               UsageError);  // 16-wide text for an 8-wide UNet
}

TEST(UnetForward, OddLatentSizesUseExplicitUpsampleSizes) {
  DRO_REQUIRE_FIXTURES();
  auto unet = load_unet(fixtures() / "tiny-sd15/unet");
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 4, 9, 11});
  const torch::Tensor out = unet->forward(x, torch::tensor(10), torch::randn({1, 77, 8}));
  EXPECT_EQ(out.sizes(), x.sizes());
}

TEST(UnetCheckpointing, SameGradientsAsWithout) {
  DRO_REQUIRE_FIXTURES();
  const auto g = golden("unet.safetensors");
  auto unet = load_unet(fixtures() / "tiny-sd15/unet");
  const torch::Tensor weights = torch::randn({3, 4, 8, 8}, at::detail::createCPUGenerator(7));
  auto run = [&](bool checkpointing) {
    unet->zero_grad();
    unet->set_gradient_checkpointing(checkpointing);
    torch::Tensor x = g.at("sd15.a.sample_in").clone().requires_grad_(true);
    torch::Tensor ctx = g.at("sd15.a.encoder_hidden_states").clone().requires_grad_(true);
    torch::Tensor out = unet->forward(x, g.at("sd15.a.timesteps"), ctx);
    (out * weights).sum().backward();
    std::map<std::string, torch::Tensor> grads{{"<sample>", x.grad()}, {"<context>", ctx.grad()}};
    for (const auto& p : unet->named_parameters()) grads[p.key()] = p.value().grad().clone();
    return grads;
  };
  const auto plain = run(false);
  const auto ckpt = run(true);
  ASSERT_EQ(plain.size(), ckpt.size());
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, grad] : plain) {
    ASSERT_TRUE(ckpt.at(name).defined()) << name;
    const double d = test::max_abs_diff(ckpt.at(name), grad);
    if (d > worst) worst = d, worst_name = name;
    // 1e-5, relative for gradients above 1: only the summation order of shared inputs (temb, the
    // text context, skips) differs, which moves large gradients by a few ulp.
    const double scale = std::max(1.0, grad.abs().max().item<double>());
    EXPECT_TRUE(test::allclose(ckpt.at(name), grad, 1e-5 * scale)) << name;
  }
  std::cout << "[ ckpt     ] largest gradient difference with checkpointing: " << worst << " ("
            << worst_name << ", max |grad| " << plain.at(worst_name).abs().max().item<double>()
            << ")\n";

  // torch::autograd::grad (no .grad accumulation) sees the parameters through the checkpoints.
  unet->zero_grad();
  torch::Tensor out = unet->forward(g.at("sd15.a.sample_in"), g.at("sd15.a.timesteps"),
                                    g.at("sd15.a.encoder_hidden_states"));
  const torch::Tensor w = unet->named_parameters()["down_blocks.0.resnets.0.conv1.weight"];
  auto grads = torch::autograd::grad({(out * weights).sum()}, {w});
  EXPECT_TRUE(test::allclose(grads[0], plain.at("down_blocks.0.resnets.0.conv1.weight"), 1e-5));
  EXPECT_FALSE(w.grad().defined() && w.grad().abs().sum().item<double>() > 0);

  // No graph, no checkpoint: the forward under NoGradGuard is the plain one.
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(unet->forward(g.at("sd15.a.sample_in"), g.at("sd15.a.timesteps"),
                             g.at("sd15.a.encoder_hidden_states"))
                   .requires_grad());
}

}  // namespace
}  // namespace dro::models
