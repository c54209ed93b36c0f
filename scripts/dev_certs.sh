#!/usr/bin/env bash
# Makes a test CA, a server certificate for the coordinator, a client certificate (for
# workers and clients, checked when the coordinator runs with --tls_client_auth) and
# bearer tokens by role, in the layout of the Kubernetes Secrets k8s/base expects. For development
# and tests only: real deployments use their own CA (e.g. cert-manager) and token.
#   scripts/dev_certs.sh DIR [--owner UID:GID] [--names "extra SAN names"]
# Writes DIR/ca.crt, DIR/ca.key, DIR/server-tls/{ca.crt,tls.crt,tls.key},
# DIR/client-tls/{ca.crt,tls.crt,tls.key}, DIR/auth/{token,worker-token,admin-token,tokens}
# (a client's, the workers' and an admin's token, and the coordinator's list of them by
# role), and prints the kubectl
# commands that turn them into Secrets. The server certificate names llava-coordinator,
# its in-cluster names (llava-coordinator.NAMESPACE.svc[.cluster.local] for the namespace
# default and $LLAVA_NAMESPACE), localhost and 127.0.0.1. --owner chowns the files
# (the image runs as 10001:10001).
set -euo pipefail
dir=${1:?usage: scripts/dev_certs.sh DIR [--owner UID:GID] [--names \"NAME ...\"]}
shift
owner=""
extra=""
while (($#)); do
  case "$1" in
    --owner) owner=$2; shift 2 ;;
    --names) extra=$2; shift 2 ;;
    *) echo "dev_certs.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "dev_certs.sh: openssl is missing" >&2; exit 1; }
mkdir -p "$dir/server-tls" "$dir/client-tls" "$dir/auth"
cd "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=30

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=llava-mnist dev CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

ns=${LLAVA_NAMESPACE:-default}
sans="DNS:llava-coordinator,DNS:localhost,IP:127.0.0.1"
for n in $(printf "%s\n" default "$ns" | sort -u); do
  sans+=",DNS:llava-coordinator.$n,DNS:llava-coordinator.$n.svc,DNS:llava-coordinator.$n.svc.cluster.local"
done
for n in $extra; do sans+=",DNS:$n"; done

issue() {  # name CN extendedKeyUsage SANs
  local name=$1 cn=$2 eku=$3 san=$4
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$name/tls.key" -out "$tmp/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } > "$tmp/$name.ext"
  openssl x509 -req -in "$tmp/$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days "$days" -extfile "$tmp/$name.ext" -out "$name/tls.crt" 2>/dev/null
  cp ca.crt "$name/ca.crt"
}
issue server-tls llava-coordinator serverAuth "$sans"
issue client-tls llava-mnist-client clientAuth "DNS:llava-mnist-client"
rm -f ca.srl
# 32 random bytes, hex, per credential: a client's token, the workers' token, an admin's
# token, and the coordinator's list of them by role (--auth_tokens_file).
openssl rand -hex 32 > auth/token
openssl rand -hex 32 > auth/worker-token
openssl rand -hex 32 > auth/admin-token
{
  echo "# role name token"
  echo "client client $(cat auth/token)"
  echo "worker workers $(cat auth/worker-token)"
  echo "admin admin $(cat auth/admin-token)"
} > auth/tokens
chmod 0600 ca.key
chmod 0640 server-tls/tls.key client-tls/tls.key auth/token auth/worker-token auth/admin-token auth/tokens
[[ -z $owner ]] || chown -R "$owner" server-tls client-tls auth
cat <<MSG
dev CA, certificates and token in $PWD. As Kubernetes Secrets:
  kubectl create secret generic llava-mnist-server-tls --from-file=$PWD/server-tls
  kubectl create secret generic llava-mnist-client-tls --from-file=$PWD/client-tls
  kubectl create secret generic llava-mnist-auth --from-file=$PWD/auth
MSG
