#!/usr/bin/env bash
# Two hosts simulated on one machine (issue 16): two network namespaces joined by a veth
# pair, the coordinator and worker-0 on host A (10.77.0.1), worker-1 on host B
# (10.77.0.2). Every process binds and advertises its own host's address: the
# coordinator listens on 10.77.0.1, each worker's Gloo transport takes its address from
# the environment as on Kubernetes (LLAVA_COLLECTIVE_HOST, POD_IP), and nothing listens
# on a wildcard or loopback address.
#  1. a training job on the plain link (fault-free): its step times and its checkpoint's
#     SHA-256 (`fetch-checkpoint`) are the reference;
#  2. the link shaped, 2 ms each way and 1gbit (`tc netem`; where the kernel has no
#     sch_netem, tests/netns/delay_line.py delays and tbf caps, said plainly): the same
#     job, the same SHA-256;
#  3. the same job again on the shaped link; once it has a checkpoint the link goes down
#     (`ip link set ... down`): the job must go RESTARTING and both ranks' all-reduce fail
#     within --collective_timeout_ms; the link comes back, the job resumes from its
#     checkpoint (attempt 2) and succeeds with the same SHA-256 as the fault-free runs.
# Prints the step and all-reduce times with and without shaping, the time to detect the
# cut (link down -> RESTARTING) and to resume (link up -> attempt 2 started). Host A is
# the usual place of a coordinator (beside a worker), and one cut then partitions worker-1
# from both its peer and the coordinator: the coordinator must see it alive again.
# Cleans up its namespaces and processes on any exit, bounded by LLAVA_NETNS_LIMIT.
# Needs root, network namespaces, iproute2 (`ip`, `tc`; scripts/setup.sh), python3, the
# binary and the demo LM. Not root, or no namespaces: exit 77 (ctest reports it skipped),
# saying why; anything else missing is a failure.
#   LLAVA_BINARY        the llava-mnist binary (default build/bin/llava-mnist)
#   LLAVA_NETNS_LIMIT   seconds before the whole test gives up and cleans up (default 330,
#                       under ctest's 360)
#   LLAVA_NETNS_KEEP=1  keep the work directory (logs) after a success too
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$(realpath -m "${LLAVA_BINARY:-build/bin/llava-mnist}")
MODEL=$ROOT/data/models/demo-lm
PY=$(command -v /usr/bin/python3 || command -v python3 || true)
NS_A=llava-host-a-$$
NS_B=llava-host-b-$$
IP_A=10.77.0.1
IP_B=10.77.0.2
COORD=$IP_A:50051
COLLECTIVE_TIMEOUT_MS=5000
WORKER_TIMEOUT_MS=3000
T0=$(date +%s)

log() { echo "[netns $(( $(date +%s) - T0 ))s] $*"; }
fail() { echo "[netns] FAIL: $*" >&2; exit 1; }
skip() { echo "[netns] SKIPPED: $*" >&2; exit 77; }
now() { date +%s.%N; }
# seconds_after T FILE PATTERN: how long after T (epoch seconds) the first line of the
# glog FILE matching PATTERN was written (glog stamps local time, as date reads it).
seconds_after() {
  local line stamp
  line=$(grep -m1 -E "$3" "$2") || return 1
  stamp=$(sed -E 's/^[IWEF]([0-9]{4})([0-9]{2})([0-9]{2}) ([0-9:.]+) .*/\1-\2-\3 \4/' <<< "$line")
  awk -v a="$1" -v b="$(date -d "$stamp" +%s.%N)" 'BEGIN {printf "%.2f", b - a}'
}

# --- prerequisites: what the machine cannot do is a skip, what setup installs a failure --
[[ $(id -u) == 0 ]] || skip "needs root (network namespaces, veth, tc); running as uid $(id -u)"
command -v ip >/dev/null && command -v tc >/dev/null || fail "ip and tc missing: install iproute2 (scripts/setup.sh)"
if ! why=$(ip netns add "$NS_A" 2>&1); then
  skip "cannot create a network namespace here (no CAP_SYS_ADMIN/CAP_NET_ADMIN or no netns support): $why"
fi

