// End-to-end text-to-image against diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline
// (golden/pipelines.safetensors): timesteps, conditioning, every step's latents, final latents and
// decoded images for tiny-sd15 (with and without negative prompts) and tiny-sdxl, DDIM.
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/pipeline/stable_diffusion.h"
#include "test_util.h"

namespace dro::pipeline {
namespace {

std::vector<std::string> golden_prompts() {
  auto j = io::read_json(test::fixtures() / "golden/prompts.json");
  std::vector<std::string> p;
  for (const auto& e : j) p.push_back(e["prompt"].get<std::string>());
  return p;
}

double chain_tol(const torch::Tensor& ref) { return 1e-3 * std::max(1.0, ref.abs().max().item<double>()); }

void run_case(const std::string& model, const std::string& key, int64_t steps, double guidance,
              const std::vector<std::string>& negatives) {
  auto g = io::load_safetensors(test::fixtures() / "golden/pipelines.safetensors");
  const auto prompts = golden_prompts();
  LoadSpec spec;
  spec.model = test::fixtures() / model;
  auto sd = StableDiffusion::load(spec);
  GenerateOptions o;
  o.scheduler = "ddim";
  o.steps = steps;
  o.guidance_scale = guidance;
  const std::string base = key.substr(0, key.find('.'));
  const auto& latents_in = g.at(base + ".latents_in");
  std::vector<ImageRequest> batch;
  for (int i = 0; i < 2; ++i)
    batch.push_back({prompts[i == 0 ? 0 : 2], negatives.empty() ? "" : negatives[i], 0, latents_in[i]});

  if (negatives.empty()) {
    auto cond = make_conditioning(sd, {prompts[0], prompts[2]}, {"", ""}, guidance, o);
    EXPECT_TRUE(test::allclose(cond.embeds, g.at(base + ".prompt_embeds_cfg"), 1e-4)) << "prompt embeds";
    if (sd.sdxl()) {
      EXPECT_TRUE(test::allclose(cond.text_embeds, g.at(base + ".add_text_embeds_cfg"), 1e-4));
      EXPECT_TRUE(test::allclose(cond.time_ids, g.at(base + ".add_time_ids_cfg"), 0));
    }
  }
  std::vector<torch::Tensor> seen, ts;
  auto r = generate(sd, batch, o, [&](int64_t, const torch::Tensor& t, const torch::Tensor& x, const torch::Tensor&) {
    seen.push_back(x.clone());
    ts.push_back(t[0].clone());
  });
  if (negatives.empty()) {
    EXPECT_TRUE(torch::equal(torch::stack(ts).to(torch::kLong), g.at(base + ".timesteps")));
    const auto& unet_in = g.at(base + ".unet_in");  // [steps, 2B, C, h, w]
    for (int64_t k = 0; k < steps; ++k)
      EXPECT_TRUE(test::allclose(seen[k], unet_in[k].slice(0, 0, 2), chain_tol(unet_in[k]))) << "step " << k;
  }
  const auto& lat = g.at(key + ".latents_final");
  EXPECT_TRUE(test::allclose(r.latents, lat, chain_tol(lat))) << "final latents";
  EXPECT_TRUE(test::allclose(r.images, g.at(key + ".image"), 1e-3)) << "images";
}

TEST(PipelineGolden, Sd15Ddim) {
  DRO_REQUIRE_FIXTURES();
  run_case("tiny-sd15", "sd15", 4, 7.5, {});
}

TEST(PipelineGolden, Sd15NegativePrompts) {
  DRO_REQUIRE_FIXTURES();
  run_case("tiny-sd15", "sd15.neg", 4, 7.5, {"blurry, low quality", "ugly"});
}

TEST(PipelineGolden, SdxlDdim) {
  DRO_REQUIRE_FIXTURES();
  run_case("tiny-sdxl", "sdxl", 3, 5.0, {});
}

}  // namespace
}  // namespace dro::pipeline
