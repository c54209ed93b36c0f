#!/usr/bin/env python3
"""Figures for scripts/gpu_cluster.sh and scripts/gpu_eval_scaling.sh, from what the
product prints and logs (no third-party packages needed; numpy is used when present).

  train-scaling N:BATCH:HISTORY ... `status --history` of a training job on N GPUs with global
                                    batch BATCH (the same per GPU): median step, samples/s, efficiency
  compare A B                       projector tensors of two checkpoints: relative error
  same-answers A.json B.json        eval reports: samples identical
  eval-scaling COORD_LOG JOBS ANSWERS  jobs file lines "job round n wall_ms": job time in the
                                    coordinator and wall time, medians over warm rounds
  projector-times JOBS WORKER_LOG...  each eval job's projector time (its slowest task's:
                                    download or broadcast, parse, restore), medians by workers
  failure COORD_LOG KILLED KILL_TIME WORKER_LOG...  what happened after the kill, in ms
"""
import json
import re
import statistics
import struct
import sys

# glog: Lyyyymmdd hh:mm:ss.uuuuuu (or Lmmdd ...), local time.
STAMP = re.compile(r"^[IWEF]\d{4,8} (\d+):(\d+):([\d.]+) +\d+ [^\]]*\] (.*)$")


def seconds(h, m, s):
    return (int(h) * 60 + int(m)) * 60 + float(s)


def log_lines(path):
    """(seconds of the day, message) of each glog line."""
    for line in open(path, errors="replace"):
        m = STAMP.match(line)
        if m:
            yield seconds(*m.groups()[:3]), m.group(4)