WORK=$(mktemp -d /tmp/llava-netns.XXXXXX)
PIDS=()
WATCHDOG_PID=""
# A signal may land while a wait_for redirects the output: the traps write to the
# script's own stdout and stderr (fds 3 and 4).
exec 3>&1 4>&2
teardown() {
  local rc=$?
  set +e
  exec 1>&3 2>&4
  if [[ -n $WATCHDOG_PID ]]; then
    pkill -P "$WATCHDOG_PID" sleep 2>/dev/null
    kill "$WATCHDOG_PID" 2>/dev/null
  fi
  # Our processes, then anything else left in our namespaces (only ours can be there).
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for ns in "$NS_A" "$NS_B"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "$NS_A" "$NS_B"; do
    ip netns del "$ns" 2>/dev/null
  done
  local left
  left=$(ip netns list | grep -E "^($NS_A|$NS_B)( |$)" || true)
  if [[ -n $left ]]; then
    echo "[netns] FAIL: namespaces left after teardown: $left" >&2
    rc=1
  fi
  if [[ $rc != 0 ]]; then
    echo "[netns] logs in $WORK:" >&2
    for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "--- $f (tail)"; tail -20 "$f"; } >&2; done
  elif [[ ${LLAVA_NETNS_KEEP:-0} != 1 ]]; then
    rm -rf "$WORK"
  fi
  log "done (rc $rc)"
  exit $rc
}
trap teardown EXIT
trap 'echo "[netns] FAIL: interrupted or over the time limit" >&4; exit 130' INT TERM
LIMIT=${LLAVA_NETNS_LIMIT:-330}
(sleep "$LIMIT" && kill -TERM $$) > /dev/null 2>&1 &
WATCHDOG_PID=$!

[[ -x $BIN ]] || fail "no binary $BIN (build the llava-mnist target)"
[[ -f $MODEL/model.safetensors ]] || fail "no demo LM in $MODEL (scripts/setup.sh builds it)"
[[ -f data/mnist/train-images-idx3-ubyte.gz ]] || fail "no MNIST in data/mnist (scripts/setup.sh)"
[[ -n $PY ]] || fail "no python3 (scripts/setup.sh)"

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" > "$WORK/wait.out" 2>&1; do
    (( $(date +%s) < end )) || { cat "$WORK/wait.out" >&2; fail "timed out after ${secs}s: $what"; }
    sleep 0.1
  done
}

# --- the two hosts --------------------------------------------------------------------
ip netns add "$NS_B"
ip link add veth-a netns "$NS_A" type veth peer name veth-b netns "$NS_B"
ip -n "$NS_A" addr add "$IP_A/24" dev veth-a
ip -n "$NS_B" addr add "$IP_B/24" dev veth-b
for ns in "$NS_A" "$NS_B"; do
  ip -n "$ns" link set lo up   # down in a fresh namespace
done
ip -n "$NS_A" link set veth-a up
ip -n "$NS_B" link set veth-b up
log "hosts: A $NS_A ($IP_A: coordinator, worker-0), B $NS_B ($IP_B: worker-1), veth"

on_a() { ip netns exec "$NS_A" "$@"; }
on_b() { ip netns exec "$NS_B" "$@"; }
cli() { on_a timeout 30 "$BIN" "$@" --coordinator "$COORD" --rpc_timeout_ms 5000; }

# --- the processes --------------------------------------------------------------------
on_a "$BIN" coordinator --listen "$COORD" --state_dir "$WORK/state" --heartbeat_interval_ms 200 \
  --tick_ms 50 --worker_timeout_ms $WORKER_TIMEOUT_MS --restart_wait_ms 60000 \
  --collective_timeout_ms $COLLECTIVE_TIMEOUT_MS > "$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
# A worker's Gloo address comes from the environment, as a pod's does: worker-0 is given
# LLAVA_COLLECTIVE_HOST, worker-1 only POD_IP (the fallback).
start_worker() {  # NS VAR=IP ID
  ip netns exec "$1" env -u LLAVA_COLLECTIVE_HOST -u POD_IP "$2" "$BIN" worker --coordinator "$COORD" \
    --worker_id "$3" --model "$MODEL" --tokenizer "$MODEL/tokenizer.json" \
    --data_dir "$ROOT/data/mnist" --device cpu --threads 1 --rpc_timeout_ms 2000 > "$WORK/$3.log" 2>&1 &
  PIDS+=($!)
}
start_worker "$NS_A" LLAVA_COLLECTIVE_HOST=$IP_A worker-0
start_worker "$NS_B" POD_IP=$IP_B worker-1
idle_workers() { [[ $(cli workers | grep -c ' alive .* idle$') == "$1" ]]; }
wait_for 90 "2 idle workers registered" idle_workers 2
cli workers

