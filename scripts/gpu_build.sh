#!/usr/bin/env bash
# Builds llava-mnist on a GPU machine against the PyTorch install's CUDA libtorch and
# NCCL, with the other dependencies unpacked from .debs (scripts/offline_deps.sh), no
# network needed. Then, with --test, runs the suite.
#   LLAVA_BUILD_DIR (default build-gpu), LLAVA_JOBS (default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${LLAVA_BUILD_DIR:-build-gpu}
JOBS=${LLAVA_JOBS:-$(nproc)}
if [[ ! -f .deps/prefix/env.sh ]]; then
  scripts/offline_deps.sh install .deps/debs .deps/prefix >&2
fi
# shellcheck disable=SC1091
source .deps/prefix/env.sh
# Keep NVLink multicast off in every process started from here.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH" -DNCCL_ROOT="$NCCL_ROOT" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_K8S_TESTS=OFF ${LLAVA_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$JOBS"
if [[ "${1:-}" == --test ]]; then
  export LLAVA_FIXTURES=${LLAVA_FIXTURES:-$PWD/../shared/fixtures}
  export LLAVA_TOKENIZER=${LLAVA_TOKENIZER:-$PWD/data/tokenizer/tokenizer.json}
  (cd "$BUILD_DIR" && ctest --output-on-failure -j 4)
fi
