// Data-parallel training with two Gloo ranks on loopback: gradient averaging, identical weights,
// rank-0-only files, exact resume of a 2-rank state (two trainer threads in this process); then
// the real program: `dro launch`, a resume on another world size, and a rank killed mid-run.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "dro/core/error.h"
#include "dist/dist_helpers.h"
#include "dro/dist/process_group.h"
#include "dro/io/json.h"
#include "dro/io/safetensors.h"
#include "dro/models/unet.h"
#include "dro/train/trainer.h"
#include "test_util.h"
#include "train/train_helpers.h"

namespace dro::train {
namespace {
namespace fs = std::filesystem;


std::shared_ptr<dist::Group> join(int rank, int port) {
  dist::Env e;
  e.rank = rank;
  e.world_size = 2;
  e.local_rank = rank;
  e.local_world_size = 2;
  e.master_port = port;
  dist::GroupOptions o;
  o.backend = "gloo";
  o.timeout = std::chrono::seconds(60);
  return dist::init_process_group(e, o);
}

// Runs fn(rank, group) for ranks 0 and 1 on two threads; returns what each returned.
template <class F>
auto two_ranks(F fn) {
  const int port = dist::find_free_port();
  auto r1 = std::async(std::launch::async, [&] { return fn(1, join(1, port)); });
  auto r0 = fn(0, join(0, port));
  return std::make_pair(std::move(r0), r1.get());
}

std::vector<torch::Tensor> copy_params(Trainer& t) {
  std::vector<torch::Tensor> out;
  for (const auto& p : t.unet().parameters()) out.push_back(p.detach().clone());
  return out;
}

std::vector<torch::Tensor> copy_grads(Trainer& t) {
  std::vector<torch::Tensor> out;
  for (const auto& p : t.unet().parameters())
    out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return out;
}

// Each rank's logdir is its own, so a file written by rank 1 would show.
TrainConfig rank_config(const test::TempDir& tmp, const std::string& run, int rank, int64_t steps) {
  auto c = test::tiny_config("tiny-sd15", tmp / "data", tmp / cat(run, "-rank", rank));
  c.num_steps = steps;
  return c;
}

TEST(DistributedTraining, AveragedGradientsIdenticalWeightsRankZeroFiles) {
  DRO_REQUIRE_GLOO();
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 6);
  struct Result {
    std::vector<torch::Tensor> local, averaged, final_params;
  };
  auto [r0, r1] = two_ranks([&](int rank, std::shared_ptr<dist::Group> g) {
    TrainerOptions o;
    o.group = g;
    Trainer t(rank_config(tmp, "run", rank, 6), o);
    Result r;
    t.micro_step();  // half of an accumulation: the gradients are still this rank's own
    r.local = copy_grads(t);
    t.average_gradients();
    r.averaged = copy_grads(t);
    t.run();  // on to 6 micro-steps = 3 optimiser updates, saving every 2
    r.final_params = copy_params(t);
    return r;
  });
  ASSERT_EQ(r0.local.size(), r1.local.size());
  bool ranks_differ = false;
  for (size_t i = 0; i < r0.local.size(); ++i) {
    ranks_differ |= !r0.local[i].equal(r1.local[i]);
    const auto mean = (r0.local[i] + r1.local[i]) / 2;
    EXPECT_TRUE(test::allclose(r0.averaged[i], mean, 1e-7)) << "parameter " << i;
    EXPECT_TRUE(r0.averaged[i].equal(r1.averaged[i])) << "parameter " << i;
  }
  EXPECT_TRUE(ranks_differ) << "both ranks saw the same data and noise";
  for (size_t i = 0; i < r0.final_params.size(); ++i)
    EXPECT_TRUE(r0.final_params[i].equal(r1.final_params[i])) << "parameter " << i << " differs across ranks";
  // Rank 0 wrote everything, rank 1 nothing.
  EXPECT_FALSE(fs::exists(tmp / "run-rank1"));
  for (const char* f : {"state/unet.safetensors", "state/rank-0.safetensors", "state/rank-1.safetensors",
                        "ckpt-6/unet/diffusion_pytorch_model.safetensors", "metrics.jsonl"})
    EXPECT_TRUE(fs::exists(tmp / "run-rank0" / f)) << f;
  const auto st = io::read_json(tmp / "run-rank0/state/training_state.json");
  EXPECT_EQ(st.at("world_size").get<int>(), 2);
  EXPECT_EQ(st.at("step").get<int>(), 6);
  // The two ranks' buffers hold different trajectories (own seeds, own data shards).
  auto b0 = io::load_safetensors(tmp / "run-rank0/state/rank-0.safetensors");
  auto b1 = io::load_safetensors(tmp / "run-rank0/state/rank-1.safetensors");
  EXPECT_FALSE(b0.at("buffer/x0").equal(b1.at("buffer/x0")));
  EXPECT_FALSE(b0.at("rng/filler").equal(b1.at("rng/filler")));
}

TEST(DistributedTraining, TwoRankStateResumesExactly) {
  DRO_REQUIRE_GLOO();
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 6);
  auto train = [&](const std::string& run, int64_t steps, bool resume) {
    two_ranks([&](int rank, std::shared_ptr<dist::Group> g) {
      TrainerOptions o;
      o.group = g;
      auto c = rank_config(tmp, run, rank, steps);
      c.resume = resume;
      Trainer t(c, o);
      t.run();
      return t.step();
    });
  };
  train("straight", 6, false);
  train("resumed", 2, false);
  train("resumed", 6, true);
  for (const char* f : {"unet", "ema", "optimizer", "rank-0", "rank-1"}) {
    auto a = io::load_safetensors(tmp / "straight-rank0/state" / (std::string(f) + ".safetensors"));
    auto b = io::load_safetensors(tmp / "resumed-rank0/state" / (std::string(f) + ".safetensors"));
    ASSERT_EQ(a.size(), b.size()) << f;
    for (const auto& [k, v] : a) EXPECT_TRUE(v.equal(b.at(k))) << f << ": " << k;
  }
}

