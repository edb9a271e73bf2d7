// Trainer building blocks: LR schedules, EMA decay rule, TensorBoard framing, replay buffer,
// and the DRO loss on denoisers whose losses are known in closed form.
#include <fstream>

#include "dro/core/error.h"
#include "dro/train/ema.h"
#include "dro/train/lr_schedule.h"
#include "dro/train/objectives/dro.h"
#include "dro/train/replay_buffer.h"
#include "dro/train/tensorboard.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"

namespace dro::train {
namespace {

TEST(LrSchedule, MatchesDiffusersFormulas) {
  LrSchedule s;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.name = "constant";
  EXPECT_DOUBLE_EQ(s.factor(0), 1.0);  // diffusers' constant ignores warmup
  s.name = "constant_with_warmup";
  EXPECT_DOUBLE_EQ(s.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(s.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);
  s.name = "linear";
  EXPECT_DOUBLE_EQ(s.factor(60), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(110), 0.0);
  s.name = "cosine";
  EXPECT_NEAR(s.factor(60), 0.5, 1e-12);
  EXPECT_NEAR(s.factor(10), 1.0, 1e-12);
  s.name = "cosine_with_restarts";
  s.num_cycles = 2;
  EXPECT_NEAR(s.factor(35), 0.5, 1e-12);  // a quarter through: half-way down the first cycle
  EXPECT_NEAR(s.factor(60), 1.0, 1e-12);  // restart
  s.name = "polynomial";
  s.base_lr = 1e-4;
  s.power = 2.0;
  EXPECT_NEAR(s.lr(60), (1e-4 - 1e-7) * 0.25 + 1e-7, 1e-15);
  EXPECT_NEAR(s.lr(500), 1e-7, 1e-15);
  s.name = "nope";
  EXPECT_THROW(s.validate(), UsageError);
}

TEST(Ema, DiffusersDecayRule) {
  auto p = torch::zeros({3});
  Ema ema({p}, 0.9999);
  EXPECT_DOUBLE_EQ(ema.decay_at(1), 0.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(2), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(ema.decay_at(1601), std::min(0.9999, 1601.0 / 1610.0));
  p.fill_(1.0);
  ema.update({p});  // decay 0: copy
  EXPECT_FLOAT_EQ(ema.shadow()[0][0].item<float>(), 1.0f);
  p.fill_(0.0);
  ema.update({p});  // decay 2/11
  EXPECT_NEAR(ema.shadow()[0][0].item<float>(), 2.0 / 11.0, 1e-7);
  Ema capped({p}, 0.1);
  capped.set_updates(100);
  EXPECT_DOUBLE_EQ(capped.decay_at(101), 0.1);
}

TEST(TensorBoard, Crc32cAndFraming) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32c(s.data(), s.size()), 0xE3069283u);  // the standard check value
  test::TempDir dir;
  std::filesystem::path path;
  {
    TensorBoardWriter w(dir.path());
    w.add_scalar("loss/loss", 0.25, 3);
    w.add_text("config", "{}", 0);
    w.add_session_start(5);
    w.flush();
    path = w.path();
  }
  const std::string bytes = io::read_file(path);
  // Walk the records: each is len(8) crc(4) data(len) crc(4), with valid CRCs.
  size_t pos = 0, records = 0;
  while (pos < bytes.size()) {
    ASSERT_LE(pos + 12, bytes.size());
    uint64_t len;
    std::memcpy(&len, bytes.data() + pos, 8);
    uint32_t len_crc, data_crc;
    std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, masked_crc32c(bytes.data() + pos, 8));
    ASSERT_LE(pos + 12 + len + 4, bytes.size());
    std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, masked_crc32c(bytes.data() + pos + 12, len));
    pos += 12 + len + 4;
    ++records;
  }
  EXPECT_EQ(records, 4u);
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  // The last record: step 5 (field 2, varint) and session_log (field 7) = { status: START (1) }.
  EXPECT_NE(bytes.find(std::string("\x10\x05\x3a\x02\x08\x01", 6)), std::string::npos);
  EXPECT_NE(bytes.find("loss/loss"), std::string::npos);
}

