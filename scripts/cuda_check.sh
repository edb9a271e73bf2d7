#!/usr/bin/env bash
# The CUDA check on a GPU machine with a pip `torch` (CUDA LibTorch 2.x) and no package manager.
# Needs .deps/debs (scripts/fetch_deps.sh: header-only Debian packages) and .deps/fixtures (a copy of
# the golden fixtures). Unpacks the packages into .deps/usr, builds against the wheel's LibTorch,
# runs the test suite (CUDA parity tests included) and the benchmarks, and prints a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/dro-cuda}"
mkdir -p "$OUT"
rm -rf .deps/root && mkdir -p .deps/root
for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/root; done
rm -rf .deps/usr && mv .deps/root/usr .deps/usr && rm -rf .deps/root
TORCH_PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } | tee "$OUT/summary.txt"
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DDRO_FIXTURES_DIR="$PWD/.deps/fixtures" -DDRO_BUILD_BENCH=OFF > "$OUT/configure.log" 2>&1 \
  || { tail -40 "$OUT/configure.log"; exit 1; }
cmake --build build-cuda -j "$(nproc)" > "$OUT/build.log" 2>&1 \
  || { grep -E "error" -A6 "$OUT/build.log" | head -100; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s, warnings: $(grep -c 'warning:' "$OUT/build.log")" | tee -a "$OUT/summary.txt"
(cd build-cuda && timeout 420 ctest -j 8 --output-on-failure > "$OUT/ctest.log" 2>&1)
grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest.log" | head -30 | tee -a "$OUT/summary.txt"
./build-cuda/dro_tests --gtest_filter='Cuda*' 2>&1 | grep -E "^\[cuda\]|OK \]|FAILED" | tee -a "$OUT/summary.txt"
DRO=./build-cuda/dro
$DRO bench model --like .deps/fixtures/tiny-sd15 --block-out-channels 128,256,512,512 --heads 8 \
  --sample-size 32 --out /tmp/bench-model >> "$OUT/summary.txt" 2>&1
for mp in no bf16; do
  echo "bench train (cuda, mixed precision $mp, 128 px, batch 4, 20 DPM++ steps):" | tee -a "$OUT/summary.txt"
  timeout 120 $DRO bench train --model /tmp/bench-model --resolution 128 --batch-size 4 \
    --gradient-accumulation-steps 4 --buffer-size 4 --buffer-batch-size 4 --buffer-update-steps 4 \
    --mixed-precision $mp --device cuda --steps 8 --warmup 2 --json 2>&1 | tee -a "$OUT/summary.txt" | grep -E "per_second|buffer_sampling|trained|backward|reference"
done
echo "sample (cuda, 50 DDIM steps, 8 images of 128 px):" | tee -a "$OUT/summary.txt"
/usr/bin/time -f "%e s" $DRO sample --model /tmp/bench-model --prompt "a photo" --images-per-prompt 8 \
  --batch-size 8 --steps 50 --scheduler ddim --device cuda --height 128 --width 128 --out /tmp/samples --quiet 2>&1 | tail -1 | tee -a "$OUT/summary.txt"
cp build-cuda/Testing/Temporary/LastTest.log "$OUT/" 2>/dev/null || true
echo "== summary"; cat "$OUT/summary.txt"