// LoRA on two ranks: the adapters' gradients are averaged, so every save (which compares the
// ranks' weight fingerprints and refuses on a difference) passes, and rank 0 writes the files.
TEST(DistributedTraining, TwoRankLoraKeepsTheAdaptersIdentical) {
  DRO_REQUIRE_GLOO();
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 6);
  auto steps = two_ranks([&](int rank, std::shared_ptr<dist::Group> g) {
    TrainerOptions o;
    o.group = g;
    auto c = rank_config(tmp, "lora", rank, 4);
    c.lora_rank = 2;
    Trainer t(c, o);
    t.run();
    return t.step();
  });
  EXPECT_EQ(steps.first, 4);
  EXPECT_EQ(steps.second, 4);
  EXPECT_FALSE(fs::exists(tmp / "lora-rank1"));
  for (const char* f : {"ckpt-4/pytorch_lora_weights.safetensors", "ckpt-4/lora_kohya.safetensors",
                        "state/rank-1.safetensors"})
    EXPECT_TRUE(fs::exists(tmp / "lora-rank0" / f)) << f;
  const auto st = io::read_json(tmp / "lora-rank0/state/training_state.json");
  EXPECT_EQ(st.at("world_size").get<int>(), 2);
}

// Diffusion-KTO on two ranks: the reference point z is the mean implicit reward over both ranks'
// batches (clamped at 0), so with one micro-step per update each logged z equals max(0, the
// logged mean reward); both ranks end with the same weights.
TEST(DistributedTraining, KtoReferencePointOverBothRanks) {
  DRO_REQUIRE_GLOO();
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 2);
  {
    std::ofstream labels(tmp / "labels.jsonl");
    for (int i = 0; i < 8; ++i)
      labels << R"({"caption": "a cat", "image": "data/00)" << i % 2 << "/00" << i % 2 << R"(.png", "label": )"
             << (i % 2) << "}\n";
  }
  auto [p0, p1] = two_ranks([&](int rank, std::shared_ptr<dist::Group> g) {
    TrainerOptions o;
    o.group = g;
    auto c = rank_config(tmp, "kto", rank, 8);
    c.objective = "kto";
    c.train_dataset = (tmp / "labels.jsonl").string();
    c.gradient_accumulation_steps = 1;
    c.batch_size = 1;  // each rank's mean reward is one image's: of either sign, the mean over ranks too
    c.random_drop_prompt_probability = 0;
    Trainer t(c, o);
    t.run();
    return copy_params(t);
  });
  for (size_t i = 0; i < p0.size(); ++i) EXPECT_TRUE(p0[i].equal(p1[i])) << "parameter " << i;
  const auto rows = test::metric_rows(tmp / "kto-rank0");
  ASSERT_EQ(rows.size(), 8u);
  for (const auto& r : rows) {
    std::cout << "mean reward " << r["loss/reward"].get<double>() << ", reference point "
              << r["loss/reference_point"].get<double>() << "\n";
    EXPECT_NEAR(r["loss/reference_point"].get<double>(), std::max(0.0, r["loss/reward"].get<double>()), 1e-7)
        << r.dump();
  }
}


