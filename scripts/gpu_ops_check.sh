#!/usr/bin/env bash
# Operations on a GPU machine (issue 8): a coordinator with TLS + token + probe and metrics
# ports, one CUDA worker on the synthetic 8B (NCCL), a short training job submitted over
# TLS with the token, then both /metrics pages (the worker's GPU memory included), the
# probes, and SIGTERM of both processes. After scripts/gpu_build.sh. Results in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
BIN=${BIN:-build-gpu/bin/llava-mnist}; MODEL=${MODEL:-synthetic:llama-3.1-8b}
export NCCL_NVLS_ENABLE=0
S=runs/opscheck; rm -rf "$S"; mkdir -p "$S"
scripts/dev_certs.sh "$S/pki" > /dev/null
TLS=(--tls_ca "$S/pki/ca.crt" --auth_token_file "$S/pki/auth/token")
"$BIN" coordinator --listen 127.0.0.1:0 --port_file "$S/port" --state_dir "$S/state" \
  --tls_cert "$S/pki/server-tls/tls.crt" --tls_key "$S/pki/server-tls/tls.key" --auth_token_file "$S/pki/auth/token" \
  --health_listen 127.0.0.1:18081 --metrics_listen 127.0.0.1:19464 --heartbeat_interval_ms 200 \
  > "$S/coordinator.log" 2>&1 &
CPID=$!
for i in $(seq 100); do [[ -s "$S/port" ]] && break; sleep 0.1; done
ADDR=127.0.0.1:$(cat "$S/port")
"$BIN" worker --coordinator "$ADDR" "${TLS[@]}" --worker_id gpu-0 --model "$MODEL" --device cuda:0 \
  --health_listen 127.0.0.1:18082 --metrics_listen 127.0.0.1:19465 > "$S/worker.log" 2>&1 &
WPID=$!
for i in $(seq 300); do "$BIN" health --target 127.0.0.1:18082 --service readiness >/dev/null 2>&1 && break; sleep 0.2; done
# The prefix's libraries (LD_LIBRARY_PATH from .deps/prefix/env.sh) are not for curl.
scrape() { python3 -c "import urllib.request,sys;print(urllib.request.urlopen(sys.argv[1]).read().decode())" "$1"; }
{
  echo "== probes"; "$BIN" health --target 127.0.0.1:18081 --service readiness; "$BIN" health --target 127.0.0.1:18082 --service readiness
  echo "== without the token (expect UNAUTHENTICATED)"; "$BIN" list --coordinator "$ADDR" --tls_ca "$S/pki/ca.crt"; echo "exit $?"
  echo "== plaintext against TLS (expect failure)"; "$BIN" list --coordinator "$ADDR"; echo "exit $?"
  echo "== train 6 steps, batch 64, over TLS with the token"
  "$BIN" submit train --coordinator "$ADDR" "${TLS[@]}" --batch_size 64 --max_steps 6 --checkpoint_every 3 --wait
  echo "== coordinator /metrics"; scrape http://127.0.0.1:19464/metrics | grep -E "^llava_(job|workers|checkpoint_bytes)|^llava_rpc_requests_total"
  echo "== worker /metrics"; scrape http://127.0.0.1:19465/metrics | grep -E "^llava_worker_(gpu|step |step_seconds_(sum|count)|allreduce_seconds_(sum|count)|tasks)"
} > "$OUT/ops_check.txt" 2>&1
{
  echo "== SIGTERM"; kill -TERM $WPID; t0=$(date +%s%N); wait $WPID; echo "worker exit $? after $(( ($(date +%s%N)-t0)/1000000 )) ms"
  kill -TERM $CPID; wait $CPID; echo "coordinator exit $?"
} >> "$OUT/ops_check.txt" 2>&1
cat "$OUT/ops_check.txt"
cp "$S"/*.log "$OUT/" 2>/dev/null
