#!/usr/bin/env bash
# Prepares .deps/ (ignored by git) for a GPU machine without a package manager: the header-only
# Debian packages the build needs (nlohmann-json, CLI11, stb, GoogleTest sources), libjpeg-turbo
# (library and headers, linked from .deps/usr with a build RPATH) and a copy of
# the golden fixtures. Run on a Debian machine; then carry .deps along and run scripts/cuda_check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/debs
(cd .deps/debs && apt-get download nlohmann-json3-dev libcli11-dev libstb-dev googletest \
  libjpeg62-turbo libjpeg62-turbo-dev 2>/dev/null)
FIXTURES="${DRO_FIXTURES_DIR:-../shared/fixtures}"
if [[ -d "$FIXTURES" ]]; then rm -rf .deps/fixtures && cp -r "$FIXTURES" .deps/fixtures; fi
du -sh .deps
