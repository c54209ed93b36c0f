#!/usr/bin/env bash
# Issue 19's measurements on one GPU, after scripts/gpu_build.sh: each stage named on the
# command line, its logs and JSON under OUT_DIR (one tarball, fp8.tgz, as well).
#   tests     fp8_test and the model tests (the FP8 GPU paths against float32; trainer_test
#             reads the demo LM that the accuracy stage builds)
#   bench8b   synthetic 8B: bench dense vs fp8; fp8's options one at a time; the FP8
#             numerics check (--check) under three of them
#   check8b   the numerics checks alone
#   bench70b  synthetic 70B in FP8: training and eval rows, peak memory
#   accuracy  the main recipe (conv_aug_e3) through the demo LM at seeds 0 1 2, trained
#             and evaluated in bf16 and in FP8 (scripts/accuracy_sweep.sh; ACC_WEIGHTS
#             picks the formats, default "dense fp8"); every phrasing's accuracy per format
#             and seed side by side in acc-phrasings.tsv (scripts/accuracy_phrasings.py)
#   variants:FLAGS;FLAGS...  one fp8 bench per set of flags
#   profile   one training step (batch 256) and one eval batch (1000; 20 and 7 tokens)
#             under libtorch's profiler, for each of PROFILES (NAME=WEIGHTS[:FLAGS] ...;
#             default dense, fp8 and fp8 with --fp8_fuse=false): traces and
#             bench/profile_summary.py's sums of their kernels
#   hf        bench/run_all.sh: transformers bf16, ours dense, fp8 and fp8 with its speed
#             levers, in one run
#   scripts/gpu_fp8.sh OUT_DIR STAGE...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_fp8.sh OUT_DIR STAGE...}
shift
mkdir -p "$OUT"
BIN=${LLAVA_BIN:-build-gpu/bin/llava-mnist}
# shellcheck disable=SC1091
[[ -f .deps/prefix/env.sh ]] && source .deps/prefix/env.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export LLAVA_FIXTURES=${LLAVA_FIXTURES:-$PWD/../shared/fixtures}
B8=(bench --model synthetic:llama-3.1-8b --device cuda --dtype bf16 --steps 6 --warmup 2)

# variants FLAGS...: one fp8 bench (training 256, eval 1000) per set of flags.
variants() {
  local v n
  for v in "$@"; do
    n=$(echo "$v" | tr -c 'a-z0-9\n' '_')
    # shellcheck disable=SC2086
    "$BIN" "${B8[@]}" --weights fp8 $v --train_batches 256 --eval_batches 1000 \
      --json_out "$OUT/b8-fp8$n.json" > "$OUT/b8-fp8$n.txt" 2>&1
    grep -E "^(train|eval) " "$OUT/b8-fp8$n.txt" | sed "s/^/fp8 $v /"
  done
}

