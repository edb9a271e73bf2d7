#!/usr/bin/env bash
# Sets up, builds and runs the main job on the embedded default: `dro demo`, Diffusion-DRO on the
# built-in preference world with the shipped base model (report in demo-report/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
./build/release/dro demo --out demo-report "$@"
