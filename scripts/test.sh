#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (CTest prints the summary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --preset release --output-on-failure
