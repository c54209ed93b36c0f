#!/usr/bin/env bash
# A client call's wall time, start to exit: `status JOB` and `health` of each binary given,
# interleaved call by call so that both see the same machine load, against one coordinator
# (llava-ctl's, on loopback) holding a queued training job. Prints the median and the
# fastest and slowest of N calls per binary and command.
#   bench/client_latency.sh [N] [BINARY...]   (default: 30, build/bin/llava-ctl build/bin/llava-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-30}
shift || true
BINS=("$@")
((${#BINS[@]})) || BINS=(build/bin/llava-ctl build/bin/llava-mnist)
CTL=${LLAVA_CTL:-build/bin/llava-ctl}
work=$(mktemp -d)
"$CTL" coordinator --listen=127.0.0.1:0 --state_dir="$work/state" --port_file="$work/port" \
  > "$work/coordinator.log" 2>&1 &
coord=$!
trap 'kill $coord 2>/dev/null; wait $coord 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
addr=127.0.0.1:$(cat "$work/port")
job=$("$CTL" submit train --coordinator="$addr" --world_size=2 --wait_for_workers --quiet)
/usr/bin/python3 - "$N" "$addr" "$job" "${BINS[@]}" <<'PY'
import statistics, subprocess, sys, time
n, addr, job, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
calls = {"status": ["status", job], "health": ["health"]}
times = {(b, c): [] for b in bins for c in calls}
for i in range(n + 1):  # the first round warms the page cache and is dropped
    for c, args in calls.items():
        for b in bins:
            t = time.perf_counter()
            subprocess.run([b, *args, f"--coordinator={addr}"], check=True, stdout=subprocess.DEVNULL)
            if i > 0:
                times[(b, c)].append((time.perf_counter() - t) * 1e3)
print(f"{n} calls each, ms: median (min-max)")
for (b, c), ts in times.items():
    print(f"  {b:28s} {c:7s} {statistics.median(ts):7.1f} ({min(ts):.1f}-{max(ts):.1f})")
PY
