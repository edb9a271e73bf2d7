// UNet2DConditionModel speed on the CPU: forward (inference) and forward + backward (training
// step, with and without gradient checkpointing) of a mid-size UNet with the SD1.5 block layout,
// random weights. The model is built from a config written here, so no files are needed.
//   ./build/release/dro_bench --benchmark_filter=Unet
// On a machine shared with other jobs, add OMP_WAIT_POLICY=PASSIVE: spinning OpenMP workers
// otherwise fight the other load and the 2-thread runs become several times slower.
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <torch/torch.h>

#include "dro/models/unet.h"

namespace {

constexpr int64_t kBatch = 4, kLatent = 32, kTokens = 77, kContext = 128;

dro::models::UNetConfig bench_config() {
  const dro::io::OrderedJson j = {
      {"_class_name", "UNet2DConditionModel"},
      {"block_out_channels", {64, 128, 256, 256}},
      {"down_block_types",
       {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
      {"up_block_types",
       {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
      {"layers_per_block", 2},
      {"attention_head_dim", 4},  // the number of heads, as in SD1.5 configs
      {"cross_attention_dim", kContext},
      {"norm_num_groups", 32},
      {"sample_size", kLatent}};
  return dro::models::UNetConfig::from_json(j, "bench config");
}

// torch::set_num_threads sets LibTorch's OpenMP pool; a LibTorch whose matrix products go to
// OpenBLAS (Debian's) also needs OpenBLAS told, or "1 thread" runs gemm on every core.
// Returns whether OpenBLAS was found (reported as a counter).
bool set_threads(int n) {
  torch::set_num_threads(n);
  using SetThreads = void (*)(int);
  auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (f) f(n);
  return f != nullptr;
}

struct Inputs {
  torch::Tensor sample, timesteps, context;
};

Inputs make_inputs() {
  torch::manual_seed(0);
  return {torch::randn({kBatch, 4, kLatent, kLatent}), torch::randint(0, 1000, {kBatch}),
          torch::randn({kBatch, kTokens, kContext})};
}

// Arg(0): intra-op threads.
void BM_UnetForward(benchmark::State& state) {
  const bool openblas = set_threads(static_cast<int>(state.range(0)));
  torch::manual_seed(0);
  dro::models::UNet2DConditionModel unet(bench_config());
  unet->eval();
  const Inputs in = make_inputs();
  torch::InferenceMode guard;
  unet->forward(in.sample, in.timesteps, in.context);  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(unet->forward(in.sample, in.timesteps, in.context));
  state.counters["openblas"] = openblas;
}

// Arg(0): intra-op threads; Arg(1): gradient checkpointing.
void BM_UnetForwardBackward(benchmark::State& state) {
  const bool openblas = set_threads(static_cast<int>(state.range(0)));
  torch::manual_seed(0);
  dro::models::UNet2DConditionModel unet(bench_config());
  unet->set_gradient_checkpointing(state.range(1) != 0);
  const Inputs in = make_inputs();
  const torch::Tensor target = torch::randn_like(in.sample);
  auto step = [&] {
    unet->zero_grad();
    torch::Tensor loss =
        (unet->forward(in.sample, in.timesteps, in.context) - target).square().mean();
    loss.backward();
  };
  step();  // warm-up
  for (auto _ : state) step();
  state.counters["openblas"] = openblas;
}

BENCHMARK(BM_UnetForward)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0)
    ->UseRealTime();
BENCHMARK(BM_UnetForwardBackward)
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({2, 1})
    ->ArgNames({"threads", "ckpt"})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0)
    ->UseRealTime();

}  // namespace