for stage in "$@"; do
  echo "== $stage $(date +%T)"
  case $stage in
    tests)
      ./build-gpu/bin/fp8_test > "$OUT/fp8_test.log" 2>&1
      (cd build-gpu && ctest -R 'llama_model_test|fused_ops_test|vlm_test|trainer_test' \
        --output-on-failure -j 4) > "$OUT/tests.log" 2>&1
      tail -n 3 "$OUT/fp8_test.log" "$OUT/tests.log" ;;
    bench8b)
      for w in dense fp8; do
        "$BIN" "${B8[@]}" --weights "$w" --train_batches 64,256 --eval_batches 500,1000 \
          --json_out "$OUT/b8-$w.json" > "$OUT/b8-$w.txt" 2>&1
        grep -E "^(train|eval) " "$OUT/b8-$w.txt" | sed "s/^/$w /"
      done
      variants "--fp8_backward e5m2" "--fp8_backward bf16" "--fp8_fast_accum" \
        "--fp8_fast_accum --float32_attention=false --residual model" \
        "--fp8_fast_accum --fp8_transposed per_call" ;;
    check8b)
      for v in "" "--fp8_fast_accum" "--fp8_backward bf16"; do
        n=$(echo "$v" | tr -c 'a-z0-9\n' '_')
        # shellcheck disable=SC2086
        "$BIN" "${B8[@]}" --mode train --weights fp8 $v --check --train_batches 16 \
          --eval_batches 500 --json_out "$OUT/b8-check$n.json" > "$OUT/b8-check$n.txt" 2>&1
        echo "$v"; grep "check fp8" "$OUT/b8-check$n.txt" || tail -5 "$OUT/b8-check$n.txt"
      done ;;
    bench70b)
      "$BIN" bench --model synthetic:llama-3.1-70b --device cuda --dtype bf16 --weights fp8 \
        --steps 4 --warmup 1 --train_batches 16,64 --eval_batches 100,500 \
        --json_out "$OUT/b70-fp8.json" > "$OUT/b70-fp8.txt" 2>&1
      grep -E "^(train|eval) |loaded|made/loaded|failed" "$OUT/b70-fp8.txt" ;;
    accuracy)
      [[ -f data/models/demo-lm/model.safetensors ]] ||
        "$BIN" make-demo-lm --demo_out data/models/demo-lm > "$OUT/demo-lm.log" 2>&1
      for w in ${ACC_WEIGHTS:-dense fp8}; do
        WORK=$OUT/acc-$w DTYPE=bfloat16 WEIGHTS=$w SEEDS="0 1 2" LLAVA_BIN=$BIN PARALLEL=3 \
          scripts/accuracy_sweep.sh conv_aug_e3 > "$OUT/acc-$w.log" 2>&1 &
      done
      wait
      for w in ${ACC_WEIGHTS:-dense fp8}; do echo "$w"; cat "$OUT/acc-$w/results.tsv"; done
      # shellcheck disable=SC2086
      python3 scripts/accuracy_phrasings.py "$OUT/acc-phrasings.tsv" \
        $(for w in ${ACC_WEIGHTS:-dense fp8}; do echo "$w=$OUT/acc-$w"; done) ;;
    hf)
      HF_ARGS=${HF_ARGS:-"--train_batches 64,256 --eval_batches 500,1000 --train_steps 4 --eval_steps 2 --warmup 1"} \
        BENCH_ARGS=${BENCH_ARGS:-"--train_batches 256,512 --eval_batches 1000,2000 --steps 4 --warmup 2"} \
        LLAVA_WEIGHTS="dense fp8 fp8-fast" LLAVA_BIN=$BIN bench/run_all.sh "$OUT/hf" > "$OUT/run_all.log" 2>&1
      cat "$OUT/hf/ratios.txt" ;;
    profile)
      # NAME=WEIGHTS[:FLAGS]: each profiled as NAME.
      for v in ${PROFILES:-dense=dense fp8=fp8 fp8-separate=fp8:--fp8_fuse=false}; do
        n=${v%%=*}; w=${v#*=}; f=""
        [[ $w == *:* ]] && { f=${w#*:}; w=${w%%:*}; }
        # shellcheck disable=SC2086
        "$BIN" "${B8[@]}" --weights "$w" $f --steps 3 --warmup 2 --train_batches 256 \
          --eval_batches 1000 --answer_tokens 7 --profile_dir "$OUT/prof-$n" \
          --json_out "$OUT/prof-$n.json" > "$OUT/prof-$n.txt" 2>&1
        grep -E "^(train|eval) |failed" "$OUT/prof-$n.txt" | sed "s/^/$n /"
        python3 bench/profile_summary.py "$OUT/prof-$n" --json "$OUT/prof-$n-summary.json" \
          > "$OUT/prof-$n-summary.txt" 2>&1
        grep -E "^==|span|by kind|by launching" "$OUT/prof-$n-summary.txt"
        # The traces are large: kept compressed, out of the tarball.
        gzip -f "$OUT/prof-$n"/*.json
      done ;;
    variants:*)
      IFS=';' read -ra vs <<< "${stage#variants:}"
      variants "${vs[@]}" ;;
    *) echo "unknown stage $stage" ;;
  esac
  # After each stage, so that a run stopped by its time limit still brings back the rest.
  tar czf "$OUT/fp8.tgz" --exclude=fp8.tgz --exclude='runs' --exclude='*.json.gz' -C "$OUT" . 2>/dev/null
done
