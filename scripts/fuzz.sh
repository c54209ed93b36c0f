#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang-14 (in build-fuzz, configured on
# first use) and runs each for SECONDS over its seed corpus tests/fuzz/corpus/<target>/.
# Exits non-zero when any target crashed (or did not run), naming it and its crash file.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 60 s, every target)
#   LLAVA_FUZZ_BUILD_DIR  build directory (default: build-fuzz)
#   LLAVA_FUZZ_OUT        working corpora and crash files (default: <build dir>/fuzz-out)
#   LLAVA_JOBS            parallel build jobs (default: nproc)
# New inputs go to the working corpus, never into the committed seeds. To replay a crash:
#   build-fuzz/bin/fuzz_png build-fuzz/fuzz-out/fuzz_png/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
BUILD_DIR=${LLAVA_FUZZ_BUILD_DIR:-build-fuzz}
OUT=${LLAVA_FUZZ_OUT:-$BUILD_DIR/fuzz-out}
JOBS=${LLAVA_JOBS:-$(nproc)}
ALL=(fuzz_safetensors fuzz_llama_config fuzz_tokenizer fuzz_mnist_idx fuzz_png fuzz_job_spec
     fuzz_coordinator)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")

# Longest input per target: room for the largest seed and a little more.
max_len() {
  case $1 in
    fuzz_tokenizer) echo 24576 ;;
    fuzz_png) echo 8192 ;;
    fuzz_job_spec) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

log() { echo "[fuzz] $*" >&2; }

if [[ ! -f $BUILD_DIR/build.ninja ]]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  log "configuring $BUILD_DIR (clang-14, LLAVA_FUZZ=ON)"
  mkdir -p "$BUILD_DIR"
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -G Ninja "${launcher[@]}" \
    -DLLAVA_FUZZ=ON -DLLAVA_BUILD_TESTS=OFF >"$BUILD_DIR/configure.log" 2>&1 ||
    { cat "$BUILD_DIR/configure.log"; exit 1; }
fi
start=$(date +%s)
cmake --build "$BUILD_DIR" --target "${TARGETS[@]}" -j "$JOBS"
log "build: $(($(date +%s) - start)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/$t/corpus"
  logf=$OUT/$t/fuzz.log
  log "$t: ${SECONDS_EACH} s"
  rc=0
  "$BUILD_DIR/bin/$t" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/$t/" \
    "$OUT/$t/corpus" "tests/fuzz/corpus/$t" >"$logf" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$logf" | tail -1 || true)
  if ((rc != 0)); then
    crash=$(grep -o "Test unit written to .*" "$logf" | tail -1 | sed 's/Test unit written to //' || true)
    tail -40 "$logf" >&2
    failed+=("$t${crash:+ ($crash)}")
    summary+=("$(printf '%-18s CRASH (exit %d) %s' "$t" "$rc" "${crash:-see $logf}")")
  else
    summary+=("$(printf '%-18s ok  %10s execs in %s s, %s, corpus %s' "$t" "${execs:-?}" \
      "$SECONDS_EACH" "${cov:-cov: ?}" "$(ls "$OUT/$t/corpus" | wc -l)")")
  fi
done
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  log "crashed: ${failed[*]}"
  exit 1
fi
