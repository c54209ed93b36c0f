#!/usr/bin/env bash
# Makes a development CA and certificates for llava-mnist's TLS (never for production):
#   scripts/dev_certs.sh DIR [SERVER_NAMES]
# DIR/ca.{crt,key}; DIR/server.{crt,key} for the coordinator, valid for SERVER_NAMES
# (comma-separated DNS names; default: localhost, llava-coordinator and its in-cluster
# names) and 127.0.0.1; DIR/client.{crt,key} for workers and clients (--tls_client_auth);
# DIR/token: a random bearer token. Existing files are kept (idempotent).
set -euo pipefail
dir=${1:?usage: dev_certs.sh DIR [SERVER_NAMES]}
names=${2:-localhost,llava-coordinator,llava-coordinator.default.svc,llava-coordinator.default.svc.cluster.local}
mkdir -p "$dir"
cd "$dir"
umask 077
days=825
if [[ ! -f ca.crt ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days "$days" \
    -subj "/CN=llava-mnist development CA" 2>/dev/null
fi
san="IP:127.0.0.1"
IFS=, read -ra list <<< "$names"
for n in "${list[@]}"; do san="$san,DNS:$n"; done
issue() {  # name, subject CN, extensions
  [[ -f $1.crt ]] && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
    -days "$days" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue server llava-coordinator "subjectAltName=$san
extendedKeyUsage=serverAuth"
issue client llava-client "extendedKeyUsage=clientAuth"
[[ -f token ]] || openssl rand -hex 32 > token
chmod 644 ca.crt server.crt client.crt
echo "$dir: ca.crt server.{crt,key} (${names}, 127.0.0.1) client.{crt,key} token" >&2