# The job: linear projector, 320 digits, 2 ranks x batch 4 (8 a step, 40 steps), a
# checkpoint every 5 steps.
SPEC=(--world_size 2 --projector linear --batch_size 4 --train_digits 320 --lr 2e-3 --seed 5
      --checkpoint_every 5)
STEPS=40
job_line() { cli status "$1" 2>&1 | head -1; }
job_state() { job_line "$1" | awk '{print $2}'; }
ended() { [[ $(job_state "$1") =~ ^(SUCCEEDED|FAILED|CANCELLED)$ ]]; }
submit() { cli submit train "${SPEC[@]}" | tail -1; }
# finish JOB: waits for its end; it must have succeeded with every step.
finish() {
  wait_for 150 "$1 ended" ended "$1"
  local line
  line=$(job_line "$1")
  [[ $line == "$1 SUCCEEDED step $STEPS/$STEPS "* ]] || fail "$line"
}
sha_of() {  # JOB: the SHA-256 of its fetched final checkpoint
  cli fetch-checkpoint "$1" --out "$WORK/$1.safetensors" > /dev/null
  sha256sum "$WORK/$1.safetensors" | awk '{print $1}'
}
# step_ms JOB: its median step time, median and least all-reduce time in ms (rank 0's,
# steps 4 on). A rank's all-reduce includes waiting for its peer's step: the least is the
# closest to the link's own cost.
step_ms() {
  cli status "$1" --history | awk '$1 == "step" && $2 > 3 {print $12, $14}' > "$WORK/steps.txt"
  local step reduce
  step=$(awk '{print $1}' "$WORK/steps.txt" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  reduce=$(awk '{print $2}' "$WORK/steps.txt" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)], v[1]}')
  echo "$step $reduce"
}
veth_bytes() { on_b cat /sys/class/net/veth-b/statistics/tx_bytes; }
# rtt_ms: the median of 20 round trips B -> A (a TCP SYN answered by a RST: no listener
# on port 9; there is no ping in our images).
rtt_ms() {
  on_b "$PY" -c '
import socket, statistics, sys, time
rtts = []
for _ in range(20):
    t = time.perf_counter()
    try:
        socket.create_connection((sys.argv[1], 9), timeout=5).close()
    except ConnectionRefusedError:
        pass
    rtts.append((time.perf_counter() - t) * 1000)
print(f"{statistics.median(rtts):.2f}")' "$IP_A"
}
PLAIN_RTT=$(rtt_ms)

# --- 1. the plain link: the reference ------------------------------------------------
log "job 1: fault-free on the plain link"
bytes0=$(veth_bytes)
J1=$(submit)
[[ $J1 == train-* ]] || fail "submit printed '$J1'"
finish "$J1"
SHA=$(sha_of "$J1")
read -r PLAIN_STEP PLAIN_REDUCE PLAIN_REDUCE_MIN <<< "$(step_ms "$J1")"
bytes1=$(veth_bytes)
# Each step worker-1 sends its half of the projector's gradient (784 x 128 float32) at
# least: the all-reduce crossed the link, not a loopback.
(( bytes1 - bytes0 > STEPS * 784 * 128 * 4 / 2 )) || fail "only $((bytes1 - bytes0)) bytes left host B"
log "$(job_line "$J1")"
log "job 1: step ${PLAIN_STEP} ms, all-reduce ${PLAIN_REDUCE} ms (medians); host B sent $((bytes1 - bytes0)) bytes; sha256 $SHA"

# --- 2. the shaped link ----------------------------------------------------------------
# netem where the kernel has it; else (CONFIG_NET_SCH_NETEM off, as on our VMs) each host's
# incoming IP packets pass through tests/netns/delay_line.py (a TAP device, tc ingress +
# mirred) and tbf caps the rate.
if tc -n "$NS_A" qdisc add dev veth-a root netem delay 2ms rate 1gbit 2> "$WORK/tc.err"; then
  tc -n "$NS_B" qdisc add dev veth-b root netem delay 2ms rate 1gbit
  SHAPE="netem delay 2ms rate 1gbit each way"
