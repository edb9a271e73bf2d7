// `dro launch`: starts N copies of a dro command on this machine with the environment torchrun
// gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// watches them, and stops the others as soon as one fails.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/dist/process_group.h"

namespace dro::app {
namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

std::string describe(int status) {
  if (WIFEXITED(status)) return cat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return cat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return "stopped";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

struct LaunchOptions {
  int nproc = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double grace = 10;
  std::vector<std::string> args;
};

int launch(const LaunchOptions& o) {
  if (o.nproc < 1) throw UsageError("[launch] --nproc must be at least 1");
  if (o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw UsageError(cat("[launch] --node-rank ", o.node_rank, " must be in [0, --nnodes ", o.nnodes, ")"));
  if (o.args.empty()) throw UsageError("[launch] no command given: dro launch --nproc N -- train ...");
  if (o.args[0] == "launch") throw UsageError("[launch] the command to launch cannot be `launch`");
  int port = o.master_port;
  if (port == 0) {
    if (o.nnodes > 1) throw UsageError("[launch] --master-port 0 (pick one) works on a single machine only");
    port = dist::find_free_port();
  }
  const int world = o.nproc * o.nnodes;
  const std::string exe = executable_path().string();
  if (exe.empty()) throw Error("[launch] cannot find this program's path (/proc/self/exe)");
  std::string threads;
  if (!std::getenv("OMP_NUM_THREADS")) {
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    threads = std::to_string(std::max(1u, hw / static_cast<unsigned>(o.nproc)));
  }
  std::cerr << "[launch] " << o.nproc << " process(es) on node " << o.node_rank << " of " << o.nnodes
            << ", world size " << world << ", rendezvous " << o.master_addr << ":" << port
            << (threads.empty() ? std::string() : ", OMP_NUM_THREADS=" + threads) << "\n";

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::map<pid_t, int> running;  // pid -> rank
  for (int local = 0; local < o.nproc; ++local) {
    const int rank = o.node_rank * o.nproc + local;
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(cat("[launch] fork failed: ", std::strerror(errno)));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      if (!threads.empty()) ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(exe.c_str()));
      for (const auto& a : o.args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      std::cerr << "[launch] cannot run " << exe << ": " << std::strerror(errno) << "\n";
      std::_Exit(127);
    }
    running[pid] = rank;
  }

  int result = 0;
  bool stopping = false;
  std::chrono::steady_clock::time_point kill_at;
  auto stop_all = [&](int sig) {
    for (const auto& [pid, rank] : running) ::kill(pid, sig);
  };
  while (!running.empty()) {
    if (g_signal && !stopping) {
      std::cerr << "[launch] received signal " << g_signal << "; stopping every rank\n";
      result = 128 + g_signal;
      stopping = true;
      stop_all(SIGTERM);
      kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace * 1000));
    }
    if (stopping && std::chrono::steady_clock::now() >= kill_at) {
      stop_all(SIGKILL);
      kill_at = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const int rank = it->second;
    running.erase(it);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && !stopping) {
      std::cerr << "[launch] rank " << rank << " (pid " << pid << ") " << describe(status)
                << "; stopping the other ranks\n";
      result = exit_code(status);
      stopping = true;
      stop_all(SIGTERM);
      kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace * 1000));
    }
  }
  return result;
}

}  // namespace

Action register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch",
      "Run a dro command as N processes of one data-parallel job on this machine (the torchrun "
      "equivalent; torchrun --no-python and srun work too). Each process gets RANK, WORLD_SIZE, "
      "LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; when one fails the others are "
      "stopped. Example: dro launch --nproc 2 -- train --model M --train-dataset D --logdir L");
  auto o = std::make_shared<LaunchOptions>();
  cmd->add_option("--nproc,--nproc-per-node", o->nproc,
                  "processes on this machine (one per GPU on CUDA)")->capture_default_str();
  cmd->add_option("--nnodes", o->nnodes, "machines in the job")->capture_default_str();
  cmd->add_option("--node-rank", o->node_rank, "this machine's index in [0, nnodes)")->capture_default_str();
  cmd->add_option("--master-addr", o->master_addr, "address of the machine running rank 0")->capture_default_str();
  cmd->add_option("--master-port", o->master_port,
                  "rank 0's rendezvous port (0: pick a free one, single machine only)")->capture_default_str();
  cmd->add_option("--grace", o->grace,
                  "seconds between SIGTERM and SIGKILL when stopping the ranks")->capture_default_str();
  cmd->add_option("command", o->args, "the dro command and its options, after --")->required();
  return [o]() { return launch(*o); };
}

}  // namespace dro::app
