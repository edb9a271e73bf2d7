// Data-parallel communication on torch's c10d process groups: Gloo for CPU tensors, NCCL for CUDA
// tensors. Processes find each other through the standard launcher environment (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a c10d TCPStore on rank 0, so
// `torchrun --no-python`, SLURM `srun` and `dro launch` start the same program unchanged.
// A single process gets a group of one whose collectives are no-ops.
//
// Every collective waits at most the group's timeout; a peer that died, or never arrived, turns
// into a dro::Error naming the operation and the timeout on every surviving rank.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/safetensors.h"

namespace dro::dist {

// The launcher's environment.
struct Env {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  // Reads the variables; a single process when WORLD_SIZE is unset. UsageError naming the variable
  // when one is malformed, out of range or missing (RANK without WORLD_SIZE, ...).
  static Env from_environment();
  bool distributed() const { return world_size > 1; }
};

struct GroupOptions {
  std::string backend = "auto";  // auto (NCCL for CUDA, else Gloo) | gloo | nccl
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  torch::Device device = torch::kCPU;  // where the trainer's tensors live
};

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  bool is_main() const { return rank() == 0; }

  // In place: every tensor becomes the mean of its values over the ranks. Tensors are packed into
  // flat buckets of about `bucket_bytes` (per dtype) and the buckets' reductions run concurrently.
  virtual void all_reduce_mean(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20) = 0;
  // In place: every rank receives rank `root`'s values.
  virtual void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0) = 0;
  // Element-wise sum over the ranks (scalar metrics, fingerprints).
  virtual std::vector<double> all_reduce_sum(const std::vector<double>& values) = 0;
  // Row r of the result is rank r's `values` (all ranks pass the same length).
  std::vector<std::vector<double>> all_gather(const std::vector<double>& values);
  virtual void barrier() = 0;
  // Point to point: named tensors of any dtype and shape (CPU on arrival). Blocking.
  virtual void send(const io::NamedTensors& tensors, int dst) = 0;
  virtual std::map<std::string, torch::Tensor> recv(int src) = 0;
};

// A group of one process.
std::shared_ptr<Group> single_process_group();

// Joins the group described by `env` (a group of one when env.world_size == 1). UsageError for a
// backend this build lacks; Error when the rendezvous does not complete within the timeout.
std::shared_ptr<Group> init_process_group(const Env& env, const GroupOptions& options);

// A TCP port that was free a moment ago on this machine (`dro launch --master-port 0`, tests).
int find_free_port();

// Backends compiled into this build ("gloo", "nccl").
std::vector<std::string> available_backends();

}  // namespace dro::dist