def launch_median(values):
    """The median `launch` prints: the upper middle of the sorted values."""
    v = sorted(values)
    return v[len(v) // 2]


def train_scaling(args):
    rows = []
    for arg in args:
        n, batch, path = arg.split(":", 2)
        step_ms, reduce_ms = [], []
        for line in open(path):
            m = re.match(r"step (\d+) .* step_ms ([\d.]+) allreduce_ms ([\d.]+)", line)
            if m:
                step_ms.append(float(m.group(2)))
                reduce_ms.append(float(m.group(3)))
        # As `launch` does: medians over the steps after the first 3 (warm-up).
        ms = launch_median(step_ms[3:])
        rows.append((int(n), int(batch), ms, launch_median(reduce_ms[3:]), len(step_ms) - 3))
    one = next(r for r in rows if r[0] == 1)
    base = one[1] / (one[2] / 1000)
    print("| GPUs | global batch | median step | all-reduce | samples/s | efficiency |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, batch, ms, red, steps in rows:
        rate = batch / (ms / 1000)
        print(f"| {n} | {batch} | {ms:.1f} ms | {red:.2f} ms | {rate:.1f} | {rate / (n * base):.3f} |"
              f"  <- {steps} steps after 3 warm-up")


def read_safetensors(path):
    data = open(path, "rb").read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    body = data[8 + size:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = body[b:e]
        if t["dtype"] == "F32":
            out[name] = struct.unpack(f"<{len(raw) // 4}f", raw)
        elif t["dtype"] == "BF16":
            half = struct.unpack(f"<{len(raw) // 2}H", raw)
            out[name] = struct.unpack(f"<{len(half)}f", struct.pack(f"<{len(half)}I", *(h << 16 for h in half)))
        else:
            raise SystemExit(f"{path}: {name}: dtype {t['dtype']} not handled")
    return out


def rel_error(x, y):
    try:
        import numpy as np
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return float(np.linalg.norm(x - y) / np.linalg.norm(x))
    except ImportError:
        num = sum((p - q) ** 2 for p, q in zip(x, y))
        den = sum(p * p for p in x)
        return (num / den) ** 0.5 if den else float("inf")


def compare(args):
    a, b = read_safetensors(args[0]), read_safetensors(args[1])
    worst = 0.0
    for k in sorted(a):
        if not k.startswith("projector."):
            continue
        err = rel_error(a[k], b[k])
        worst = max(worst, err)
        print(f"  {k}: rel. error {err:.3e}")
    print(f"  max rel. error {worst:.3e} (bound 2e-2: {'ok' if worst <= 2e-2 else 'EXCEEDED'})")


def same_answers(args):
    a = json.load(open(args[0]))["samples"]
    b = json.load(open(args[1]))["samples"]
    same = sum(p == q for p, q in zip(a, b))
    print(f"eval samples identical: {same} of {len(a)} ({len(b)} in the second)")


def eval_scaling(args):
    log, jobs, answers = args[0], args[1], int(args[2])
    t = {}
    for when, msg in log_lines(log):
        m = re.match(r"job (\S+) (submitted|succeeded)", msg)
        if m:
            t[m.groups()] = when
    rows = {}  # (round, n) -> (wall ms, job ms in the coordinator)
    for line in open(jobs):
        if not line.startswith("eval-"):
            continue  # a submission that failed (its error, then the round)
        job, rnd, n, wall = line.split()
        inside = 1000 * (t[(job, "succeeded")] - t[(job, "submitted")]) if (job, "succeeded") in t else float("nan")
        rows[(int(rnd), int(n))] = (float(wall), inside)
        print(f"round {rnd}, {n} worker(s), {job}: {answers} answers: submit --wait {float(wall):.0f} ms, "
              f"in the coordinator {inside:.0f} ms ({answers * 1000 / inside:.0f} answers/s)")
    ns = sorted({n for _, n in rows})
    rounds = sorted({r for r, _ in rows})
    warm = [r for r in rounds if r > 1 and all((r, n) in rows for n in ns)] or rounds
    print(f"\nmedians over rounds {warm} ({answers} answers a job):")
    print("| workers | job time in the coordinator (median) | answers/s | efficiency | per round | "
          "submit --wait wall (median) | efficiency (wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    med = {n: [statistics.median(rows[(r, n)][i] for r in warm) for i in (0, 1)] for n in ns}
    for n in ns:
        per_round = ", ".join(f"{rows[(r, 1)][1] / (n * rows[(r, n)][1]):.3f}" for r in warm)
        print(f"| {n} | {med[n][1]:.0f} ms | {answers * 1000 / med[n][1]:.1f} | "
              f"{med[1][1] / (n * med[n][1]):.3f} | {per_round} | {med[n][0]:.0f} ms | {med[1][0] / (n * med[n][0]):.3f} |")


def projector_times(args):
    jobs, logs = args[0], args[1:]
    tasks = {}  # job -> [(projector ms, how)]
    for path in logs:
        for _, msg in log_lines(path):
            m = re.match(r"eval task (\S+) rank \d+: .* projector ([\d.]+) ms \((.*?)\), answers", msg)
            if m:
                tasks.setdefault(m.group(1), []).append((float(m.group(2)), m.group(3)))
    by_n = {}  # n -> [(round, slowest task's projector ms)]
    for line in open(jobs):
        if not line.startswith("eval-"):
            continue
        job, rnd, n, _ = line.split()
        if job in tasks:
            by_n.setdefault(int(n), []).append((int(rnd), max(ms for ms, _ in tasks[job])))
            print(f"round {rnd}, {n} worker(s), {job}: projector " +
                  "; ".join(f"{ms:.0f} ms ({how})" for ms, how in sorted(tasks[job])))
    print("\n| workers | projector time of the job (its slowest task), median over rounds >= 2 | per round |")
    print("| --- | --- | --- |")
    for n in sorted(by_n):
        warm = [ms for r, ms in by_n[n] if r > 1] or [ms for _, ms in by_n[n]]
        print(f"| {n} | {statistics.median(warm):.0f} ms | " +
              ", ".join(f"{ms:.0f}" for _, ms in sorted(by_n[n])) + " |")


def failure(args):
    coord, killed, kill_at, workers = args[0], args[1], args[2], args[3:]
    t0 = seconds(*kill_at.split(":"))
    events = []
    patterns = [
        (r"job \S+ restarting .*", "coordinator"),
        (r"worker \S+ registered .*", "coordinator"),
        (r"job \S+ attempt \d+ started .*", "coordinator"),
        (r"job \S+ (succeeded|failed).*", "coordinator"),
    ]
    for when, msg in log_lines(coord):
        if when >= t0 and any(re.match(p, msg) for p, _ in patterns):
            events.append((when, "coordinator", msg))
    for path in workers:
        name = re.search(r"(worker-\d+)", path).group(1)
        for when, msg in log_lines(path):
            if when >= t0 and re.search(r"told to abandon|task ended|registered with|nccl|abort", msg, re.I):
                events.append((when, name, msg))
    print(f"SIGKILL of {killed} at {kill_at}; then (ms after the kill):")
    for when, who, msg in sorted(events):
        print(f"  +{1000 * (when - t0) % 86400000:8.0f} ms  {who}: {msg[:200]}")


COMMANDS = {"train-scaling": train_scaling, "compare": compare, "same-answers": same_answers,
            "eval-scaling": eval_scaling, "projector-times": projector_times, "failure": failure}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