// ---- the real program ------------------------------------------------------------------------

std::string train_flags(const test::TempDir& tmp, const std::string& logdir, int steps, int checkpointing = 2,
                        int timeout = 60) {
  return cat(" train --model ", (test::fixtures() / "tiny-sd15").string(), " --train-dataset ", (tmp / "data").string(),
             " --logdir ", (tmp / logdir).string(),
             " --resolution 32 --batch-size 2 --gradient-accumulation-steps 2 --num-steps ", steps,
             " --buffer-size 4 --buffer-batch-size 2 --buffer-num-inference-steps 4 --buffer-update-steps 2"
             " --device cpu --dist-backend gloo --checkpointing-steps ", checkpointing, " --dist-timeout ", timeout);
}

TEST(DistributedCli, LaunchTwoRanksThenResumeOnOne) {
  DRO_REQUIRE_GLOO();
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 6);
  auto [rc, out] = test::run_command(cat(DRO_BINARY, " launch --nproc 2 --master-port 0 --", train_flags(tmp, "run", 4)));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Effective batch size    : 8 (2 x 2 accumulation x 2 processes)"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(tmp / "run/state/rank-1.safetensors"));
  EXPECT_TRUE(fs::exists(tmp / "run/ckpt-4/unet/config.json"));
  // One process continues the 2-rank state, saying what it re-draws.
  std::tie(rc, out) = test::run_command(cat(DRO_BINARY, train_flags(tmp, "run", 6), " --resume"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("was saved by 2 rank(s), this run has 1"), std::string::npos) << out;
  const auto st = io::read_json(tmp / "run/state/training_state.json");
  EXPECT_EQ(st.at("world_size").get<int>(), 1);
  EXPECT_EQ(st.at("step").get<int>(), 6);
}

// Starts `dro train` as rank `rank` of 2 (stdout/stderr to `log`); returns its pid.
pid_t start_rank(int rank, int port, const std::string& flags, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("RANK", std::to_string(rank).c_str(), 1);
    ::setenv("WORLD_SIZE", "2", 1);
    ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);
    ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    const std::string cmd = cat("exec ", DRO_BINARY, flags, " > ", log.string(), " 2>&1");
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  return pid;
}

TEST(DistributedCli, KilledRankMakesThePeerExitWithAnError) {
  DRO_REQUIRE_GLOO();
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  test::write_experts(tmp / "data", 6);
  const int port = dist::find_free_port();
  const std::string flags = train_flags(tmp, "run", 100000, /*checkpointing=*/4, /*timeout=*/30);
  const pid_t p0 = start_rank(0, port, flags, tmp / "rank0.log");
  const pid_t p1 = start_rank(1, port, flags, tmp / "rank1.log");
  // Wait until training is under way (rank 0 has saved a state), then kill rank 1 outright.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  int s0 = 0, s1 = 0;
  bool exited = false;
  while (!fs::exists(tmp / "run/state/training_state.json") && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(p0, &s0, WNOHANG) == p0 || ::waitpid(p1, &s1, WNOHANG) == p1) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (exited || !fs::exists(tmp / "run/state/training_state.json")) {
    ::kill(p0, SIGKILL);
    ::kill(p1, SIGKILL);
    std::ifstream in(tmp / "rank0.log");
    FAIL() << "training never got under way; rank 0's log:\n" << std::string(std::istreambuf_iterator<char>(in), {});
  }
  ::kill(p1, SIGKILL);
  ::waitpid(p1, &s1, 0);
  const auto t0 = std::chrono::steady_clock::now();
  pid_t done = 0;
  while ((done = ::waitpid(p0, &s0, WNOHANG)) == 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (done == 0) {
    ::kill(p0, SIGKILL);
    ::waitpid(p0, &s0, 0);
    FAIL() << "rank 0 still running 120 s after its peer died";
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ifstream in(tmp / "rank0.log");
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(s0)) << log;
  EXPECT_NE(WEXITSTATUS(s0), 0) << log;
  EXPECT_NE(log.find("error: [dist] rank 0/2"), std::string::npos) << log;
  std::cerr << "rank 0 exited " << secs << " s after rank 1 was killed\n";
  // The last complete state is still there and readable.
  EXPECT_NO_THROW(io::read_json(tmp / "run/state/training_state.json"));
}

}  // namespace
}  // namespace dro::train