else
  log "no netem in this kernel ($(cat "$WORK/tc.err")): the delay comes from tests/netns/delay_line.py"
  SHAPE="delay_line.py 2 ms + tbf 1gbit each way (no netem in this kernel)"
  for host in "$NS_A veth-a" "$NS_B veth-b"; do
    read -r ns dev <<< "$host"
    ip netns exec "$ns" "$PY" tests/netns/delay_line.py delay0 2 > "$WORK/delay-$ns.log" 2>&1 &
    PIDS+=($!)
    wait_for 10 "the delay line's TAP in $ns" ip -n "$ns" link show delay0
    # Frames written back arrive on the TAP: it takes the veth's MAC and its packets pass
    # the reverse-path filter, whose route points at the veth.
    ip -n "$ns" link set delay0 address "$(ip netns exec "$ns" cat "/sys/class/net/$dev/address")"
    ip -n "$ns" link set delay0 up
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.delay0.rp_filter=0
    tc -n "$ns" qdisc add dev "$dev" handle ffff: ingress
    tc -n "$ns" filter add dev "$dev" parent ffff: protocol ip u32 match u32 0 0 \
      action mirred egress redirect dev delay0
    tc -n "$ns" qdisc add dev "$dev" root tbf rate 1gbit burst 256kb latency 50ms
  done
fi
RTT=$(rtt_ms)
awk -v r="$RTT" 'BEGIN {exit !(r >= 3.8)}' || fail "round trip ${RTT} ms over the shaped link, want 4"
log "link shaped: $SHAPE; round trip ${RTT} ms (median TCP connect), ${PLAIN_RTT} ms before"
log "job 2: fault-free on the shaped link"
J2=$(submit)
finish "$J2"
[[ $(sha_of "$J2") == "$SHA" ]] || fail "$J2's checkpoint differs from $J1's on the plain link"
read -r SHAPED_STEP SHAPED_REDUCE SHAPED_REDUCE_MIN <<< "$(step_ms "$J2")"
log "job 2: step ${SHAPED_STEP} ms, all-reduce ${SHAPED_REDUCE} ms (medians); the same sha256"

# --- 3. the link cut mid-training ------------------------------------------------------
log "job 3: the link goes down mid-training"
J3=$(submit)
ckpt_at_10() { job_line "$J3" | grep -Eq 'RUNNING .*ckpt [^ ]*/step-0*([1-9][0-9]+)'; }
wait_for 90 "$J3 running with a checkpoint at step >= 10" ckpt_at_10
# The Gloo pair crosses the link between the advertised addresses.
on_b ss -tnpH state established > "$WORK/ss-b.txt"
grep -q "$IP_B:[0-9]* *$IP_A:[0-9]*" "$WORK/ss-b.txt" || fail "no connection from $IP_B to $IP_A on host B"
grep "$IP_A:" "$WORK/ss-b.txt" | grep -v "$COORD" | grep -q . \
  || fail "worker-1 has no Gloo connection to $IP_A (only the coordinator's?): $(cat "$WORK/ss-b.txt")"
! grep -q '127\.0\.0\.1' "$WORK/ss-b.txt" || fail "a loopback connection on host B: $(cat "$WORK/ss-b.txt")"
# Every listening socket of both hosts is on its host's own address (gRPC shows an IPv4
# address as [::ffff:a.b.c.d]): none on a wildcard or on loopback.
for host in "$NS_A $IP_A" "$NS_B $IP_B"; do
  read -r ns ip <<< "$host"
  ip netns exec "$ns" ss -tlnH | awk '{print $4}' > "$WORK/listen-$ns.txt"
  ! grep -Evq "^(\[::ffff:)?${ip//./\\.}\]?:[0-9]+$" "$WORK/listen-$ns.txt" \
    || fail "$ns listens beyond $ip: $(cat "$WORK/listen-$ns.txt")"