TrajectoryBatch make_batch(int64_t B, int64_t T, float base) {
  TrajectoryBatch b;
  b.c = torch::full({B, 5, 3}, base);
  b.x0 = torch::full({B, 2, 4, 4}, base) + torch::arange(B).view({B, 1, 1, 1});
  b.t = torch::arange(T - 1, -1, -1).repeat({B, 1}) * 10;
  b.xt = torch::arange(T).to(torch::kFloat).view({1, T, 1, 1, 1}).expand({B, T, 2, 4, 4}) + base;
  b.eps = -b.xt;
  return b;
}

TEST(ReplayBuffer, FifoSampleSaveLoad) {
  ReplayBuffer buf(3);
  buf.commit(make_batch(2, 4, 0.f));
  buf.commit(make_batch(2, 4, 100.f));
  EXPECT_EQ(buf.size(), 3);  // oldest row dropped
  auto gen = at::detail::createCPUGenerator(7);
  auto s = buf.sample(3, gen, torch::kCPU);
  // randperm when the batch fits: every row once.
  EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(s.rows)), torch::arange(3)));
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t k = s.steps[i].item<int64_t>();
    EXPECT_EQ(s.t[i].item<int64_t>(), (3 - k) * 10);
    EXPECT_FLOAT_EQ(s.eps[i][0][0][0].item<float>(), -s.xt[i][0][0][0].item<float>());
  }
  auto big = buf.sample(7, gen, torch::kCPU);  // with replacement
  EXPECT_EQ(big.rows.size(0), 7);
  test::TempDir dir;
  buf.save(dir / "buffer.safetensors");
  ReplayBuffer back(3);
  back.load(dir / "buffer.safetensors");
  ASSERT_EQ(back.size(), 3);
  auto a = buf.gather(torch::arange(3), torch::tensor({0, 1, 3}), torch::kCPU);
  auto b = back.gather(torch::arange(3), torch::tensor({0, 1, 3}), torch::kCPU);
  EXPECT_TRUE(torch::equal(a.xt, b.xt));
  EXPECT_TRUE(torch::equal(a.c, b.c));
  EXPECT_TRUE(torch::equal(a.t, b.t));
}

TEST(DroObjective, ClosedFormLosses) {
  // trained(x) = a * x, reference(x) = 0: L = mean((a x - target)^2) per sample.
  auto a = torch::tensor(0.5f, torch::requires_grad());
  Denoiser trained = [&](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&,
                         const torch::Tensor&, const torch::Tensor&) { return a * x; };
  Denoiser reference = [](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&,
                          const torch::Tensor&, const torch::Tensor&) { return torch::zeros_like(x); };
  ObjectiveBatch b;
  b.t = torch::tensor({1, 2});
  b.c = torch::zeros({2, 3, 4});
  b.xt_expert = torch::ones({2, 1, 2, 2});
  b.eps_expert = torch::ones({2, 1, 2, 2});      // L_exp = (a-1)^2 = .25, L_exp_ref = 1
  b.xt_policy = torch::ones({2, 1, 2, 2}) * 2;
  b.eps_policy = torch::zeros({2, 1, 2, 2});     // L_pol = (2a)^2 = 1, L_pol_ref = 0
  b.eps_policy[1].fill_(1.0);                    // row 1: L_pol = (2a-1)^2 = 0, ref = 1
  DroObjective obj(0.001);
  auto out = obj.compute(trained, reference, b);
  // row 0: diff = (.25-1) - (1-0) = -1.75; row 1: diff = (.25-1) - (0-1) = 0.25
  EXPECT_NEAR(out.stats["diff"][0].item<float>(), -1.75, 1e-6);
  EXPECT_NEAR(out.stats["diff"][1].item<float>(), 0.25, 1e-6);
  EXPECT_NEAR(out.loss.item<float>(), (0.25 + 0.001) / 2, 1e-6);
  out.loss.backward();
  // Only row 1 is active: d/da [(a-1)^2 - (2a-1)^2] / 2 = [2(a-1) - 4(2a-1)] / 2 = -0.5 at a = .5
  EXPECT_NEAR(a.grad().item<float>(), -0.5, 1e-6);
  EXPECT_FLOAT_EQ(out.stats["active"][0].item<float>(), 0.f);
}

}  // namespace
}  // namespace dro::train
