#!/usr/bin/env bash
# The distributed system on one GPU machine with GPUS GPUs (issues 4, 6 and 7): one worker
# per GPU, NCCL, synthetic Llama-3.1-8B in bf16. Sections (SECTIONS; default all but launch):
#   launch       `launch --workers GPUS` (the main command) at per-GPU batch BATCH
#   scaling      a training job at each group size in NS (default 1 2 4 .. GPUS) at the same
#                per-GPU batch BATCH: median step, samples/s, efficiency against 1 GPU
#   correctness  the projector after each of KS steps on N GPUs x BATCH/N against 1 GPU x
#                BATCH (same global batch, seed and data order), SGD and AdamW
#   failure      SIGKILL of the last worker mid-training: when the job is RESTARTING and the
#                survivors leave their collectives; the worker started again, the job
#                resumes from its last checkpoint and completes
#   evalsame     the eval report of one checkpoint on 1 and on GPUS workers, answer for answer
# All but launch share one coordinator and GPUS workers (the model loaded once).
# Results in $OUT: summary.txt and every process's log. A dry run on the CPU:
#   MODEL=data/models/demo-lm DEVICE=cpu GPUS=2 BATCH=8 scripts/gpu_cluster.sh
#   (other settings: STEPS 25, EVAL_DIGITS 1000, KS "1 10", FAIL_STEPS 40; gpu_common.sh)
set -uo pipefail
# shellcheck source=scripts/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
B=${BATCH:-128}; STEPS=${STEPS:-25}; EVAL=${EVAL_DIGITS:-1000}; KS=${KS:-1 10}
SECTIONS=${SECTIONS:-scaling correctness failure evalsame}
SUMMARY=$OUT/summary.txt
log() { echo "== $*" | tee -a "$SUMMARY"; }
say() { tee -a "$SUMMARY"; }
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
log "$(date -u +%FT%TZ) GPUS=$GPUS NS='$NS' BATCH=$B MODEL=$MODEL DEVICE=$DEVICE SECTIONS='$SECTIONS'"

