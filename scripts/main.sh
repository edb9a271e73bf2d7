#!/usr/bin/env bash
# Sets up, builds and runs the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
FIXTURES="${DRO_FIXTURES_DIR:-../shared/fixtures}"
if [[ -d "$FIXTURES/tiny-sd15" ]]; then
  ./build/release/dro inspect "$FIXTURES/tiny-sd15" --summary
  ./build/release/dro inspect "$FIXTURES/tiny-sdxl" --summary
else
  echo "dro built at build/release/dro; run 'build/release/dro --help' for the commands."
  ./build/release/dro --help
fi
