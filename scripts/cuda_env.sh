# Sourced by the GPU-machine scripts (cuda_check.sh, gpu_pretrain.sh): unpacks the header-only
# Debian packages from .deps/debs (scripts/fetch_deps.sh) into .deps/usr, finds the pip wheel's
# LibTorch, NCCL and Gloo, and defines `configure` (CMake into build-cuda) and `build_dro`.
# Expects OUT to be set; starts the clock (`elapsed`) and the summary file S = OUT/summary.txt.
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
S="$OUT/summary.txt"
mkdir -p "$OUT" && : > "$S"
rm -rf .deps/root && mkdir -p .deps/root
for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/root; done
rm -rf .deps/usr && mv .deps/root/usr .deps/usr && rm -rf .deps/root
TORCH_PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
TORCH_INC="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
NCCL_INC="$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2>/dev/null)"
GLOO=OFF; [ -f "$TORCH_INC/gloo/config.h" ] && GLOO=ON
NCCL=OFF; [ -n "$NCCL_INC" ] && [ -f "$NCCL_INC/nccl.h" ] && NCCL=ON
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  echo "backends: gloo=$GLOO (wheel headers) nccl=$NCCL ($NCCL_INC)"; } | tee -a "$S"
configure() {
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DDRO_FIXTURES_DIR="$PWD/.deps/fixtures" -DDRO_BUILD_BENCH=OFF -DDRO_WITH_GLOO=$GLOO \
    -DDRO_WITH_NCCL=$NCCL -DDRO_NCCL_INCLUDE="$NCCL_INC" > "$OUT/configure.log" 2>&1
}
# Builds the `dro` program; on failure with process-group backends, retries without them.
build_dro() {
  configure || { tail -40 "$OUT/configure.log"; return 1; }
  if ! cmake --build build-cuda -j "$(nproc)" --target dro > "$OUT/build.log" 2>&1; then
    grep -E "error" -A6 "$OUT/build.log" | head -60 | tee -a "$S"
    [ "$NCCL$GLOO" = OFFOFF ] && return 1
    echo "build with process-group backends failed; retrying without" | tee -a "$S"
    NCCL=OFF; GLOO=OFF
    configure && cmake --build build-cuda -j "$(nproc)" --target dro >> "$OUT/build.log" 2>&1 || return 1
  fi
}
