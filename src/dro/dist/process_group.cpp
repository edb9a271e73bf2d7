#include "dro/dist/process_group.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <iostream>

#include <nlohmann/json.hpp>

#include "dro/core/error.h"

#if defined(DRO_WITH_GLOO) || defined(DRO_WITH_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef DRO_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef DRO_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace dro::dist {
namespace {

// ---- environment -----------------------------------------------------------------------------

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int parse_int(const char* name, const char* value, int lo, int hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value, &end, 10);
  if (errno || end == value || *end || v < lo || v > hi)
    throw UsageError(cat("[dist] environment variable ", name, "='", value, "': expected an integer in [", lo,
                         ", ", hi, "]"));
  return static_cast<int>(v);
}

// The first of `names` that is set, with its name.
std::pair<const char*, const char*> first_set(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = env_or_null(n)) return {n, v};
  return {nullptr, nullptr};
}

// An exception's message without LibTorch's C++ stack trace.
std::string short_message(const std::exception& e) {
  std::string msg = e.what();
  if (const auto nl = msg.find("\nException raised from"); nl != std::string::npos) msg.resize(nl);
  return msg;
}

std::string timeout_hint(std::chrono::milliseconds timeout) {
  return cat("(a peer exited, or did not answer within ", timeout.count() / 1000.0, " s; see --dist-timeout)");
}

// ---- groups ----------------------------------------------------------------------------------

class LocalGroup final : public Group {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "none"; }
  void all_reduce_mean(const std::vector<torch::Tensor>&, int64_t) override {}
  void broadcast(const std::vector<torch::Tensor>&, int) override {}
  std::vector<double> all_reduce_sum(const std::vector<double>& v) override { return v; }
  void barrier() override {}
  void send(const io::NamedTensors&, int dst) override {
    throw Error(cat("[dist] send to rank ", dst, " in a single-process run"));
  }
  std::map<std::string, torch::Tensor> recv(int src) override {
    throw Error(cat("[dist] receive from rank ", src, " in a single-process run"));
  }
};

#if defined(DRO_WITH_GLOO) || defined(DRO_WITH_NCCL)

// Collectives over one c10d process group class (ProcessGroupGloo or ProcessGroupNCCL; their base
// class differs between LibTorch 1.x and 2.x, their collective methods do not).
template <class PG>
class C10dGroup final : public Group {
  using WorkPtr = decltype(std::declval<PG&>().allreduce(std::declval<std::vector<at::Tensor>&>(),
                                                         c10d::AllreduceOptions()));

