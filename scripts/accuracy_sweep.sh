#!/usr/bin/env bash
# The accuracy levers of issue 20, one at a time, on the demo LM: each run trains a recipe
# with `llava-mnist train` and evaluates its checkpoint with `llava-mnist eval --robustness`
# on the two published questions and on the demo LM's held-out phrasings (seen neither by
# the projector nor by the demo LM: worker/demo_lm.cc HeldOutQuestions), and appends a row
# to a table: recipe, seed, accuracy per phrasing, the minimum over the held-out ones, the
# robustness views (shift 2 px, rotate 10 deg), train and eval seconds.
#
#   scripts/accuracy_sweep.sh                  # every lever at seed 0, then seeds 1 and 2 of the top two
#   scripts/accuracy_sweep.sh conv_aug_e3 ...  # only these runs (names below), at $SEEDS
#   scripts/accuracy_sweep.sh --list           # the runs and their flags
#
# Runs are kept in out/accuracy_sweep/ (git-ignored, kept between calls on the same
# machine) and a run already there is not run again, so calling the script again goes on
# where the budget stopped it. After every run the results are copied to $OUT/accuracy_sweep
# when OUT is set (the GPU machine's folder that comes back).
#
# Environment: OUT (see above), LLAVA_BIN (default
# build/bin/llava-mnist), DEVICE (default cuda), DTYPE (default float32, the CPU's, so the
# levers compare with the CPU runs; "auto" is bf16 on a GPU), SEEDS (default 0; with no
# names given, the top two also run at TOP_SEEDS, default "1 2"), BUDGET_S (stop starting
# runs after this many seconds, default 480: the device tool's 10-minute command limit;
# run it again), PARALLEL (runs at once on the one GPU, default 6: the demo LM keeps a GPU
# far from busy), EVAL_DIGITS (default -1: all 1,000 test digits). The demo LM is built first if data/models/demo-lm lacks one, exactly as
# scripts/setup.sh builds it. Results: results.tsv (one row per run, appended),
# results.md (the table), runs/<name>-s<seed>/ (summary.json, the logs, loss.csv,
# eval_report.json without its samples).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-out/accuracy_sweep}
BIN=${LLAVA_BIN:-build/bin/llava-mnist}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-float32}
WEIGHTS=${WEIGHTS:-dense}
SEEDS=${SEEDS:-0}
TOP_SEEDS=${TOP_SEEDS:-1 2}
BUDGET_S=${BUDGET_S:-480}
PARALLEL=${PARALLEL:-6}
EVAL_DIGITS=${EVAL_DIGITS:--1}
[[ -f .deps/prefix/env.sh ]] && source .deps/prefix/env.sh  # a scripts/gpu_build.sh build's libraries
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# PARALLEL processes share the host's cores: a few intra-op threads each.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=$(command -v python3 || echo /usr/bin/python3)

PUBLISHED="What digit is this?|What is this number?"
# worker/demo_lm.cc HeldOutQuestions(): in neither the projector's nor the demo LM's training.
HELD_OUT="Which digit is depicted?|What number is pictured?|Can you read this digit?|What is the digit shown in this image?|Determine the digit.|Which number appears in the image?|What digit is displayed?|State the digit you see.|What is this handwritten digit?|Which digit was drawn?|Please identify this number.|What numeral is shown?"

