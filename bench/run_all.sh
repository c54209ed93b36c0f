#!/usr/bin/env bash
# Runs the transformers reference (bench/hf_reference.py) and `llava-mnist bench` on the
# same GPU, one after the other, and prints the ratios (ours / transformers) of the
# figures the issue's table names: training samples/s at batch 16 and 64, eval images/s
# (greedy, 20 new tokens forced) at batch 100 and 500, and the best of each side.
#   bench/run_all.sh [OUT_DIR]      (default bench/out)
# Environment: LLAVA_BIN (default build-gpu/bin/llava-mnist), LLAVA_MODEL_SPEC (default
# synthetic:llama-3.1-8b), LLAVA_CONFIG_JSON (the 8B config for transformers, default
# ../shared/fixtures/llama-3.1-8b-instruct.config.json), HF_ARGS / BENCH_ARGS (extra flags),
# LLAVA_WEIGHTS (default "dense": the --weights formats to run, e.g. "dense fp8 fp8-fast",
# each against the same transformers figures; fp8-fast: fp8 with its speed levers).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out}
mkdir -p "$OUT"
BIN=${LLAVA_BIN:-build-gpu/bin/llava-mnist}
SPEC=${LLAVA_MODEL_SPEC:-synthetic:llama-3.1-8b}
CONFIG=${LLAVA_CONFIG_JSON:-${LLAVA_FIXTURES:-../shared/fixtures}/llama-3.1-8b-instruct.config.json}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1

# shellcheck disable=SC2086
python3 bench/hf_reference.py --config "$CONFIG" --train_batches 16,64,256 \
  --eval_batches 100,500,1000 --out "$OUT/hf.json" ${HF_ARGS:-} 2>&1 | tee "$OUT/hf.txt"
# shellcheck disable=SC2086
# A failed fast-path check (--check) makes bench exit non-zero after writing its JSON:
# the ratios are still printed, and this script exits with bench's status.
rc=0
for w in ${LLAVA_WEIGHTS:-dense}; do
case $w in
  # FP8 with its speed levers: fast accumulation, q/k/v and block outputs in bf16.
  fp8-fast) wflags="--weights fp8 --fp8_fast_accum --float32_attention=false --residual model" ;;
  *) wflags="--weights $w" ;;
esac
# shellcheck disable=SC2086
"$BIN" bench --model "$SPEC" --device cuda --dtype bf16 $wflags \
  --train_batches 16,64,256,512 --eval_batches 100,500,1000,2000 \
  --json_out "$OUT/ours-$w.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/ours-$w.txt" || rc=$?

echo "--weights $w:" | tee -a "$OUT/ratios.txt"
python3 - "$OUT/hf.json" "$OUT/ours-$w.json" <<'EOF' | tee -a "$OUT/ratios.txt"
import json, sys
hf = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))
def per_s(rows, mode, batch=None, **kw):
    got = [r for r in rows if "per_s" in r and r["mode"] == mode and (batch is None or r["batch"] == batch)
           and all(r.get(k) == v for k, v in kw.items())]
    return max((r["per_s"] for r in got), default=None)
def line(what, a, b):
    if a is None or b is None:
        print(f"{what:44s} {'-':>10s} {'-':>10s}")
    else:
        print(f"{what:44s} {a:10.1f} {b:10.1f} {a / b:7.2f}x")
print(f"{'':44s} {'ours/s':>10s} {'hf/s':>10s}  ratio")
for b in (16, 64, 256):
    line(f"train, batch {b}", per_s(ours["rows"], "train", b), per_s(hf["rows"], "train", b))
line("train, best batch of each", per_s(ours["rows"], "train"), per_s(hf["rows"], "train"))
for b in (100, 500, 1000):
    line(f"eval, 20 tokens forced, batch {b}", per_s(ours["rows"], "eval", b, new_tokens=20),
         per_s(hf["rows"], "eval", b))
line("eval, 20 tokens forced, best batch of each",
     per_s(ours["rows"], "eval", new_tokens=20), per_s(hf["rows"], "eval"))
peak = max((r.get("peak_gib", 0) for r in ours["rows"]), default=0)
print(f"weights {ours.get('weights', '?')}: {ours.get('weight_gib', 0):.1f} GiB, peak {peak:.1f} GiB")
EOF
done
exit $rc
