#!/usr/bin/env python3
"""Every phrasing's accuracy side by side, per format and seed, from the runs that
scripts/accuracy_sweep.sh kept (WORK/runs/*/summary.json), and for each format after the
first, each seed's largest drop from the first format's same seed over the phrasings (the
issue 19 bound: FP8 within 0.5 points of bf16 on every phrasing).

  scripts/accuracy_phrasings.py OUT.tsv NAME=WORK_DIR...   (the first NAME is the baseline)
"""
import glob
import json
import sys


def load(work):
    """{seed: {phrasing: accuracy}} of the runs under `work`."""
    runs = {}
    for path in sorted(glob.glob(f"{work}/runs/*/summary.json")):
        with open(path) as f:
            s = json.load(f)
        runs[s["seed"]] = s["per_question"]
    return runs


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        print(__doc__, file=sys.stderr)
        return 2
    formats = [a.split("=", 1) for a in argv[2:]]
    runs = {name: load(work) for name, work in formats}
    cols = [(name, seed) for name, _ in formats for seed in sorted(runs[name])]
    phrasings = []
    for name, seed in cols:
        for q in runs[name][seed]:
            if q not in phrasings:
                phrasings.append(q)
    with open(argv[1], "w") as out:
        out.write("phrasing\t" + "\t".join(f"{n} seed {s}" for n, s in cols) + "\n")
        for q in phrasings:
            vals = [runs[n][s].get(q) for n, s in cols]
            out.write(q + "\t" + "\t".join("" if v is None else f"{v:.4f}" for v in vals) + "\n")
    base_name = formats[0][0]
    base = runs[base_name]
    for name, _ in formats[1:]:
        for seed in sorted(set(runs[name]) & set(base)):
            drops = [(base[seed][q] - runs[name][seed][q], q)
                     for q in base[seed] if q in runs[name][seed]]
            drop, q = max(drops)
            gain = -min(drops)[0] + 0.0
            print(f"{name} vs {base_name}, seed {seed}: {len(drops)} phrasings, largest drop "
                  f"{100 * drop:+.1f} points ({q!r}), largest gain {100 * gain:+.1f}")
    print(f"per phrasing: {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
