#!/usr/bin/env bash
# Installs the Debian packages (if missing), configures and builds the release preset.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