AUG="--augment_shift 2 --augment_rotate 10 --augment_scale 0.1"
AUG_STRONG="--augment_shift 3 --augment_rotate 15 --augment_scale 0.15"
CONV="--projector conv_mlp --projector_hidden 1024"
# The levers are measured against the main job's recipe before 2026-12-03, now
# recipes/quick.json (mlp2x_gelu, one epoch), at launch --workers 2's global batch in one
# process. conv_aug_e3 is recipes/main.json now, conv_aug_e15 recipes/best.json.
MAIN="--recipe recipes/quick.json --batch_size 32"
# recipes/best.json before 2026-12-02 (mlp2x_gelu, 6 epochs, weight decay 0.1).
BEST="$MAIN --train_digits -1 --epochs 6 --weight_decay 0.1"
# name|flags (one lever at a time against the main job's recipe, then combinations)
RUNS=(
  "main|$MAIN"
  "main_aug|$MAIN $AUG"
  "main_aug_strong|$MAIN $AUG_STRONG"
  "main_lr4e3|$MAIN --lr 0.004"
  "main_k4|$MAIN --image_tokens 4"
  "main_e3|$MAIN --epochs 3"
  "conv|$MAIN $CONV"
  "conv_aug|$MAIN $CONV $AUG"
  "conv_aug_lr1e3|$MAIN $CONV $AUG --lr 0.001"
  "conv_aug_lr4e3|$MAIN $CONV $AUG --lr 0.004"
  "conv_aug_const|$MAIN $CONV $AUG --schedule constant"
  "conv_aug_k4|$MAIN $CONV $AUG --image_tokens 4"
  "conv_aug_strong|$MAIN $CONV $AUG_STRONG"
  "main_aug_e3|$MAIN $AUG --epochs 3"
  "conv_aug_e2|$MAIN $CONV $AUG --epochs 2"
  "conv_aug_e3|$MAIN $CONV $AUG --epochs 3"
  "conv_aug_e6|$MAIN $CONV $AUG --epochs 6 --weight_decay 0.1"
  "conv_aug_e8|$MAIN $CONV $AUG --epochs 8 --weight_decay 0.1"
  "conv_aug_e10|$MAIN $CONV $AUG --epochs 10 --weight_decay 0.1"
  "conv_aug_e15|$MAIN $CONV $AUG --epochs 15 --weight_decay 0.1"
  "best|$BEST"
  "best_aug|$BEST $AUG"
)

flags_of() {
  local name=$1 entry
  for entry in "${RUNS[@]}"; do
    if [[ ${entry%%|*} == "$name" ]]; then echo "${entry#*|}"; return 0; fi
  done
  echo "unknown run '$name' (--list shows them)" >&2
  return 1
}

if [[ "${1:-}" == --list ]]; then
  for entry in "${RUNS[@]}"; do printf '%-18s %s\n' "${entry%%|*}" "${entry#*|}"; done
  exit 0
fi

mkdir -p "$WORK/runs"
rm -f "$WORK/.skipped"
if [[ ! -f data/models/demo-lm/model.safetensors ]]; then
  echo "== building the demo LM into data/models/demo-lm (as scripts/setup.sh)" >&2
  "$BIN" make-demo-lm --demo_out data/models/demo-lm >&2
fi
[[ -f "$WORK/results.tsv" ]] || printf 'recipe\tseed\tflags\tmin_all\tmin_held_out\tmean_held_out\tq_what_digit\tq_what_number\tshift2\trotate10\ttrain_s\teval_s\tsteps\n' > "$WORK/results.tsv"

