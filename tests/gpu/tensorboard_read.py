#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own EventAccumulator and checks
them against the run's loss.csv (issue 18 item 1). Needs the `tensorboard` package (the
GPU machine has it); not part of ctest.

    python3 tests/gpu/tensorboard_read.py RUN_TB_DIR --loss_csv LOSS_CSV \
        [--eval_questions "What digit is this?|What is this number?"] [--expect_loss_scale]

RUN_TB_DIR is one run: `train`'s <out_dir>/tb, or launch's runs/launch/tb/train-000001.
Prints every tag with its steps. Exits 1 when a tag is missing or unexpected, when a train
tag's steps differ from loss.csv's (a step redone after a restart counts once, its last
value), when train/loss or train/learning_rate differ from loss.csv beyond float32
rounding, or when the eval tags are not at the last step.
"""
import argparse
import csv
import math
import sys

from tensorboard.backend.event_processing import event_accumulator

TRAIN_TAGS = ["train/loss", "train/learning_rate", "train/samples_per_second", "train/grad_norm"]


def read_loss_csv(path):
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["step"])] = row  # a redone step: the last one wins, as in TensorBoard
    return rows


def close(a, b):
    # float32 in the event file, %.6g in loss.csv
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir")
    p.add_argument("--loss_csv", required=True)
    p.add_argument("--eval_questions", default="What digit is this?|What is this number?",
                   help="'|'-separated; empty: no eval expected")
    p.add_argument("--expect_loss_scale", action="store_true", help="float16 runs: train/loss_scale too")
    args = p.parse_args()

    acc = event_accumulator.EventAccumulator(args.logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = sorted(acc.Tags()["scalars"])
    steps = {t: [e.step for e in acc.Scalars(t)] for t in tags}
    print(f"{args.logdir}: file_version {acc.file_version}, {len(tags)} scalar tags")
    for t in tags:
        s = steps[t]
        shown = s if len(s) <= 8 else s[:3] + ["..."] + s[-3:]
        print(f"  {t}: {len(s)} steps {shown}")

    errors = []
    if acc.file_version != 2:
        errors.append(f"file_version {acc.file_version}, expected 2 (brain.Event:2)")
    loss = read_loss_csv(args.loss_csv)
    csv_steps = sorted(loss)
    questions = [q.strip() for q in args.eval_questions.split("|") if q.strip()]
    expected = set(TRAIN_TAGS)
    if args.expect_loss_scale:
        expected.add("train/loss_scale")
    if questions:
        expected |= {"eval/accuracy"} | {f"eval/question/{q}" for q in questions}
        expected |= {f"eval/class/{d}" for d in range(10)}
    for t in sorted(expected - set(tags)):
        errors.append(f"missing tag {t}")
    for t in sorted(set(tags) - expected):
        errors.append(f"unexpected tag {t}")
    for t in sorted(expected & set(tags)):
        if t.startswith("train/"):
            if steps[t] != csv_steps:
                errors.append(f"{t}: steps {steps[t][:5]}... ({len(steps[t])}) differ from loss.csv's "
                              f"{csv_steps[:5]}... ({len(csv_steps)})")
        elif steps[t] != [csv_steps[-1]]:
            errors.append(f"{t}: steps {steps[t]}, expected the last step [{csv_steps[-1]}]")
    for t, column in (("train/loss", "loss"), ("train/learning_rate", "lr")):
        if t not in tags:
            continue
        for e in acc.Scalars(t):
            want = float(loss[e.step][column]) if e.step in loss else None
            if want is None or not close(e.value, want):
                errors.append(f"{t} at step {e.step}: {e.value} vs loss.csv {want}")
                break
    if "eval/accuracy" in tags:
        print(f"  eval/accuracy at step {acc.Scalars('eval/accuracy')[-1].step}: "
              f"{acc.Scalars('eval/accuracy')[-1].value:.4f}")
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"FAILED ({len(errors)} errors)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
