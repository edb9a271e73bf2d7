// Process groups: environment parsing, and two Gloo ranks on loopback (in two threads of this
// process) for every collective the trainer uses.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "dro/core/error.h"
#include "dro/core/rng.h"
#include "dist/dist_helpers.h"
#include "dro/dist/process_group.h"
#include "test_util.h"

namespace dro::dist {
namespace {

// Sets environment variables for the test's lifetime.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::vector<std::pair<std::string, std::string>> vars) : vars_(std::move(vars)) {
    for (const auto& [k, v] : vars_) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : vars_) ::unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::string>> vars_;
};

TEST(DistEnv, SingleProcessWithoutVariables) {
  const Env e = Env::from_environment();
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.rank, 0);
  EXPECT_FALSE(e.distributed());
}

TEST(DistEnv, ReadsTorchrunVariables) {
  ScopedEnv env({{"WORLD_SIZE", "4"}, {"RANK", "3"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                 {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29555"}});
  const Env e = Env::from_environment();
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "node7");
  EXPECT_EQ(e.master_port, 29555);
}

TEST(DistEnv, FallsBackToSlurmVariables) {
  ScopedEnv env({{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "1"}, {"SLURM_LOCALID", "0"},
                 {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}});
  EXPECT_EQ(Env::from_environment().world_size, 1) << "a batch script outside srun is one process";
  ScopedEnv step({{"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}});
  const Env e = Env::from_environment();
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.local_rank, 0);
}

TEST(DistEnv, RejectsBadValuesByName) {
  {
    ScopedEnv env({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}});
    try {
      Env::from_environment();
      FAIL() << "RANK 2 of 2 accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("RANK='2'"), std::string::npos) << e.what();
    }
  }
  {
    ScopedEnv env({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "1"}});
    EXPECT_THROW(Env::from_environment(), UsageError);  // no MASTER_ADDR
  }
  {
    ScopedEnv env({{"WORLD_SIZE", "two"}, {"RANK", "0"}});
    EXPECT_THROW(Env::from_environment(), UsageError);
  }
}

TEST(DistGroup, SingleProcessCollectivesAreIdentity) {
  auto g = single_process_group();
  auto t = torch::arange(5, torch::kFloat32);
  g->all_reduce_mean({t});
  EXPECT_TRUE(t.equal(torch::arange(5, torch::kFloat32)));
  EXPECT_EQ(g->all_reduce_sum({1.5, 2.0}), (std::vector<double>{1.5, 2.0}));
  EXPECT_THROW(g->recv(1), Error);
}


// Runs fn(group) on two Gloo ranks (threads) joined on a fresh loopback port.
void two_ranks(const std::function<void(Group&)>& fn, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const int port = find_free_port();
  auto rank_main = [&](int rank) {
    Env e;
    e.rank = rank;
    e.world_size = 2;
    e.local_rank = rank;
    e.local_world_size = 2;
    e.master_port = port;
    GroupOptions o;
    o.backend = "gloo";
    o.timeout = timeout;
    auto g = init_process_group(e, o);
    EXPECT_EQ(g->rank(), rank);
    EXPECT_EQ(g->size(), 2);
    EXPECT_EQ(g->backend(), "gloo");
    fn(*g);
  };
  auto r1 = std::async(std::launch::async, rank_main, 1);
  rank_main(0);
  r1.get();
}

TEST(DistGroup, AllReduceMeanOverBucketsAndDtypes) {
  DRO_REQUIRE_GLOO();
  two_ranks([](Group& g) {
    torch::manual_seed(0);
    // The same values on both ranks' views of "rank r's tensor" so each rank knows the expected mean.
    auto make = [](int r) {
      auto gen = make_generator(100 + r);
      return std::vector<torch::Tensor>{torch::randn({7, 3}, gen), torch::randn({1000}, gen),
                                        torch::randn({4}, gen).to(torch::kFloat64), torch::randn({2, 2, 2}, gen)};
    };
    auto mine = make(g.rank());
    const auto a = make(0), b = make(1);
    g.all_reduce_mean(mine, /*bucket_bytes=*/64);  // tiny buckets: one bucket per tensor or so
    for (size_t i = 0; i < mine.size(); ++i) {
      EXPECT_TRUE(test::allclose(mine[i], (a[i] + b[i]) / 2, 1e-6)) << "tensor " << i;
      EXPECT_EQ(mine[i].scalar_type(), a[i].scalar_type());
    }
    auto again = make(g.rank());
    g.all_reduce_mean(again);  // one big bucket per dtype gives the same
    for (size_t i = 0; i < mine.size(); ++i) EXPECT_TRUE(again[i].equal(mine[i])) << "tensor " << i;
  });
}

TEST(DistGroup, BroadcastGatherAndPointToPoint) {
  DRO_REQUIRE_GLOO();
  two_ranks([](Group& g) {
    auto t = torch::full({3, 2}, static_cast<float>(g.rank() + 1));
    auto i = torch::full({2}, static_cast<int64_t>(10 * (g.rank() + 1)));
    g.broadcast({t, i}, /*root=*/1);
    EXPECT_TRUE(t.equal(torch::full({3, 2}, 2.0f)));
    EXPECT_TRUE(i.equal(torch::full({2}, int64_t(20))));

    const auto rows = g.all_gather({double(g.rank()), 0.25 * g.rank() + 1});
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0], (std::vector<double>{0.0, 1.0}));
    EXPECT_EQ(rows[1], (std::vector<double>{1.0, 1.25}));
    EXPECT_EQ(g.all_reduce_sum({1.0, 2.0}), (std::vector<double>{2.0, 4.0}));

    if (g.rank() == 1) {
      g.send({{"weights", torch::arange(6, torch::kFloat32).view({2, 3})},
              {"empty", torch::empty({0, 4})},
              {"rng", torch::arange(5, torch::kUInt8)},
              {"step", torch::tensor({int64_t(42)})},
              {"half", torch::ones({3}, torch::kBFloat16)}},
             0);
    } else {
      auto m = g.recv(1);
      ASSERT_EQ(m.size(), 5u);
      EXPECT_TRUE(m.at("weights").equal(torch::arange(6, torch::kFloat32).view({2, 3})));
      EXPECT_EQ(m.at("empty").sizes(), (std::vector<int64_t>{0, 4}));
      EXPECT_TRUE(m.at("rng").equal(torch::arange(5, torch::kUInt8)));
      EXPECT_EQ(m.at("step").item<int64_t>(), 42);
      EXPECT_EQ(m.at("half").scalar_type(), torch::kBFloat16);
    }
    g.barrier();
  });
}

TEST(DistGroup, MissingPeerFailsWithinTheTimeout) {
  DRO_REQUIRE_GLOO();
  Env e;
  e.rank = 0;
  e.world_size = 2;
  e.master_port = find_free_port();
  GroupOptions o;
  o.backend = "gloo";
  o.timeout = std::chrono::seconds(2);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    init_process_group(e, o);
    FAIL() << "a group of two formed with one rank";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("--dist-timeout"), std::string::npos) << err.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 60.0);
}


TEST(DistGroup, UnknownBackendIsAUsageError) {
  Env e;
  e.world_size = 2;
  GroupOptions o;
  o.backend = "mpi";
  EXPECT_THROW(init_process_group(e, o), UsageError);
}

}  // namespace
}  // namespace dro::dist
