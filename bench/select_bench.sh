#!/bin/sh
# dro select throughput and memory on N generated images (default 10000, 64x64 PNG) in a JSONL
# manifest, with the fixture PickScore model. Usage: bench/select_bench.sh [N] [threads]
# Prints images/s and peak RSS (GNU time).
set -eu
N=${1:-10000}
THREADS=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DRO=${DRO:-$ROOT/build/release/dro}
FIX=${FIXTURES:-$ROOT/../shared/fixtures}/scorers/clip-vit-h-14-tiny
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK" "$N" <<'PY'
import json, os, random, struct, sys, zlib
work, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(work, "img"))
rng = random.Random(0)
def png(w, h, data):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    raw = b"".join(b"\0" + data[y * w * 3:(y + 1) * w * 3] for y in range(h))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
with open(os.path.join(work, "manifest.jsonl"), "w") as m:
    for i in range(n):
        c = bytes(rng.randrange(256) for _ in range(3))
        with open(os.path.join(work, "img", f"{i}.png"), "wb") as f:
            f.write(png(64, 64, c * (64 * 64)))
        m.write(json.dumps({"image": f"img/{i}.png", "caption": f"prompt {i % 97}"}) + "\n")
PY
START=$(date +%s.%N)
OMP_NUM_THREADS=$THREADS /usr/bin/time -f "peak RSS %M KB" "$DRO" select --input "$WORK/manifest.jsonl" \
  --pickscore-model "$FIX" --top-k 500 --out "$WORK/out" --quiet --workers 2 2>&1 | grep -E "peak RSS|kept"
END=$(date +%s.%N)
python3 -c "print('%d images in %.1f s: %.0f images/s (OMP_NUM_THREADS=$THREADS)' % ($N, $END - $START, $N / ($END - $START)))"
