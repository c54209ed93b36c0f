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
  local t0=$(date +%s.%N)
  "$BIN" launch --workers "$n" --batch_size "$b" "${COMMON[@]}" --launch_dir "runs/$name" \
    > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc wall=$(echo "$(date +%s.%N) - $t0" | bc) s" | tee -a "$OUT/summary.txt"
  grep -E "^train:|^eval:|^Eval:" "$OUT/$name.txt" | tee -a "$OUT/summary.txt"
  cp "runs/$name/eval_report.json" "$OUT/$name.eval.json" 2>/dev/null
  cp "runs/$name/train_job.json" "$OUT/$name.train.json" 2>/dev/null
  [[ $rc == 0 ]] || tail -20 "$OUT/$name.txt" runs/$name/*.log | tee -a "$OUT/summary.txt"
}

run_launch w1 1 "$B"
run_launch w2 2 "$B"
run_launch w2half 2 "$((B / 2))"

log "correctness: projector w2half (2 x $((B / 2))) vs w1 (1 x $B); eval report w2 vs w1"
python3 - "$OUT" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
from safetensors.numpy import load_file
import numpy as np
a = load_file("runs/w1/projector.safetensors"); b = load_file("runs/w2half/projector.safetensors")
for k in sorted(a):
    if not k.startswith("projector."): continue
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    print(f"{k}: rel. error {np.linalg.norm(x - y) / np.linalg.norm(x):.3e}")
r1 = json.load(open("runs/w1/eval_report.json")); r2 = json.load(open("runs/w2/eval_report.json"))
s1, s2 = r1["samples"], r2["samples"]
same = sum(1 for p, q in zip(s1, s2) if p == q)
print(f"eval samples identical: {same} of {len(s1)} (w2 has {len(s2)})")
PY

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
kill -9 "$W1"; T0=$(date +%s.%N)
for i in $(seq 600); do
  "$BIN" status "$JOB" --coordinator "$ADDR" | grep -q RESTARTING && break; sleep 0.05
done
echo "noticed after $(echo "$(date +%s.%N) - $T0" | bc) s" | tee -a "$OUT/summary.txt"
"$BIN" status "$JOB" --coordinator "$ADDR" | tee -a "$OUT/summary.txt"
W1=$(start_worker 1)
for i in $(seq 1200); do
  "$BIN" status "$JOB" --coordinator "$ADDR" | grep -q "RUNNING.*restarts 1" && break; sleep 0.1
done
echo "resumed after $(echo "$(date +%s.%N) - $T0" | bc) s" | tee -a "$OUT/summary.txt"
"$BIN" watch "$JOB" --coordinator "$ADDR" --watch_timeout_ms 240000 | tail -2 | tee -a "$OUT/summary.txt"
"$BIN" status "$JOB" --coordinator "$ADDR" --history | grep -E "^step (5|10|15|40|60) " | tee -a "$OUT/summary.txt"
kill "$W0" "$W1" "$CPID" 2>/dev/null; wait
cp "$S"/*.log "$OUT/" 2>/dev/null
grep -h -iE "nccl|abort|failed" "$S"/worker-*.log | head -20 >> "$OUT/summary.txt"
log "done"