 public:
  C10dGroup(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<PG> pg, std::string backend, int rank,
            int size, torch::Device comm_device, std::chrono::milliseconds timeout)
      : store_(std::move(store)), pg_(std::move(pg)), backend_(std::move(backend)), rank_(rank), size_(size),
        comm_device_(comm_device), timeout_(timeout) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return backend_; }

  void all_reduce_mean(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) override {
    torch::NoGradGuard no_grad;
    struct Bucket {
      std::vector<torch::Tensor> members;
      torch::Tensor flat;
      WorkPtr work;
    };
    std::vector<Bucket> buckets;
    std::map<c10::ScalarType, size_t> open;  // dtype -> bucket being filled
    std::map<c10::ScalarType, int64_t> open_bytes;
    for (const auto& t : tensors) {
      if (!t.defined()) throw Error("[dist] all_reduce_mean: undefined tensor");
      const auto dt = t.scalar_type();
      auto it = open.find(dt);
      if (it == open.end() || open_bytes[dt] >= bucket_bytes) {
        buckets.emplace_back();
        it = open.insert_or_assign(dt, buckets.size() - 1).first;
        open_bytes[dt] = 0;
      }
      buckets[it->second].members.push_back(t);
      open_bytes[dt] += t.numel() * t.element_size();
    }
    guarded("gradient all-reduce", [&] {
      for (auto& b : buckets) {  // launch every bucket, then wait: the reductions overlap
        std::vector<torch::Tensor> flat_parts;
        for (const auto& m : b.members) flat_parts.push_back(m.reshape(-1));
        b.flat = torch::cat(flat_parts).to(comm_device_).contiguous();
        std::vector<torch::Tensor> io{b.flat};
        c10d::AllreduceOptions o;
        o.reduceOp = c10d::ReduceOp::SUM;
        o.timeout = timeout_;
        b.work = pg_->allreduce(io, o);
      }
      for (auto& b : buckets) b.work->wait(timeout_);
    });
    for (auto& b : buckets) {
      b.flat.div_(static_cast<double>(size_));
      int64_t offset = 0;
      for (auto& m : b.members) {
        m.copy_(b.flat.narrow(0, offset, m.numel()).view(m.sizes()));
        offset += m.numel();
      }
    }
  }

  void broadcast(const std::vector<torch::Tensor>& tensors, int root) override {
    torch::NoGradGuard no_grad;
    guarded("broadcast", [&] {
      for (const auto& t : tensors) {
        auto buf = t.to(comm_device_).contiguous();
        std::vector<torch::Tensor> io{buf};
        c10d::BroadcastOptions o;
        o.rootRank = root;
        o.timeout = timeout_;
        pg_->broadcast(io, o)->wait(timeout_);
        if (!buf.is_same(t)) t.copy_(buf);
      }
    });
  }

  std::vector<double> all_reduce_sum(const std::vector<double>& values) override {
    auto t = torch::tensor(values, torch::kFloat64).to(comm_device_);
    guarded("metric all-reduce", [&] {
      std::vector<torch::Tensor> io{t};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      o.timeout = timeout_;
      pg_->allreduce(io, o)->wait(timeout_);
    });
    t = t.to(torch::kCPU);
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
  }

  void barrier() override { all_reduce_sum({0.0}); }

  void send(const io::NamedTensors& tensors, int dst) override {
    nlohmann::json header = nlohmann::json::array();
    for (const auto& [name, t] : tensors)
      header.push_back({{"name", name},
                        {"dtype", io::torch_dtype_to_safetensors(t.scalar_type())},
                        {"shape", t.sizes().vec()}});
    const std::string text = header.dump();
    int tag = 0;
    guarded(cat("send to rank ", dst).c_str(), [&] {
      post_send(torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong), dst, tag++);
      auto bytes = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
      std::memcpy(bytes.data_ptr(), text.data(), text.size());
      post_send(bytes, dst, tag++);
      for (const auto& [name, t] : tensors)
        if (t.numel() > 0) post_send(t.detach(), dst, tag++);
    });
  }

  std::map<std::string, torch::Tensor> recv(int src) override {
    std::map<std::string, torch::Tensor> out;
    int tag = 0;
    guarded(cat("receive from rank ", src).c_str(), [&] {
      torch::Tensor len = post_recv(torch::empty({1}, torch::kLong), src, tag++);
      auto bytes = post_recv(torch::empty({len.item<int64_t>()}, torch::kUInt8), src, tag++);
      const auto header = nlohmann::json::parse(
          std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())));
      for (const auto& e : header) {
        const auto dtype = io::safetensors_dtype_to_torch(e.at("dtype").get<std::string>());
        auto t = torch::empty(e.at("shape").get<std::vector<int64_t>>(), dtype);
        if (t.numel() > 0) t = post_recv(t, src, tag++);
        out[e.at("name").get<std::string>()] = t;
      }
    });
    return out;
  }

 private:
  void post_send(const torch::Tensor& t, int dst, int tag) {
    std::vector<torch::Tensor> io{t.to(comm_device_).contiguous()};
    pg_->send(io, dst, tag)->wait(timeout_);
  }
  torch::Tensor post_recv(const torch::Tensor& like, int src, int tag) {
    std::vector<torch::Tensor> io{like.to(comm_device_).contiguous()};
    pg_->recv(io, src, tag)->wait(timeout_);
    return io[0].to(torch::kCPU);
  }

  template <class F>
  void guarded(const char* what, F&& f) {
    try {
      f();
    } catch (const dro::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(cat("[dist] rank ", rank_, "/", size_, ": ", what, " failed: ", short_message(e), " ",
                      timeout_hint(timeout_)));
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<PG> pg_;
  std::string backend_;
  int rank_, size_;
  torch::Device comm_device_;
  std::chrono::milliseconds timeout_;
};

c10::intrusive_ptr<c10d::Store> connect_store(const Env& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(env.master_port);
  o.isServer = env.rank == 0;
  o.numWorkers = static_cast<size_t>(env.world_size);
  o.waitWorkers = true;
  o.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  } catch (const std::exception& e) {
    throw Error(cat("[dist] rank ", env.rank, "/", env.world_size, ": rendezvous at ", env.master_addr, ":",
                    env.master_port, " failed: ", short_message(e), " ", timeout_hint(timeout)));
  }
}

#endif  // DRO_WITH_GLOO || DRO_WITH_NCCL

}  // namespace