done
grep -q "$IP_A\]*:50051" "$WORK/listen-$NS_A.txt" || fail "the coordinator does not listen on $COORD"
log "$(job_line "$J3")"
on_b ip link set veth-b down
DOWN=$(now)
log "link down"
restarting() { [[ $(job_state "$J3") == RESTARTING ]]; }
wait_for 30 "$J3 restarting after the cut" restarting
log "$(job_line "$J3")"
# The partition outlasts the collective timeout: the link comes back once worker-0 is out
# of its collective (idle), not only because the coordinator gave up on worker-1.
w0_idle() { cli workers | grep -q '^worker-0 alive .* idle$'; }
wait_for 30 "worker-0 idle (out of its collective)" w0_idle
on_b ip link set veth-b up
UP=$(now)
log "link up (it was down $(awk -v a="$DOWN" -v b="$UP" 'BEGIN {printf "%.1f", b - a}') s)"
resumed() { job_line "$J3" | grep -Eq "^$J3 RUNNING .* attempt 2 from step [1-9]"; }
wait_for 60 "$J3 resumed (attempt 2) from a checkpoint" resumed
log "$(job_line "$J3")"
finish "$J3"
line=$(job_line "$J3")
[[ $line == *" restarts 1 attempt 2 from step "* ]] || fail "not one restart: $line"
FROM=$(sed -E 's/.* attempt 2 from step ([0-9]+).*/\1/' <<< "$line")
(( FROM >= 10 && FROM % 5 == 0 )) || fail "resumed from step $FROM, not a checkpoint >= 10"
SHA3=$(sha_of "$J3")
[[ $SHA3 == "$SHA" ]] || fail "$J3 resumed to a different checkpoint: $SHA3, fault-free $SHA"
log "$line"

# The times, from the processes' own log lines (polling adds a client's start-up).
DETECT_S=$(seconds_after "$DOWN" "$WORK/coordinator.log" "job $J3 restarting")
RESUME_S=$(seconds_after "$UP" "$WORK/coordinator.log" "job $J3 attempt 2 started")
awk -v s="$DETECT_S" -v ms=$COLLECTIVE_TIMEOUT_MS 'BEGIN {exit !(s < ms / 1000 + 3)}' \
  || fail "$J3 went RESTARTING only $DETECT_S s after the cut"
# Both ranks' all-reduce ended within the collective timeout (counted from the cut, so
# plus at most the step in progress, and slack for a loaded machine): neither hangs,
# worker-1 on the cut-off host included. It ends by the transport's failure or by the
# coordinator's abort, whichever comes first.
failed_pattern="job $J3 attempt 1 rank [01] step [0-9]+: train task ended: .*gloo(: the group was aborted during the| all-reduce failed)"
declare -A FAILED_S
for w in worker-0 worker-1; do
  t=$(seconds_after "$DOWN" "$WORK/$w.log" "$failed_pattern") || fail "$w's all-reduce did not fail: see $WORK/$w.log"
  awk -v s="$t" -v ms=$COLLECTIVE_TIMEOUT_MS 'BEGIN {exit !(s < ms / 1000 + 3)}' \
    || fail "$w's all-reduce failed only $t s after the cut (timeout ${COLLECTIVE_TIMEOUT_MS} ms)"
  FAILED_S[$w]=$t
done

echo "RESULT plain link: round trip ${PLAIN_RTT} ms; step ${PLAIN_STEP} ms, all-reduce ${PLAIN_REDUCE} ms (medians of steps 4-$STEPS), least all-reduce ${PLAIN_REDUCE_MIN} ms"
echo "RESULT shaped link ($SHAPE): round trip ${RTT} ms; step ${SHAPED_STEP} ms, all-reduce ${SHAPED_REDUCE} ms, least all-reduce ${SHAPED_REDUCE_MIN} ms"
echo "RESULT link down -> RESTARTING ${DETECT_S} s (worker timeout ${WORKER_TIMEOUT_MS} ms); all-reduce ended on worker-0 ${FAILED_S[worker-0]} s, worker-1 ${FAILED_S[worker-1]} s (collective timeout ${COLLECTIVE_TIMEOUT_MS} ms)"
echo "RESULT link up -> attempt 2 started (from step $FROM) ${RESUME_S} s"
echo "RESULT the resumed job's checkpoint is the fault-free one's: sha256 $SHA3"
log "PASS"
