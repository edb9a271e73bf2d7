// Diffusion-DRO against the official code's numbers (golden/dro.safetensors): the replay-buffer
// fill (per-sample perturbed DPM-Solver++ trajectories of the policy UNet, official sigma sharing)
// and one training step's loss, per-sample diffs and gradients.
#include "dro/io/safetensors.h"
#include "dro/models/unet.h"
#include "dro/pipeline/denoise.h"
#include "dro/sched/noise_schedule.h"
#include "dro/sched/scheduler.h"
#include "dro/train/objectives/dro.h"
#include "test_util.h"

namespace dro::train {
namespace {

std::map<std::string, torch::Tensor> golden() {
  return io::load_safetensors(test::fixtures() / "golden/dro.safetensors");
}

Denoiser wrap(models::UNet2DConditionModel& m) {
  return [&m](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c,
              const torch::Tensor& te, const torch::Tensor& ids) { return m->forward(x, t, c, te, ids); };
}

TEST(DroGolden, LossDiffsAndGradients) {
  DRO_REQUIRE_FIXTURES();
  auto g = golden();
  auto ref = models::load_unet(test::fixtures() / "tiny-sd15/unet");
  ref->eval();
  auto unet = models::load_unet(test::fixtures() / "golden/dro_policy_unet");
  unet->train();
  auto sc = sched::SchedulerConfig::load(test::fixtures() / "tiny-sd15/scheduler");
  auto noise = sched::NoiseSchedule::from_config(sc);
  const auto xt_expert = noise.add_noise(g.at("loss.x0_expert"), g.at("loss.eps_expert"), g.at("loss.t"));
  EXPECT_TRUE(test::allclose(xt_expert, g.at("loss.xt_expert"), 1e-5));

  ObjectiveBatch b;
  b.t = g.at("loss.t");
  b.c = g.at("loss.c");
  b.xt_expert = xt_expert;
  b.eps_expert = g.at("loss.eps_expert");
  b.xt_policy = g.at("loss.xt_policy");
  b.eps_policy = g.at("loss.eps_policy");
  DroObjective obj(g.at("loss.margin").item<double>());
  auto out = obj.compute(wrap(unet), wrap(ref), b);
  const auto losses0 = torch::cat({out.stats["expert0"], out.stats["policy0"]});
  const auto losses = torch::cat({out.stats["expert"], out.stats["policy"]});
  EXPECT_TRUE(test::allclose(losses0, g.at("loss.losses0"), 1e-5));
  EXPECT_TRUE(test::allclose(losses, g.at("loss.losses"), 1e-5));
  EXPECT_TRUE(test::allclose(out.stats["diff"], g.at("loss.diff"), 1e-5));
  EXPECT_TRUE(test::allclose(out.loss, g.at("loss.loss"), 1e-5));
  out.loss.backward();
  auto named = unet->named_parameters(true);
  for (const char* p : {"conv_in.weight", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                        "time_embedding.linear_1.weight", "up_blocks.3.resnets.2.conv2.bias"}) {
    const auto& ref_grad = g.at(std::string("grad.") + p);
    const double tol = 1e-3 * ref_grad.abs().max().item<double>();
    EXPECT_TRUE(test::allclose(named[p].grad(), ref_grad, tol)) << p;
  }
}

TEST(DroGolden, BufferTrajectoriesWithOfficialSigmaSharing) {
  DRO_REQUIRE_FIXTURES();
  auto g = golden();
  auto policy = models::load_unet(test::fixtures() / "tiny-sd15/unet");
  policy->eval();
  auto sc = sched::SchedulerConfig::load(test::fixtures() / "tiny-sd15/scheduler");
  sched::SchedulerOptions so;
  so.official_sigma_sharing = true;
  auto scheduler = sched::make_scheduler("dpmsolver++", sc, so);
  const auto t = g.at("buffer.t");  // [B, 20]
  scheduler->set_timesteps(t.t().contiguous());
  std::vector<torch::Tensor> xs, es, ts;
  pipeline::DenoiseOptions d;
  d.hook = [&](int64_t, const torch::Tensor& tt, const torch::Tensor& x, const torch::Tensor& e) {
    ts.push_back(tt.clone());
    xs.push_back(x.clone());
    es.push_back(e.clone());
  };
  pipeline::Conditioning cond;
  cond.embeds = g.at("buffer.c");
  pipeline::denoise(policy, *scheduler, g.at("buffer.xt").select(1, 0).clone(), cond, d);
  const auto xt = torch::stack(xs, 1), eps = torch::stack(es, 1);
  EXPECT_TRUE(torch::equal(torch::stack(ts, 1), t));
  const auto& ref_xt = g.at("buffer.xt");
  const auto& ref_eps = g.at("buffer.eps");
  EXPECT_TRUE(test::allclose(xt, ref_xt, 1e-3 * std::max(1.0, ref_xt.abs().max().item<double>())));
  EXPECT_TRUE(test::allclose(eps, ref_eps, 1e-3 * std::max(1.0, ref_eps.abs().max().item<double>())));
}

}  // namespace
}  // namespace dro::train
