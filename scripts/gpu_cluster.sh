#!/usr/bin/env bash
# The distributed system on a GPU machine, in one go (issues 4 and 6): `launch` with 1 and
# 2 workers (NCCL, synthetic Llama-3.1-8B in bf16), the projector of 2 workers against 1
# with the same global batch, the 2-worker eval report against the 1-worker one, scaling
# at the same per-GPU batch, and a worker SIGKILLed mid-training. Results in $OUT (or
# ./out). Also runs on a CPU machine for a dry run:
#   MODEL=data/models/demo-lm DEVICE=cpu GPUS=2 scripts/gpu_cluster.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
BIN=${BIN:-build-gpu/bin/llava-mnist}
MODEL=${MODEL:-synthetic:llama-3.1-8b}
DEVICE=${DEVICE:-cuda}
B=${BATCH:-128}        # per-GPU batch for the scaling runs
STEPS=${STEPS:-25}
EVAL=${EVAL_DIGITS:-1000}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
COMMON=(--model "$MODEL" --device "$DEVICE" --projector linear --lr 1e-3 --seed 7
        --train_digits 9000 --max_steps "$STEPS" --eval_digits "$EVAL" --eval_batch_size 1000
        --checkpoint_every 0)
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

run_launch() {  # name workers per-worker-batch
  local name=$1 n=$2 b=$3
  log "launch $name: --workers $n --batch_size $b"
  local t0=$(date +%s)
  "$BIN" launch --workers "$n" --batch_size "$b" "${COMMON[@]}" --launch_dir "runs/$name" \
    > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc wall=$(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
  grep -E "^train:|^eval:|^Eval:" "$OUT/$name.txt" | tee -a "$OUT/summary.txt"
  cp "runs/$name/eval_report.json" "$OUT/$name.eval.json" 2>/dev/null
  cp "runs/$name/train_job.json" "$OUT/$name.train.json" 2>/dev/null
  [[ $rc == 0 ]] || tail -20 "$OUT/$name.txt" runs/$name/*.log | tee -a "$OUT/summary.txt"
}

SECTIONS=${SECTIONS:-scaling correctness failure}
if [[ $SECTIONS == *scaling* ]]; then
  run_launch w1 1 "$B"
  run_launch w2 2 "$B"
fi

compare() {  # two launch dirs
  python3 - "$1" "$2" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import sys
from safetensors.numpy import load_file
import numpy as np
a = load_file(f"runs/{sys.argv[1]}/projector.safetensors"); b = load_file(f"runs/{sys.argv[2]}/projector.safetensors")
for k in sorted(a):
    if not k.startswith("projector."): continue
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    print(f"  {k}: rel. error {np.linalg.norm(x - y) / np.linalg.norm(x):.3e}")
PY
}
if [[ $SECTIONS == *correctness* ]]; then
  for opt in "sgd --lr 0.05" "adamw --lr 1e-3"; do
    for K in ${KS:-1 5 20}; do
      tag=$(echo "$opt" | cut -d' ' -f1)-$K
      COMMON=(--model "$MODEL" --device "$DEVICE" --projector linear --seed 7 --optimizer $opt
              --train_digits 9000 --max_steps "$K" --eval_digits 100 --checkpoint_every 0)
      run_launch "c1-$tag" 1 "$B" > /dev/null
      run_launch "c2-$tag" 2 "$((B / 2))" > /dev/null
      log "correctness $tag: projector 2 GPUs x $((B / 2)) vs 1 GPU x $B, $K steps"
      compare "c1-$tag" "c2-$tag"
    done
  done
fi

log "failure: SIGKILL one of 2 workers mid-training"
S=runs/fail; rm -rf "$S"; mkdir -p "$S"
"$BIN" coordinator --listen 127.0.0.1:0 --port_file "$S/port" --state_dir "$S/state" \
  --heartbeat_interval_ms 200 --worker_timeout_ms 2000 --collective_timeout_ms 10000 \
  --restart_wait_ms 120000 > "$S/coordinator.log" 2>&1 &
CPID=$!
for i in $(seq 100); do [[ -s "$S/port" ]] && break; sleep 0.1; done
ADDR=127.0.0.1:$(cat "$S/port")
start_worker() {
  local dev=$DEVICE; [[ $DEVICE == cuda ]] && dev=cuda:$1
  "$BIN" worker --coordinator "$ADDR" --worker_id "worker-$1" --model "$MODEL" --device "$dev" \
    --seed 7 >> "$S/worker-$1.log" 2>&1 &
  echo $!
}
W0=$(start_worker 0); W1=$(start_worker 1)
for i in $(seq 600); do
  [[ $("$BIN" workers --coordinator "$ADDR" 2>/dev/null | grep -c "alive.*idle") == 2 ]] && break; sleep 0.2
done
JOB=$("$BIN" submit train --coordinator "$ADDR" --world_size 2 --batch_size "$B" --max_steps "${FAIL_STEPS:-40}" \
      --train_digits 9000 --checkpoint_every 5 --projector linear 2>>"$OUT/summary.txt")
echo "job $JOB" | tee -a "$OUT/summary.txt"
for i in $(seq 1200); do
  "$BIN" status "$JOB" --coordinator "$ADDR" | grep -q "ckpt " && break; sleep 0.1
done
"$BIN" status "$JOB" --coordinator "$ADDR" | tee -a "$OUT/summary.txt"
kill -9 "$W1"; T0=$(date +%s%N)
for i in $(seq 600); do
  "$BIN" status "$JOB" --coordinator "$ADDR" | grep -q RESTARTING && break; sleep 0.05
done
echo "noticed after $(( ($(date +%s%N) - T0) / 1000000 )) ms" | tee -a "$OUT/summary.txt"
"$BIN" status "$JOB" --coordinator "$ADDR" | tee -a "$OUT/summary.txt"
W1=$(start_worker 1)
for i in $(seq 1200); do
  "$BIN" status "$JOB" --coordinator "$ADDR" | grep -q "RUNNING.*restarts 1" && break; sleep 0.1
done
echo "resumed after $(( ($(date +%s%N) - T0) / 1000000 )) ms" | tee -a "$OUT/summary.txt"
"$BIN" watch "$JOB" --coordinator "$ADDR" --watch_timeout_ms 240000 | tail -2 | tee -a "$OUT/summary.txt"
"$BIN" status "$JOB" --coordinator "$ADDR" --history | grep -E "^step (5|10|15|40|60) " | tee -a "$OUT/summary.txt"
log "eval of the same checkpoint on 1 and on 2 workers (batch 100: the same batches either way)"
for n in 1 2; do
  "$BIN" submit eval --coordinator "$ADDR" --checkpoint "$JOB" --eval_workers $n --eval_batch_size 100 \
      --eval_digits 1000 --wait > "$S/submit-eval-$n.txt" 2>&1
  E=$(head -1 "$S/submit-eval-$n.txt")
  "$BIN" status "$E" --coordinator "$ADDR" --report_out "$S/eval-$n.json" | head -3 | tee -a "$OUT/summary.txt"
done
python3 - "$S" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
a = json.load(open(f"{sys.argv[1]}/eval-1.json"))["samples"]; b = json.load(open(f"{sys.argv[1]}/eval-2.json"))["samples"]
print(f"eval samples identical (1 vs 2 workers): {sum(p == q for p, q in zip(a, b))} of {len(a)} ({len(b)})")
PY
kill "$W0" "$W1" "$CPID" 2>/dev/null; wait
cp "$S"/*.log "$OUT/" 2>/dev/null
grep -h -iE "nccl|abort|failed" "$S"/worker-*.log | head -20 >> "$OUT/summary.txt"
log "done"
