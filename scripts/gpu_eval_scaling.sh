#!/usr/bin/env bash
# Eval scaling on a GPU machine (issue 6): the same checkpoint evaluated by 1 and by 2
# workers at the same per-GPU batch, each twice (the second, warm, counts). Wall time of
# `submit eval --wait`: scheduling, checkpoint download and the answers. Results in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
BIN=${BIN:-build-gpu/bin/llava-mnist}; MODEL=${MODEL:-synthetic:llama-3.1-8b}; DEVICE=${DEVICE:-cuda}
EB=${EVAL_BATCH:-500}; N=${EVAL_DIGITS:-1000}
export NCCL_NVLS_ENABLE=0
S=runs/evalscale; rm -rf "$S"; mkdir -p "$S"
"$BIN" coordinator --listen 127.0.0.1:0 --port_file "$S/port" --state_dir "$S/state" \
  --heartbeat_interval_ms 50 --worker_timeout_ms 2000 > "$S/coordinator.log" 2>&1 &
for i in $(seq 100); do [[ -s "$S/port" ]] && break; sleep 0.1; done
ADDR=127.0.0.1:$(cat "$S/port")
for w in 0 1; do
  dev=$DEVICE; [[ $DEVICE == cuda ]] && dev=cuda:$w
  "$BIN" worker --coordinator "$ADDR" --worker_id "worker-$w" --model "$MODEL" --device "$dev" > "$S/worker-$w.log" 2>&1 &
done
for i in $(seq 600); do
  [[ $("$BIN" workers --coordinator "$ADDR" 2>/dev/null | grep -c "alive.*idle") == 2 ]] && break; sleep 0.2
done
"$BIN" submit train --coordinator "$ADDR" --world_size 2 --batch_size 16 --max_steps 2 --wait > "$S/train.txt" 2>&1
JOB=$(head -1 "$S/train.txt")
for n in 1 2 1 2; do
  t0=$(date +%s%N)
  "$BIN" submit eval --coordinator "$ADDR" --checkpoint "$JOB" --eval_workers $n --eval_batch_size "$EB" \
    --eval_digits "$N" --wait > "$S/eval.txt" 2>&1 || { echo "eval failed:"; tail -3 "$S/eval.txt"; } | tee -a "$OUT/evalscale.txt"
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "eval on $n workers: $((2 * N)) answers, batch $EB, ${ms} ms, $(( 2 * N * 1000 / ms )) answers/s" | tee -a "$OUT/evalscale.txt"
done
kill $(jobs -p) 2>/dev/null; wait
