// Expert-data loading speed: ExpertLoader::next(batch) over a folder of 32x32 PNG examples in
// the official layout, written to a temporary folder here. Shows whether decoding keeps up with
// a fast accelerator at pretraining batch sizes.
//   ./build/release/dro_bench --benchmark_filter=ExpertLoader
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "dro/data/expert_dataset.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"

namespace {
namespace fs = std::filesystem;

constexpr int kExamples = 1024, kSide = 32;

const fs::path& example_folder() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("dro-data-bench-" + std::to_string(::getpid()));
    for (int i = 0; i < kExamples; ++i) {
      const fs::path sub = d / std::to_string(10000 + i);
      fs::create_directories(sub);
      dro::io::Image im(kSide, kSide, 3);
      for (size_t k = 0; k < im.pixels.size(); ++k) im.pixels[k] = static_cast<uint8_t>((k * 7 + i * 13) % 251);
      dro::io::write_png(sub / "image.png", im);
      dro::io::write_file_atomically(sub / "caption.txt", "a red circle on a dark background");
    }
    std::atexit([] { fs::remove_all(dir); });
    return d;
  }();
  return dir;
}

// Arg(0): decoding workers; Arg(1): batch size. Reports examples per second.
void BM_ExpertLoader(benchmark::State& state) {
  const auto dataset = dro::data::ExpertDataset::scan(example_folder());
  dro::data::TransformOptions t;
  t.resolution = kSide;
  t.random_flip = false;
  dro::data::ExpertLoader loader(&dataset, t, 0, state.range(0));
  const int64_t batch = state.range(1);
  for (auto _ : state) benchmark::DoNotOptimize(loader.next(batch).images);
  state.SetItemsProcessed(state.iterations() * batch);
}

BENCHMARK(BM_ExpertLoader)
    ->Args({2, 256})
    ->Args({8, 256})
    ->ArgNames({"workers", "batch"})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

}  // namespace