if has launch; then
  L=runs/launch-$GPUS
  log "launch --workers $GPUS --batch_size $B: $STEPS steps, eval of $EVAL digits"
  t0=$(date +%s)
  "$BIN" launch --workers "$GPUS" --batch_size "$B" --model "$MODEL" --device "$DEVICE" --seed 7 \
    --projector linear --lr 1e-3 --train_digits 9000 --max_steps "$STEPS" --checkpoint_every 0 \
    --eval_digits "$EVAL" --eval_batch_size $((EVAL / GPUS)) --launch_dir "$L" > "$OUT/launch.txt" 2>&1
  echo "rc=$? wall=$(( $(date +%s) - t0 )) s" | say
  grep -aE "^train:|^eval:|^Eval:" "$OUT/launch.txt" | say
  for f in "$L"/*.log; do cp "$f" "$OUT/launch-$(basename "$f")"; done
fi

has scaling || has correctness || has failure || has evalsame || exit 0
start_cluster runs/cluster --heartbeat_interval_ms 200 --worker_timeout_ms 2000 \
  --collective_timeout_ms 10000 --restart_wait_ms 120000 || { stop_cluster; exit 1; }
trap stop_cluster EXIT

# train NAME N PER_GPU_BATCH [submit flags...]: a training job on N workers, waited for;
# sets JOB.
train() {
  local name=$1 n=$2 b=$3; shift 3
  "$BIN" submit train --coordinator "$ADDR" --world_size "$n" --batch_size "$b" --train_digits 9000 \
    --projector linear --seed 7 "$@" --wait --watch_timeout_ms 180000 > "$S/$name.txt" 2>&1 ||
    { echo "$name failed:"; tail -3 "$S/$name.txt"; } | say
  JOB=$(job_of "$S/$name.txt")
}

if has scaling; then
  log "training scaling: $STEPS steps at batch $B per GPU on $NS GPUs (the job's own step times)"
  rows=()
  for n in $NS; do
    train "scale-$n" "$n" "$B" --lr 1e-3 --max_steps "$STEPS" --checkpoint_every 0
    "$BIN" status "$JOB" --coordinator "$ADDR" --history > "$S/scale-$n.history.txt"
    rows+=("$n:$((n * B)):$S/scale-$n.history.txt")
  done
  "${MEASURE[@]}" train-scaling "${rows[@]}" | say
fi

if has correctness; then
  KMAX=$(tr ' ' '\n' <<<"$KS" | sort -n | tail -1)
  for opt in "sgd 0.05" "adamw 1e-3"; do
    read -r o lr <<<"$opt"
    for n in $NS; do  # one job per group size, a checkpoint after every step
      train "c-$o-$n" "$n" $((B / n)) --optimizer "$o" --lr "$lr" --max_steps "$KMAX" --checkpoint_every 1
      for k in $KS; do
        "$BIN" fetch-checkpoint "$(printf '%s/step-%06d' "$JOB" "$k")" --coordinator "$ADDR" \
          --projector_only --out "$S/c-$o-$n-$k.safetensors" > /dev/null
      done
    done
    for n in $NS; do
      (( n > 1 )) || continue
      for k in $KS; do
        log "correctness, $o lr $lr, after $k step(s): $n GPUs x $((B / n)) vs 1 GPU x $B"
        "${MEASURE[@]}" compare "$S/c-$o-1-$k.safetensors" "$S/c-$o-$n-$k.safetensors" | say
      done
    done
  done
fi

if has failure; then
  K=$((GPUS - 1))
  log "failure: SIGKILL of worker-$K of $GPUS mid-training (worker timeout 2 s, collective timeout 10 s)"
  "$BIN" submit train --coordinator "$ADDR" --world_size "$GPUS" --batch_size "$B" --train_digits 9000 \
    --projector linear --seed 7 --max_steps "${FAIL_STEPS:-40}" --checkpoint_every 5 > "$S/fail.txt" 2>&1
  FJOB=$(job_of "$S/fail.txt")
  for _ in $(seq 600); do
    "$BIN" status "$FJOB" --coordinator "$ADDR" | grep -q "ckpt " && break; sleep 0.1
  done
  "$BIN" status "$FJOB" --coordinator "$ADDR" | say
  KILL_AT=$(date +%H:%M:%S.%N); T0=$(date +%s%N)
  kill -9 "${WPID[$K]}"
  for _ in $(seq 600); do
    "$BIN" status "$FJOB" --coordinator "$ADDR" | grep -q RESTARTING && break; sleep 0.05
  done
  echo "status shows RESTARTING $(( ($(date +%s%N) - T0) / 1000000 )) ms after the kill" | say
  "$BIN" status "$FJOB" --coordinator "$ADDR" | say
  start_worker "$K"
  "$BIN" watch "$FJOB" --coordinator "$ADDR" --watch_timeout_ms 240000 > "$S/fail-watch.txt" 2>&1
  grep -a "attempt 2" "$S/fail-watch.txt" | head -1 | say
  tail -1 "$S/fail-watch.txt" | say
  "${MEASURE[@]}" failure "$S/coordinator.log" "worker-$K" "$KILL_AT" "$S"/worker-*.log | say
fi

if has evalsame; then
  CK=${FJOB:-${JOB:-}}; EB=$((EVAL / GPUS))
  [[ -n $CK ]] || { train evalsame-train "$GPUS" "$B" --max_steps 2; CK=$JOB; }
  log "eval of $CK on 1 and on $GPUS workers, batch $EB (the same batches either way)"
  for n in 1 "$GPUS"; do
    "$BIN" submit eval --coordinator "$ADDR" --checkpoint "$CK" --eval_workers "$n" --eval_batch_size "$EB" \
      --eval_digits "$EVAL" --wait --watch_timeout_ms 180000 > "$S/eval-$n.txt" 2>&1
    "$BIN" status "$(job_of "$S/eval-$n.txt")" --coordinator "$ADDR" --report_out "$S/eval-$n.json" | head -1 | say
  done
  "${MEASURE[@]}" same-answers "$S/eval-1.json" "$S/eval-$GPUS.json" | say
fi

stop_cluster; trap - EXIT
for f in "$S"/*.log; do cp "$f" "$OUT/cluster-$(basename "$f")"; done
grep -ah -iE "nccl|abort" "$S"/worker-*.log | head -20 >> "$SUMMARY"
log "done"
