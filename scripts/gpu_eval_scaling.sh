#!/usr/bin/env bash
# Eval scaling on a GPU machine (issues 6 and 7): one checkpoint's evaluation by each group
# size in NS (default 1 2 4 .. GPUS) at the same per-GPU batch, ROUNDS rounds, the sizes
# alternating within each (the first round is the cold one). Two figures per job: the wall
# time of `submit eval --wait` (the client process's start, scheduling, the answers, the
# report's way back) and the job's own time inside the coordinator (from "submitted" to
# "succeeded" in its log); medians over the warm rounds (2..ROUNDS). The workers log where
# each eval task's time went ("eval task ... projector ... answers ..."). Results in $OUT.
# Every job evaluates the training job's final checkpoint, or with NEW_CHECKPOINT=1 one of
# its |NS|+1 checkpoints in turn: a worker's next job comes at most |NS| jobs later (each is
# in every job of the largest size), so no worker evaluates the checkpoint it evaluated
# last (its cached projector does not help); the coordinator keeps 4 projector-only copies.
#   EVAL_DIGITS (1000), EVAL_BATCH (EVAL_DIGITS / the largest size: the same batches at every
#   size), QUESTIONS ("q1|q2|..."; default: the job's two), ROUNDS (2), NEW_CHECKPOINT (0),
#   TRAIN_ARGS (more `submit train` flags, e.g. a larger projector: "--projector mlp2x_gelu
#   --projector_hidden 4096");
#   GPUS, NS, BIN, MODEL, DEVICE, OUT: gpu_common.sh
set -uo pipefail
# shellcheck source=scripts/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
N=${EVAL_DIGITS:-1000}; ROUNDS=${ROUNDS:-2}
read -ra SIZES <<<"$NS"
EB=${EVAL_BATCH:-$((N / $(printf '%s\n' "${SIZES[@]}" | sort -n | tail -1)))}
QARGS=(); NQ=2
if [[ -n "${QUESTIONS:-}" ]]; then
  QARGS=(--questions "$QUESTIONS"); NQ=$(awk -F'|' '{print NF}' <<<"$QUESTIONS")
fi
CKPTS=1; [[ ${NEW_CHECKPOINT:-0} == 1 ]] && CKPTS=$(( ${#SIZES[@]} + 1 ))
echo "== eval scaling: GPUS=$GPUS sizes $NS, $N digits x $NQ questions, batch $EB, $ROUNDS rounds," \
  "checkpoints in turn: $CKPTS" | tee -a "$OUT/evalscale.txt"
# Every checkpoint kept (the default keeps 3: with 3 sizes, step 1 would be gone).
start_cluster runs/evalscale --heartbeat_interval_ms 50 --worker_timeout_ms 2000 \
  --keep_checkpoints "$CKPTS" || { stop_cluster; exit 1; }
trap stop_cluster EXIT
# shellcheck disable=SC2086  # TRAIN_ARGS: more `submit train` flags, word-split
"$BIN" submit train --coordinator "$ADDR" --world_size "$GPUS" --batch_size 16 --max_steps "$CKPTS" \
  --checkpoint_every 1 ${TRAIN_ARGS:-} --wait --watch_timeout_ms 180000 > "$S/train.txt" 2>&1
JOB=$(job_of "$S/train.txt")
: > "$S/jobs.txt"
k=0
for r in $(seq "$ROUNDS"); do
  for n in "${SIZES[@]}"; do
    k=$((k + 1))
    CKPT=$(printf "%s/step-%06d" "$JOB" $(( k % CKPTS + 1 )))
    t0=$(date +%s%N)
    "$BIN" submit eval --coordinator "$ADDR" --checkpoint "$CKPT" --eval_workers "$n" --eval_batch_size "$EB" \
      --eval_digits "$N" "${QARGS[@]}" --wait --watch_timeout_ms 180000 > "$S/eval.txt" 2>&1 ||
      { echo "eval failed:"; tail -3 "$S/eval.txt"; } | tee -a "$OUT/evalscale.txt"
    echo "$(job_of "$S/eval.txt") $r $n $(( ($(date +%s%N) - t0) / 1000000 ))" >> "$S/jobs.txt"
  done
done
stop_cluster; trap - EXIT
cp "$S"/coordinator.log "$S"/worker-*.log "$OUT"/ 2>/dev/null
grep -ah "eval task" "$S"/worker-*.log | sed 's/^.*\] //' | tee -a "$OUT/evalscale.txt"
# How each task got its projector: "(cached", "(downloaded in", "(from rank 0" (the broadcast).
how() { grep -ah "eval task" "$S"/worker-*.log | grep -c " ms .$1"; }
echo "eval tasks with the projector cached: $(how cached), downloaded: $(how downloaded)," \
  "from rank 0 over the group: $(how from)" | tee -a "$OUT/evalscale.txt"
"${MEASURE[@]}" eval-scaling "$S/coordinator.log" "$S/jobs.txt" "$((N * NQ))" | tee -a "$OUT/evalscale.txt"
"${MEASURE[@]}" projector-times "$S/jobs.txt" "$S"/worker-*.log | tee -a "$OUT/evalscale.txt"
