# shellcheck shell=bash disable=SC2034  # (variables for the scripts that source it)
# Sourced by scripts/gpu_cluster.sh and scripts/gpu_eval_scaling.sh: their settings and a
# coordinator with GPUS workers on this machine (worker i on cuda:i, as `launch` does).
#   GPUS (2): workers (one per GPU); NS: the group sizes to compare (default 1 2 4 .. and
#   GPUS); OUT (out), BIN (build-gpu/bin/llava-mnist), MODEL (synthetic:llama-3.1-8b),
#   DEVICE (cuda; cpu for a dry run with MODEL=data/models/demo-lm)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT=${OUT:-out}; mkdir -p "$OUT"
BIN=${BIN:-build-gpu/bin/llava-mnist}
MODEL=${MODEL:-synthetic:llama-3.1-8b}
DEVICE=${DEVICE:-cuda}
GPUS=${GPUS:-2}
if [[ -z "${NS:-}" ]]; then
  NS=""; for ((n = 1; n < GPUS; n *= 2)); do NS+="$n "; done; NS+=$GPUS
fi
# The libraries scripts/gpu_build.sh built against (gRPC, abseil, ... unpacked from .debs).
# shellcheck disable=SC1091
[[ -f .deps/prefix/env.sh ]] && source .deps/prefix/env.sh
# Keep NVLink multicast off in every process started from here.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
MEASURE=(python3 scripts/gpu_measure.py)

# start_cluster DIR [coordinator flags...]: a coordinator and GPUS workers, logs in DIR;
# sets S (the dir), ADDR, CPID and WPID[i]; returns once every worker is idle. (A first
# start on a fresh machine reads libtorch from a cold disk: up to a minute for the port.)
start_cluster() {
  S=$1; shift
  rm -rf "$S"; mkdir -p "$S"
  "$BIN" coordinator --listen 127.0.0.1:0 --port_file "$S/port" --state_dir "$S/state" "$@" \
    > "$S/coordinator.log" 2>&1 &
  CPID=$!
  for _ in $(seq 600); do [[ -s "$S/port" ]] && break; sleep 0.1; done
  [[ -s "$S/port" ]] || { echo "the coordinator did not listen:"; tail -5 "$S/coordinator.log"; return 1; } >&2
  ADDR=127.0.0.1:$(cat "$S/port")
  WPID=()
  for ((i = 0; i < GPUS; i++)); do start_worker "$i"; done
  wait_idle "$GPUS"
}

# start_worker I: worker-I on cuda:I (CPU: a share of the cores), log appended.
start_worker() {
  local dev=cpu extra=()
  if [[ $DEVICE == cuda ]]; then dev=cuda:$1; else extra=(--threads $(( $(nproc) / GPUS > 0 ? $(nproc) / GPUS : 1 ))); fi
  "$BIN" worker --coordinator "$ADDR" --worker_id "worker-$1" --model "$MODEL" --device "$dev" \
    --seed 7 "${extra[@]}" >> "$S/worker-$1.log" 2>&1 &
  WPID[$1]=$!
}

# wait_idle N: until N workers are alive and idle (the model loaded), at most 3 minutes.
wait_idle() {
  for _ in $(seq 900); do
    (( $("$BIN" workers --coordinator "$ADDR" 2>/dev/null | grep -c "alive.*idle") >= $1 )) && return 0
    sleep 0.2
  done
  { echo "timed out waiting for $1 idle workers:"; tail -n 3 "$S"/worker-*.log; } >&2; return 1
}

# `timeout` or Ctrl-C ends the script through its EXIT trap (stop_cluster), not around it.
trap 'exit 143' TERM INT

stop_cluster() {
  kill "${WPID[@]}" "$CPID" 2>/dev/null; wait "${WPID[@]}" "$CPID" 2>/dev/null
}

# job_of FILE: the job id `submit` printed first.
job_of() { head -1 "$1"; }
