#!/usr/bin/env bash
# Installs every Debian package that building, testing and running dro needs.
# Idempotent: runs apt-get (and apt-get update) only when a package is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libgloo-dev       # LibTorch (CPU) and the c10d headers it includes
  libopenblas0-pthread           # optimised BLAS: LibTorch's matmuls are ~40x faster than reference BLAS
  nlohmann-json3-dev libcli11-dev libstb-dev   # header-only: JSON, command line, image codecs
  libjpeg62-turbo-dev            # JPEG decoding exactly as Pillow (libjpeg-turbo)
  libgtest-dev libgmock-dev libbenchmark-dev   # tests and benchmarks
  libcpp-httplib-dev             # dro serve: the HTTP server (without it dro builds without the server)
  chromium                       # dro serve's browser test (headless); skipped where absent
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[setup] all ${#PACKAGES[@]} packages present"
fi
