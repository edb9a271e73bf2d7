// Per-image seeds: with a stochastic sampler (DDPM, DDIM eta > 0) an image generated in a batch
// equals the same image generated alone, so any image can be regenerated from its seed.
#include "dro/pipeline/stable_diffusion.h"
#include "test_util.h"

namespace dro::pipeline {
namespace {

TEST(PipelineSeeds, BatchedEqualsAloneForStochasticSamplers) {
  DRO_REQUIRE_FIXTURES();
  LoadSpec spec;
  spec.model = test::fixtures() / "tiny-sd15";
  auto sd = StableDiffusion::load(spec);
  for (const auto& [name, eta] : std::vector<std::pair<std::string, double>>{{"ddpm", 0.0}, {"ddim", 1.0}}) {
    GenerateOptions o;
    o.scheduler = name;
    o.eta = eta;
    o.steps = 5;
    o.guidance_scale = 3.0;
    std::vector<ImageRequest> both = {{"a red cat", "", 11, {}}, {"a blue dog", "", 12, {}}};
    auto batched = generate(sd, both, o);
    auto alone = generate(sd, {both[1]}, o);
    EXPECT_TRUE(test::allclose(batched.latents[1], alone.latents[0], 1e-4)) << name;
    // Another seed gives another image.
    auto other = generate(sd, {{"a blue dog", "", 13, {}}}, o);
    EXPECT_GT(test::max_abs_diff(other.latents[0], alone.latents[0]), 1e-2) << name;
  }
}

}  // namespace
}  // namespace dro::pipeline