Env Env::from_environment() {
  Env e;
  // torchrun / dro launch variables first, then SLURM's (srun without a wrapper script; only inside
  // an srun step, so a plain `dro train` in a multi-task batch script stays a single process).
  const auto [ws_name, ws] = first_set({"WORLD_SIZE", "SLURM_NTASKS"});
  if (!ws) return e;
  if (std::string(ws_name) == "SLURM_NTASKS" && !env_or_null("SLURM_STEP_ID")) return e;
  e.world_size = parse_int(ws_name, ws, 1, 1 << 20);
  if (e.world_size == 1) return e;
  const auto [r_name, r] = first_set({"RANK", "SLURM_PROCID"});
  if (!r) throw UsageError(cat("[dist] ", ws_name, "=", ws, " but RANK is not set"));
  e.rank = parse_int(r_name, r, 0, e.world_size - 1);
  const auto [lr_name, lr] = first_set({"LOCAL_RANK", "SLURM_LOCALID"});
  e.local_rank = lr ? parse_int(lr_name, lr, 0, e.world_size - 1) : e.rank;
  const auto [lw_name, lw] = first_set({"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"});
  e.local_world_size = lw ? parse_int(lw_name, lw, 1, e.world_size) : e.world_size;
  const char* addr = env_or_null("MASTER_ADDR");
  if (!addr) throw UsageError(cat("[dist] ", ws_name, "=", ws, " but MASTER_ADDR is not set (rank 0's host)"));
  e.master_addr = addr;
  const char* port = env_or_null("MASTER_PORT");
  if (!port) throw UsageError(cat("[dist] ", ws_name, "=", ws, " but MASTER_PORT is not set"));
  e.master_port = parse_int("MASTER_PORT", port, 1, 65535);
  return e;
}

std::vector<std::vector<double>> Group::all_gather(const std::vector<double>& values) {
  const size_t n = values.size();
  std::vector<double> slots(n * size(), 0.0);
  std::copy(values.begin(), values.end(), slots.begin() + n * rank());
  const auto sum = all_reduce_sum(slots);  // adding zeros is exact
  std::vector<std::vector<double>> rows(size());
  for (int r = 0; r < size(); ++r) rows[r].assign(sum.begin() + n * r, sum.begin() + n * (r + 1));
  return rows;
}

int find_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(a);
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) throw Error("[dist] could not find a free TCP port; pass one (--master-port / MASTER_PORT)");
  return ntohs(a.sin_port);
}

std::shared_ptr<Group> single_process_group() { return std::make_shared<LocalGroup>(); }

std::vector<std::string> available_backends() {
  std::vector<std::string> b;
#ifdef DRO_WITH_GLOO
  b.push_back("gloo");
#endif
#ifdef DRO_WITH_NCCL
  b.push_back("nccl");
#endif
  return b;
}

std::shared_ptr<Group> init_process_group(const Env& env, const GroupOptions& options) {
  if (env.world_size <= 1) return single_process_group();
  std::string backend = options.backend;
  if (backend == "auto") backend = options.device.is_cuda() ? "nccl" : "gloo";
  const auto avail = available_backends();
  if (backend != "gloo" && backend != "nccl")
    throw UsageError(cat("[dist] --dist-backend '", options.backend, "': expected auto, gloo or nccl"));
  if (std::find(avail.begin(), avail.end(), backend) == avail.end())
    throw UsageError(cat("[dist] the ", backend, " backend is not in this build (built with: ",
                         avail.empty() ? std::string("none") : avail.front() + (avail.size() > 1 ? ", nccl" : ""),
                         "); rebuild with -DDRO_WITH_", backend == "gloo" ? "GLOO" : "NCCL", "=ON"));
  if (backend == "nccl" && !options.device.is_cuda())
    throw UsageError("[dist] the nccl backend needs --device cuda; use --dist-backend gloo on CPU");
#if defined(DRO_WITH_GLOO) || defined(DRO_WITH_NCCL)
  auto store = connect_store(env, options.timeout);
#endif
#ifdef DRO_WITH_GLOO
  if (backend == "gloo") {
    auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
    if (const char* ifname = env_or_null("GLOO_SOCKET_IFNAME")) {
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    try {
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, o);
      return std::make_shared<C10dGroup<c10d::ProcessGroupGloo>>(store, pg, "gloo", env.rank, env.world_size,
                                                                 torch::kCPU, options.timeout);
    } catch (const std::exception& e) {
      throw Error(cat("[dist] rank ", env.rank, "/", env.world_size, ": Gloo connection via ", env.master_addr, ":",
                      env.master_port, " failed: ", short_message(e), " ", timeout_hint(options.timeout)));
    }
  }
#endif
#ifdef DRO_WITH_NCCL
  if (backend == "nccl") {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(options.device.has_index() ? options.device.index() : 0));
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = options.timeout;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, o);
    return std::make_shared<C10dGroup<c10d::ProcessGroupNCCL>>(store, pg, "nccl", env.rank, env.world_size,
                                                               options.device, options.timeout);
  }
#endif
  throw UsageError(cat("[dist] backend ", backend, " unavailable"));
}

}  // namespace dro::dist
