#!/usr/bin/env bash
# The CUDA check on a GPU machine with a pip `torch` (CUDA LibTorch 2.x) and no package manager:
# unpacks the carried header-only Debian packages (.deps/debs, from scripts/fetch_deps.sh) into
# .deps/usr, builds against the wheel's LibTorch, runs the test suite (CUDA parity tests included)
# and the benchmarks, and prints a summary. Output goes to ${OUT:-/tmp/dro-cuda}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/dro-cuda}"
mkdir -p "$OUT" .deps/usr
rm -rf .deps/usr-root; mkdir -p .deps/usr-root
for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/usr-root; done
rm -rf .deps/usr && mv .deps/usr-root/usr .deps/usr && rm -rf .deps/usr-root
TORCH_PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DDRO_FIXTURES_DIR="$PWD/.deps/fixtures" -DDRO_WITH_GLOO=OFF > "$OUT/configure.log" 2>&1 || { tail -50 "$OUT/configure.log"; exit 1; }
cmake --build build-cuda -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|Error" -A5 "$OUT/build.log" | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
(cd build-cuda && ctest --output-on-failure -j 4 > "$OUT/ctest.log" 2>&1); tail -25 "$OUT/ctest.log"
grep -E "max \|diff\|" "$OUT/ctest.log" | head -40 > "$OUT/cuda_diffs.txt" || true
./build-cuda/dro_tests --gtest_filter='Cuda*' > "$OUT/cuda_tests.log" 2>&1; grep -E "OK|FAILED|max" "$OUT/cuda_tests.log" | head -40
if [[ -x build-cuda/dro_bench ]]; then ./build-cuda/dro_bench --benchmark_min_time=0.2 > "$OUT/bench.txt" 2>&1; tail -20 "$OUT/bench.txt"; fi
cat "$OUT/summary.txt"
