#!/usr/bin/env bash
# The CUDA check on a GPU machine with a pip `torch` (CUDA LibTorch 2.x) and no package manager.
# Needs .deps/debs (scripts/fetch_deps.sh: header-only Debian packages) and .deps/fixtures (a copy of
# the golden fixtures). Unpacks the packages into .deps/usr, builds against the wheel's LibTorch
# (NCCL, and Gloo when the wheel ships its headers), runs the test suite (CUDA parity tests
# included), multi-process training and the benchmarks; prints a summary. (GPU pretraining of the
# preference world's base model: scripts/gpu_pretrain.sh.)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/dro-cuda}"
source scripts/cuda_env.sh
build_dro || exit 1
echo "build dro: $(elapsed) s, warnings: $(grep -c 'warning:' "$OUT/build.log")" | tee -a "$S"
DRO=./build-cuda/dro

cmake --build build-cuda -j "$(nproc)" > "$OUT/build-tests.log" 2>&1 || { grep -E "error" -A6 "$OUT/build-tests.log" | head -40; }
echo "build all: $(elapsed) s" | tee -a "$S"
(cd build-cuda && timeout 300 ctest -j 8 --output-on-failure > "$OUT/ctest.log" 2>&1)
grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest.log" | head -30 | tee -a "$S"
./build-cuda/dro_tests --gtest_filter='Cuda*' 2>&1 | grep -E "^\[cuda\]|OK \]|FAILED" | tee -a "$S"

# Multi-process training on the GPU: 2 ranks with each backend this build has.
mkdir -p /tmp/experts && python3 - <<'EOF'
import os, struct, zlib, random
random.seed(0)
def png(path, w, h):
    raw = b''.join(b'\x00' + bytes(random.randrange(256) for _ in range(w * 3)) for _ in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
for i in range(8):
    d = f'/tmp/experts/{i:03d}'; os.makedirs(d, exist_ok=True)
    png(f'{d}/{i:03d}.png', 40, 40); open(f'{d}/caption.txt', 'w').write(['a red circle', 'two cats'][i % 2])
EOF
GPUS=$(nvidia-smi -L | wc -l)
for be in nccl gloo; do
  if [ $be = nccl ] && [ "$GPUS" -lt 2 ]; then echo "dist: nccl needs 2 GPUs, this machine has $GPUS" | tee -a "$S"; continue; fi
  if [ $be = gloo ] && [ "$GLOO" = OFF ]; then echo "dist: no gloo in this build" | tee -a "$S"; continue; fi
  echo "dist: 2 ranks, backend $be, cuda:" | tee -a "$S"
  timeout 120 $DRO launch --nproc 2 --master-port 0 -- train --model .deps/fixtures/tiny-sd15 \
    --train-dataset /tmp/experts --logdir /tmp/dist-$be --resolution 32 --batch-size 2 \
    --gradient-accumulation-steps 2 --num-steps 8 --buffer-size 4 --buffer-batch-size 2 \
    --buffer-num-inference-steps 4 --checkpointing-steps 4 --device cuda --dist-backend $be \
    --dist-timeout 60 --quiet > "/tmp/dist-$be.log" 2>&1
  echo "  exit $? ; $(grep -E 'Processes|error' /tmp/dist-$be.log | head -3 | tr '\n' ' ')" | tee -a "$S"
  ls /tmp/dist-$be/state 2>/dev/null | tr '\n' ' ' | tee -a "$S"; echo | tee -a "$S"
done

$DRO bench model --like .deps/fixtures/tiny-sd15 --block-out-channels 128,256,512,512 --heads 8 \
  --sample-size 32 --out /tmp/bench-model >> "$S" 2>&1
for mp in no bf16; do
  echo "bench train (cuda, mixed precision $mp, 128 px, batch 4, 20 DPM++ steps):" | tee -a "$S"
  timeout 100 $DRO bench train --model /tmp/bench-model --resolution 128 --batch-size 4 \
    --gradient-accumulation-steps 4 --buffer-size 4 --buffer-batch-size 4 --buffer-update-steps 4 \
    --mixed-precision $mp --device cuda --steps 8 --warmup 2 --json 2>&1 | tee -a "$S" | grep -E "per_second|buffer_sampling|trained|backward|reference"
done

rm -f "$OUT/configure.log"
echo "total $(elapsed) s"
echo "== summary"; cat "$S"