START=$(date +%s)
# run NAME SEED: train, eval, one row.
run() {
  local name=$1 seed=$2 flags dir t0 t1 t2
  flags=$(flags_of "$name")
  dir="$WORK/runs/$name-s$seed"
  if [[ -f $dir/summary.json ]]; then
    echo "== $name seed $seed: done before" >&2
    return 0
  fi
  if (( $(date +%s) - START > BUDGET_S )); then
    echo "== budget of ${BUDGET_S}s spent: not running $name seed $seed (run the script again)" >&2
    touch "$WORK/.skipped"
    return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  echo "== $name seed $seed: train $flags" >&2
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086  # the flags are words
  if ! "$BIN" train $flags --seed "$seed" --device "$DEVICE" --dtype "$DTYPE" --weights "$WEIGHTS" --out_dir "$dir" \
      --eval_after=false > "$dir/train.log" 2>&1; then
    echo "== $name seed $seed: train FAILED (tail of $dir/train.log)" >&2
    tail -5 "$dir/train.log" >&2
    return 0
  fi
  t1=$(date +%s.%N)
  if ! "$BIN" eval --checkpoint "$dir/projector.safetensors" --device "$DEVICE" --dtype "$DTYPE" --weights "$WEIGHTS" \
      --questions "$PUBLISHED|$HELD_OUT" --eval_digits "$EVAL_DIGITS" --eval_batch_size 1000 \
      --robustness --report "$dir/eval_report.json" > "$dir/eval.log" 2>&1; then
    echo "== $name seed $seed: eval FAILED (tail of $dir/eval.log)" >&2
    tail -5 "$dir/eval.log" >&2
    return 0
  fi
  t2=$(date +%s.%N)
  "$PY" - "$dir" "$name" "$seed" "$flags" "$t0" "$t1" "$t2" >> "$WORK/results.tsv" <<'EOF'
import json, sys
d, name, seed, flags, t0, t1, t2 = sys.argv[1:]
r = json.load(open(f"{d}/eval_report.json"))
acc = {q["question"]: q["accuracy"] for q in r["per_question"]}
qs = r["questions"]
held = qs[2:]
views = {v["view"]: v["accuracy"] for v in r.get("robustness", [])}
steps = 0
for line in open(f"{d}/loss.csv"):
    if line[:1].isdigit():
        steps += 1
summary = {"recipe": name, "seed": int(seed), "flags": flags, "per_question": acc,
           "robustness": {v["view"]: {q["question"]: q["accuracy"] for q in v["per_question"]}
                          for v in r.get("robustness", [])},
           "train_s": float(t1) - float(t0), "eval_s": float(t2) - float(t1), "steps": steps,
           "metadata": r["metadata"]}
json.dump(summary, open(f"{d}/summary.json", "w"), indent=1)
# The report without its samples (the summary holds the figures; the samples are large).
r.pop("samples", None)
json.dump(r, open(f"{d}/eval_report.json", "w"), indent=1)
row = [name, seed, flags, min(acc.values()), min(acc[q] for q in held),
       sum(acc[q] for q in held) / len(held), acc[qs[0]], acc[qs[1]],
       views.get("shift 2 px", float("nan")), views.get("rotate 10 deg", float("nan")),
       float(t1) - float(t0), float(t2) - float(t1), steps]
print("\t".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
EOF
  tail -1 "$WORK/results.tsv" >&2
}

# start NAME SEED: run in the background, at most PARALLEL at once.
start() {
  run "$@" &
  while (( $(jobs -rp | wc -l) >= PARALLEL )); do
    wait -n || true
    publish
  done
}

# The results so far into $OUT/accuracy_sweep (when OUT is set).
publish() {
  table
  [[ -n ${OUT:-} ]] || return 0
  mkdir -p "$OUT/accuracy_sweep"
  cp "$WORK/results.tsv" "$WORK/results.md" "$OUT/accuracy_sweep/"
  (cd "$WORK" && find runs -name summary.json -o -name eval_report.json -o -name '*.log' -o -name loss.csv |
     tar cf - -T -) | tar xf - -C "$OUT/accuracy_sweep"
}

table() {
  "$PY" - "$WORK/results.tsv" > "$WORK/results.md" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| recipe | seed | min over all phrasings | held-out min / mean (12) | \"What digit is this?\" | "
      "\"What is this number?\" | shift 2 px | rotate 10 deg | train s | eval s | steps |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['recipe']} | {r['seed']} | {r['min_all']} | {r['min_held_out']} / {r['mean_held_out']} | "
          f"{r['q_what_digit']} | {r['q_what_number']} | {r['shift2']} | {r['rotate10']} | "
          f"{float(r['train_s']):.1f} | {float(r['eval_s']):.1f} | {r['steps']} |")
by = {}
for r in rows:
    by.setdefault(r["recipe"], []).append(float(r["min_all"]))
print("\nPer recipe over its seeds (min over all phrasings): mean, min, max, seeds")
for name, v in sorted(by.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])):
    print(f"- {name}: {sum(v) / len(v):.4f}, {min(v):.4f}, {max(v):.4f}, {len(v)}")
EOF
}

for name in "$@"; do flags_of "$name" > /dev/null; done  # unknown names fail before any run
if (( $# > 0 )); then
  for name in "$@"; do for seed in $SEEDS; do start "$name" "$seed"; done; done
  wait
else
  for entry in "${RUNS[@]}"; do for seed in $SEEDS; do start "${entry%%|*}" "$seed"; done; done
  wait
  # The two best by their worst phrasing at the first seed, again at TOP_SEEDS (once every
  # lever has its row).
  if [[ ! -f $WORK/.skipped ]]; then
    first=${SEEDS%% *}
    top=$(awk -F'\t' -v s="$first" 'NR > 1 && $2 == s {print $4 "\t" $1}' "$WORK/results.tsv" |
          sort -r | head -2 | cut -f2)
    for name in $top; do for seed in $TOP_SEEDS; do start "$name" "$seed"; done; done
    wait
  fi
fi
publish
cat "$WORK/results.md"
[[ ! -f $WORK/.skipped ]] || echo "== not finished within BUDGET_S: run the script again to go on" >&2
