#!/usr/bin/env bash
# Runs setup (installs, fetches data, builds the binaries; each step only if needed), builds
# the tests, runs every fuzz target for LLAVA_FUZZ_SECONDS each (default 20; 0 skips them;
# scripts/fuzz.sh), then the whole test suite with ctest. Extra arguments go to ctest (e.g.
# -R tokenizer), and then the fuzz targets do not run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${LLAVA_BUILD_DIR:-build}
# The container and Kubernetes tests are opt-in for a plain ctest; the test command runs them.
cmake -S . -B "$BUILD_DIR" -DLLAVA_K8S_TESTS=ON >/dev/null
# setup builds the two binaries only; the tests are built here.
cmake --build "$BUILD_DIR" -j "${LLAVA_JOBS:-$(nproc)}" >&2
export LLAVA_FIXTURES=${LLAVA_FIXTURES:-$PWD/../shared/fixtures}
export LLAVA_TOKENIZER=${LLAVA_TOKENIZER:-$PWD/data/tokenizer/tokenizer.json}
# The fuzz targets first, so that ctest's summary closes the output.
if [[ $# == 0 && ${LLAVA_FUZZ_SECONDS:-20} != 0 ]]; then
  scripts/fuzz.sh "${LLAVA_FUZZ_SECONDS:-20}"
fi
(cd "$BUILD_DIR" && ctest --output-on-failure -j "${LLAVA_TEST_JOBS:-2}" "$@")
