#!/usr/bin/env bash
# Eval scaling on a GPU machine (issue 6): the same checkpoint evaluated by 1 and by 2
# workers at the same per-GPU batch, ROUNDS times each, alternating (the first round is
# the cold one). Two figures per job: the wall time of `submit eval --wait` (the client
# process's start, scheduling, the answers, the report's way back) and the job's own time
# inside the coordinator (from "submitted" to "succeeded" in its log). The workers log
# where each eval task's time went ("eval task ... projector ... answers ..."). Results
# in $OUT. Every job evaluates the training job's final checkpoint, or with
# NEW_CHECKPOINT=1 one of its three checkpoints in turn, so that no worker evaluates the
# checkpoint it evaluated last (its cached projector does not help).
#   EVAL_BATCH (500), EVAL_DIGITS (1000), QUESTIONS ("q1|q2|..."; default: the job's two),
#   ROUNDS (2), NEW_CHECKPOINT (0), BIN, MODEL, DEVICE
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
BIN=${BIN:-build-gpu/bin/llava-mnist}; MODEL=${MODEL:-synthetic:llama-3.1-8b}; DEVICE=${DEVICE:-cuda}
EB=${EVAL_BATCH:-500}; N=${EVAL_DIGITS:-1000}; ROUNDS=${ROUNDS:-2}
QARGS=(); NQ=2
if [[ -n "${QUESTIONS:-}" ]]; then
  QARGS=(--questions "$QUESTIONS"); NQ=$(awk -F'|' '{print NF}' <<<"$QUESTIONS")
fi
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
"$BIN" submit train --coordinator "$ADDR" --world_size 2 --batch_size 16 --max_steps 3 --checkpoint_every 1 \
  --wait > "$S/train.txt" 2>&1
JOB=$(head -1 "$S/train.txt")
: > "$S/jobs.txt"
k=0
for r in $(seq "$ROUNDS"); do
  for n in 1 2; do
    k=$((k + 1))
    CKPT=$JOB
    [[ ${NEW_CHECKPOINT:-0} == 1 ]] && CKPT=$(printf "%s/step-%06d" "$JOB" $((k % 3 + 1)))
    t0=$(date +%s%N)
    "$BIN" submit eval --coordinator "$ADDR" --checkpoint "$CKPT" --eval_workers $n --eval_batch_size "$EB" \
      --eval_digits "$N" "${QARGS[@]}" --wait > "$S/eval.txt" 2>&1 || { echo "eval failed:"; tail -3 "$S/eval.txt"; } | tee -a "$OUT/evalscale.txt"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "$(head -1 "$S/eval.txt") $r $n $ms" >> "$S/jobs.txt"
  done
done
kill $(jobs -p) 2>/dev/null; wait
cp "$S"/coordinator.log "$S"/worker-*.log "$OUT"/ 2>/dev/null
grep -ah "eval task" "$S"/worker-*.log | sed 's/^.*\] //' | tee -a "$OUT/evalscale.txt"
# Each job's own time from the coordinator's log (glog: Lmmdd hh:mm:ss.uuuuuu).
python3 - "$S/coordinator.log" "$S/jobs.txt" "$((N * NQ))" "$EB" <<'EOF' | tee -a "$OUT/evalscale.txt"
import re, sys
log, jobs, answers, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
stamp = re.compile(r"^[IWEF](?:\d{4})?\d{4} (\d+):(\d+):([\d.]+) .*\] job (\S+) (submitted|succeeded)")
t = {}
for line in open(log, errors="replace"):
    m = stamp.match(line)
    if m:
        h, mi, s, job, what = m.groups()
        t[(job, what)] = (int(h) * 60 + int(mi)) * 60 + float(s)
rows = {}
for line in open(jobs):
    job, rnd, n, wall = line.split()
    inside = 1000 * (t[(job, "succeeded")] - t[(job, "submitted")]) if (job, "succeeded") in t else float("nan")
    rows[(int(rnd), int(n))] = (float(wall), inside)
    print(f"round {rnd}, {n} worker(s), {job}: {answers} answers, batch {batch}: submit --wait {float(wall):.0f} ms "
          f"({answers * 1000 / float(wall):.0f} answers/s), in the coordinator {inside:.0f} ms ({answers * 1000 / inside:.0f} answers/s)")
last = max(r for r, _ in rows)
for i, what in ((0, "submit --wait"), (1, "in the coordinator")):
    one, two = rows[(last, 1)][i], rows[(last, 2)][i]
    print(f"scaling, round {last}, {what}: {answers * 1000 / two:.1f} / (2 x {answers * 1000 / one:.1f}) = {one / (2 * two):.3f}")
# Medians over the warm rounds (every round after the first), as the issue asks.
import statistics
warm = [r for r, n in rows if n == 1 and r > 1 and (r, 2) in rows]
if warm:
    for i, what in ((0, "submit --wait"), (1, "in the coordinator")):
        one = statistics.median(rows[(r, 1)][i] for r in warm)
        two = statistics.median(rows[(r, 2)][i] for r in warm)
        print(f"scaling, median of rounds 2-{last}, {what}: {answers * 1000 / two:.1f} / (2 x {answers * 1000 / one:.1f}) "
              f"= {one / (2 * two):.3f}")
EOF
