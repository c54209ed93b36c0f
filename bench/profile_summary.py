#!/usr/bin/env python3
"""Where a profiled step's GPU time went: sums the kernels of Chrome traces that
`llava-mnist bench --profile_dir DIR` writes (libtorch's Kineto profiler).

For each trace: the step's span (first kernel start to last kernel end), the time the GPU
ran any kernel, kernel time per kind (FP8 GEMM, other GEMM, attention, RoPE, FP8
quantization, elementwise, reductions, copies), per launching thread (autograd runs the
backward on a thread of its own, so for a training step the threads split forward from
backward), the kernels that took the most time, and where the GPU sat idle: in short gaps
between kernels (launch overhead, which CUDA graphs remove) or in long ones (the host
waiting or working, which they do not), with the longest gaps and when they began.

  bench/profile_summary.py DIR_OR_TRACE... [--top N] [--json OUT]
"""
import argparse
import collections
import json
import os
import re
import sys

# First match wins: order from the most specific.
KINDS = [
    ("fp8 quantize", re.compile(r"QuantizeRows|quantize", re.I)),
    # cuBLAS's Hopper GEMMs are nvjet_*; "qq" in the name: FP8 operands.
    ("fp8 gemm", re.compile(r"e4m3|e5m2|f8f8|fp8|float8|nvjet_sm\d+_qq", re.I)),
    ("attention", re.compile(r"flash|fmha|attention|softmax", re.I)),
    ("rope", re.compile(r"rope|roll_cuda", re.I)),
    ("gemm", re.compile(r"gemm|xmma|cutlass|nvjet|sm\d+_.*tensorop|ampere_|cublas|matmul", re.I)),
    ("reduce", re.compile(r"reduce|norm|argmax|cross_entropy|nll_loss", re.I)),
    ("copy", re.compile(r"copy|cat|memcpy|memset|index|gather|scatter|embedding", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|pointwise|swiglu|silu", re.I)),
]


def kind_of(name):
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def short(name, width=110):
    name = re.sub(r"\s+", " ", name)
    return name if len(name) <= width else name[: width - 3] + "..."


def busy_us(intervals):
    """Total length of the union of [start, end) intervals."""
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


# A gap between kernels at most this long is launch overhead: the host was queuing the
# next kernel rather than waiting for the device or doing work of its own.
SHORT_GAP_US = 50.0


def gaps_us(intervals):
    """The idle gaps between the union of [start, end) intervals: (start, length) each."""
    out, end = [], None
    for s, e in sorted(intervals):
        if end is not None and s > end:
            out.append((end, s - end))
        end = e if end is None else max(end, e)
    return out


def summarize(path, top):
    with open(path) as f:
        events = json.load(f).get("traceEvents", [])
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    if not kernels:
        return {"trace": path, "error": "no GPU kernels in this trace"}
    # The thread that launched each kernel, through the runtime call's correlation id.
    launcher = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cuda_runtime":
            corr = e.get("args", {}).get("correlation")
            if corr is not None:
                launcher[corr] = e.get("tid")
    start = min(k["ts"] for k in kernels)
    end = max(k["ts"] + k["dur"] for k in kernels)
    intervals = [(k["ts"], k["ts"] + k["dur"]) for k in kernels]
    busy = busy_us(intervals)
    gaps = gaps_us(intervals)
    short_gaps = [g for _, g in gaps if g <= SHORT_GAP_US]
    by_kind = collections.Counter()
    by_thread = collections.Counter()
    by_name = collections.Counter()
    count = collections.Counter()
    for k in kernels:
        by_kind[kind_of(k["name"])] += k["dur"]
        by_thread[str(launcher.get(k.get("args", {}).get("correlation"), "?"))] += k["dur"]
        by_name[k["name"]] += k["dur"]
        count[k["name"]] += 1
    total = sum(k["dur"] for k in kernels)
    return {
        "trace": path,
        "span_ms": (end - start) / 1e3,
        "gpu_busy_ms": busy / 1e3,
        "kernel_ms": total / 1e3,
        "kernels": len(kernels),
        "idle_short_ms": sum(short_gaps) / 1e3,
        "idle_short_gaps": len(short_gaps),
        "idle_long_ms": sum(g for _, g in gaps if g > SHORT_GAP_US) / 1e3,
        "idle_long_gaps": len(gaps) - len(short_gaps),
        # The longest gaps: when each began (ms after the first kernel) and its length.
        "longest_gaps": [{"at_ms": (t - start) / 1e3, "ms": g / 1e3}
                         for t, g in sorted(gaps, key=lambda x: -x[1])[:5]],
        "by_kind_ms": {k: v / 1e3 for k, v in by_kind.most_common()},
        "by_thread_ms": {k: v / 1e3 for k, v in by_thread.most_common()},
        "top": [
            {"name": n, "ms": v / 1e3, "count": count[n], "share": v / total}
            for n, v in by_name.most_common(top)
        ],
    }


def print_summary(s):
    print(f"== {s['trace']}")
    if "error" in s:
        print("  " + s["error"])
        return
    span = s["span_ms"]
    print(f"  span {span:.1f} ms, GPU busy {s['gpu_busy_ms']:.1f} ms ({100 * s['gpu_busy_ms'] / span:.1f}%), "
          f"{s['kernels']} kernels, {s['kernel_ms']:.1f} ms of kernels")
    print(f"  idle: {s['idle_short_ms']:.1f} ms in {s['idle_short_gaps']} gaps of <= {SHORT_GAP_US:.0f} us, "
          f"{s['idle_long_ms']:.1f} ms in {s['idle_long_gaps']} longer; longest: "
          + ", ".join(f"{g['ms']:.2f} ms at {g['at_ms']:.1f}" for g in s["longest_gaps"]))
    print("  by kind: " + ", ".join(f"{k} {v:.1f}" for k, v in s["by_kind_ms"].items()))
    print("  by launching thread: " + ", ".join(f"{k} {v:.1f}" for k, v in s["by_thread_ms"].items()))
    for t in s["top"]:
        print(f"  {t['ms']:8.2f} ms {100 * t['share']:5.1f}% x{t['count']:<5d} {short(t['name'])}")


def traces(paths):
    for p in paths:
        if os.path.isdir(p):
            for n in sorted(os.listdir(p)):
                if n.endswith(".json"):
                    yield os.path.join(p, n)
        else:
            yield p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    out = [summarize(p, a.top) for p in traces(a.paths)]
    for s in out:
        print_summary(s)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
