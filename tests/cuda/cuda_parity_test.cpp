// The golden parity checks on a CUDA device (skipped where CUDA is absent): float32 with TF32 off,
// then bf16 autocast with its looser tolerance; and a few trainer micro-steps on the device.
#include <fstream>
#include <map>

#include "dro/core/compat.h"
#include "dro/eval/scorer.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/models/autoencoder_kl.h"
#include "dro/models/unet.h"
#include "dro/pipeline/stable_diffusion.h"
#include "dro/sched/noise_schedule.h"
#include "dro/train/objectives/dro.h"
#include "dro/vision/decode.h"
#include "test_util.h"

namespace dro {
namespace {

#define DRO_REQUIRE_CUDA()                                              \
  do {                                                                  \
    DRO_REQUIRE_FIXTURES();                                             \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

struct Fp32Guard {  // exact float32 kernels: TF32 off for the duration of a test
  Fp32Guard() {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
};

TEST(CudaParity, UnetAndVaeFloat32AndBf16) {
  DRO_REQUIRE_CUDA();
  Fp32Guard fp32;
  const torch::Device cuda(torch::kCUDA);
  auto g = io::load_safetensors(test::fixtures() / "golden/unet.safetensors");
  for (const std::string m : {"sd15", "sdxl"}) {
    nn::LoadOptions lo;
    lo.device = cuda;
    auto unet = models::load_unet(test::fixtures() / ("tiny-" + m) / "unet", lo);
    unet->eval();
    torch::NoGradGuard ng;
    auto te = m == "sdxl" ? g.at(m + ".a.text_embeds").to(cuda) : torch::Tensor();
    auto ids = m == "sdxl" ? g.at(m + ".a.time_ids").to(cuda) : torch::Tensor();
    auto out = unet->forward(g.at(m + ".a.sample_in").to(cuda), g.at(m + ".a.timesteps").to(cuda),
                             g.at(m + ".a.encoder_hidden_states").to(cuda), te, ids);
    auto r = test::allclose(out.cpu(), g.at(m + ".a.out"), 1e-4);
    EXPECT_TRUE(r) << m << " fp32";
    std::cout << "[cuda] unet " << m << " fp32: " << r.message() << "\n";
    compat::AutocastGuard ac(cuda, true);
    auto bf = unet->forward(g.at(m + ".a.sample_in").to(cuda), g.at(m + ".a.timesteps").to(cuda),
                            g.at(m + ".a.encoder_hidden_states").to(cuda), te, ids);
    auto rb = test::allclose(bf.to(torch::kFloat32).cpu(), g.at(m + ".a.out"), 5e-2);
    EXPECT_TRUE(rb) << m << " bf16 autocast";
    std::cout << "[cuda] unet " << m << " bf16 autocast: " << rb.message() << "\n";
  }
  auto v = io::load_safetensors(test::fixtures() / "golden/vae.safetensors");
  nn::LoadOptions lo;
  lo.device = cuda;
  auto vae = models::load_vae(test::fixtures() / "tiny-sd15/vae", lo);
  torch::NoGradGuard ng;
  auto d = vae->decode(v.at("sd15.decode_in").to(cuda));
  auto rd = test::allclose(d.cpu(), v.at("sd15.decode_out"), 1e-4);
  EXPECT_TRUE(rd);
  std::cout << "[cuda] vae decode fp32: " << rd.message() << "\n";
}

TEST(CudaParity, PipelineAndDroLoss) {
  DRO_REQUIRE_CUDA();
  Fp32Guard fp32;
  const torch::Device cuda(torch::kCUDA);
  auto g = io::load_safetensors(test::fixtures() / "golden/pipelines.safetensors");
  pipeline::LoadSpec spec;
  spec.model = test::fixtures() / "tiny-sd15";
  spec.device = cuda;
  auto sd = pipeline::StableDiffusion::load(spec);
  pipeline::GenerateOptions o;
  o.scheduler = "ddim";
  o.steps = 4;
  o.guidance_scale = 7.5;
  std::vector<pipeline::ImageRequest> batch = {
      {"a photograph of an astronaut riding a horse", "", 0, g.at("sd15.latents_in")[0]},
      {"A Cute CAT, sitting on a Wooden Chair!", "", 0, g.at("sd15.latents_in")[1]}};
  auto r = pipeline::generate(sd, batch, o);
  auto ri = test::allclose(r.images.cpu(), g.at("sd15.image"), 1e-3);
  EXPECT_TRUE(ri);
  std::cout << "[cuda] sd15 pipeline image fp32: " << ri.message() << "\n";

  auto d = io::load_safetensors(test::fixtures() / "golden/dro.safetensors");
  nn::LoadOptions lo;
  lo.device = cuda;
  auto ref = models::load_unet(test::fixtures() / "tiny-sd15/unet", lo);
  auto unet = models::load_unet(test::fixtures() / "golden/dro_policy_unet", lo);
  auto wrap = [](models::UNet2DConditionModel& m) -> train::Denoiser {
    return [&m](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c,
                const torch::Tensor& te,
                const torch::Tensor& ids) { return m->forward(x, t, c, te, ids); };
  };
  train::ObjectiveBatch b;
  b.t = d.at("loss.t").to(cuda);
  b.c = d.at("loss.c").to(cuda);
  b.xt_expert = d.at("loss.xt_expert").to(cuda);
  b.eps_expert = d.at("loss.eps_expert").to(cuda);
  b.xt_policy = d.at("loss.xt_policy").to(cuda);
  b.eps_policy = d.at("loss.eps_policy").to(cuda);
  auto out = train::DroObjective(0.001).compute(wrap(unet), wrap(ref), b);
  auto rl = test::allclose(out.stats["diff"].cpu(), d.at("loss.diff"), 1e-5);
  EXPECT_TRUE(rl);
  std::cout << "[cuda] dro diffs fp32: " << rl.message() << "\n";
  out.loss.backward();
  const auto& gr = d.at("grad.conv_in.weight");
  auto rg = test::allclose(unet->named_parameters()["conv_in.weight"].grad().cpu(), gr,
                           1e-3 * gr.abs().max().item<double>());
  EXPECT_TRUE(rg);
  std::cout << "[cuda] dro grad conv_in fp32: " << rg.message() << "\n";
}

}  // namespace
}  // namespace dro

namespace dro {
namespace {

// Every scorer on the fixture models on the device, float32 (TF32 off) against the official scores,
// then bf16 weights with a looser limit (bf16 keeps ~3 significant digits).
TEST(CudaParity, ScorersFloat32AndBf16) {
  DRO_REQUIRE_CUDA();
  DRO_REQUIRE_SCORER_FIXTURES();
  Fp32Guard fp32;
  const auto s = test::scorer_fixtures();
  eval::ScorerModels m;
  m.pickscore_model = s / "clip-vit-h-14-tiny";
  m.hpsv2_checkpoint = s / "hpsv2-tiny" / "HPS_v2_compressed.pt";
  m.hpsv2_config = s / "hpsv2-tiny" / "ViT-H-14.json";
  m.open_clip_tokenizer = s / "clip-vit-h-14-tiny";
  m.clip_model = s / "clip-vit-h-14-tiny";
  m.aesthetic_clip_model = s / "clip-vit-l-14-tiny";
  m.aestheticv1_head = s / "aesthetic-tiny" / "sa_0_4_vit_l_14_linear.pth";
  m.aestheticv2_head = s / "aesthetic-tiny" / "sac+logos+ava1-l14-linearMSE.pth";
  m.imagereward_checkpoint = s / "imagereward-tiny" / "ImageReward.pt";
  m.imagereward_vit_config = s / "imagereward-tiny" / "vit_config.json";
  m.bert_tokenizer = s / "bert-base-uncased";
  // golden[(image file, prompt)][key]
  std::map<std::pair<std::string, std::string>, io::OrderedJson> golden;
  {
    std::ifstream in(s / "golden" / "expected_scores.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto j = io::OrderedJson::parse(line);
      golden[{j["image"].get<std::string>(), j["prompt"].get<std::string>()}] = j;
    }
  }
  const auto prompts = test::golden_prompts();
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    eval::ScorerOptions o;
    o.device = torch::Device(torch::kCUDA);
    o.dtype = dtype;
    for (const auto kind : {eval::ScorerKind::kPickScore, eval::ScorerKind::kHpsv2,
                            eval::ScorerKind::kClip, eval::ScorerKind::kAesthetic,
                            eval::ScorerKind::kImageReward}) {
      auto scorer = eval::make_scorer(kind, m, o);
      double worst = 0;
      for (const auto& e : io::read_json(s / "golden" / "images.json")) {
        if (e["mode"] == "RGBA") continue;  // the reference fails on it for HPSv2 / CLIP score
        const std::string file = e["file"].get<std::string>();
        std::vector<std::string> notes;
        const auto px = scorer->preprocess(vision::decode_image_file(s / file), notes);
        const auto out = scorer->score(
            px.unsqueeze(0).expand({static_cast<int64_t>(prompts.size()), -1, -1, -1}), prompts);
        for (size_t k = 0; k < scorer->keys().size(); ++k)
          for (size_t p = 0; p < prompts.size(); ++p) {
            const double ref = golden.at({file, prompts[p]})[scorer->keys()[k].key].get<double>();
            const double d = std::abs(out[k][p] - ref);
            worst = std::max(worst, d);
            const double tol = dtype == torch::kFloat32 ? 2e-3 + 1e-5 * std::abs(ref)
                                                        : 0.05 + 0.03 * std::abs(ref);
            EXPECT_LE(d, tol) << scorer->keys()[k].key << " " << file << " prompt " << p
                              << (dtype == torch::kFloat32 ? " fp32" : " bf16");
          }
      }
      std::cout << "[cuda] " << scorer->keys().front().key
                << (dtype == torch::kFloat32 ? " fp32" : " bf16") << ": max |diff| " << worst
                << "\n";
    }
  }
}

}  // namespace
}  // namespace dro
