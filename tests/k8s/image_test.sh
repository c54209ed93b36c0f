#!/usr/bin/env bash
# The images hold no weights, keys or tokens and run as non-root. Lists each image's files
# (podman image mount) and config:
#  - the configured user is 10001:10001 and `id -u` in a container of it says 10001;
#  - no private key (a file under a key-like name, or text with a PEM private-key block),
#    no token file, no credentials in the image's environment, nothing under
#    /etc/llava-mnist (the Secrets are mounted there at run time);
#  - no model weights (*.safetensors, *.bin, *.pt, *.pth, *.gguf, *.ckpt over 1 MiB) in the
#    runtime and control images; in the demo image only the demo LM (its demo_lm.json
#    beside it, hidden size 128, under 100 MB);
#  - the control image (the coordinator's: llava-ctl) holds no libtorch or c10 library.
# Then the checks themselves: an image built on top that breaks each rule (root, a PEM key,
# a token file under /etc/llava-mnist, weights, a token in the environment) fails each.
# Builds the images first if they are missing (scripts/build_image.sh). Needs root and
# podman (scripts/setup.sh); missing ones are a failure.
#   LLAVA_BINARY   the llava-mnist binary (default build/bin/llava-mnist)
#   LLAVA_CTL      the llava-ctl binary (default build/bin/llava-ctl)
set -uo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/containers.conf}
BIN=$(realpath -m "${LLAVA_BINARY:-build/bin/llava-mnist}")
CTL=$(realpath -m "${LLAVA_CTL:-build/bin/llava-ctl}")
passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
[[ $(id -u) == 0 ]] || { echo "FAIL: needs root (rootful podman)"; exit 1; }
command -v podman >/dev/null || { echo "FAIL: podman is missing (scripts/setup.sh)"; exit 1; }
declare -A TAGS=([runtime]=localhost/llava-mnist:latest [demo]=localhost/llava-mnist-demo:latest
                 [control]=localhost/llava-ctl:latest)
declare -A BINS=([runtime]=$BIN [demo]=$BIN [control]=$CTL)
declare -A ENTRY=([runtime]=llava-mnist [demo]=llava-mnist [control]=llava-ctl)
mounted=()
trap 'for i in "${mounted[@]}"; do podman image unmount "$i" >/dev/null 2>&1; done' EXIT

check_image() {  # IMAGE runtime|demo|control
  local img=$1 target=$2 user uid entry env root keys pem etc weights demo others size hidden torch
  user=$(podman image inspect "$img" --format '{{.Config.User}}')
  [[ $user == 10001:10001 ]] && ok "$img: user $user" || bad "$img: user '$user' (want 10001:10001)"
  uid=$(timeout 60 podman run --rm --network=none --entrypoint id "$img" -u 2>&1)
  [[ $uid == 10001 ]] && ok "$img: runs as uid $uid" || bad "$img: runs as uid '$uid'"
  entry=$(podman image inspect "$img" --format '{{json .Config.Entrypoint}}')
  [[ $entry == "[\"/usr/local/bin/${ENTRY[$target]}\"]" ]] && ok "$img: entrypoint $entry" || bad "$img: entrypoint $entry"
  env=$(podman image inspect "$img" --format '{{range .Config.Env}}{{println .}}{{end}}')
  if grep -E '^([^=]*_)?(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|CREDENTIALS?)(_[^=]*)?=' <<< "$env"; then
    bad "$img: credentials in the environment"
  else
    ok "$img: no credentials in the environment"
  fi

  root=$(podman image mount "$img") || { bad "podman image mount $img"; return; }
  mounted+=("$img")
  (cd "$root" && find . -xdev \( -type f -o -type l \) -printf '%s %p\n') > /tmp/image-files.$$
  echo "     $img: $(wc -l < /tmp/image-files.$$) files"
  keys=$(awk '{print $2}' /tmp/image-files.$$ | grep -iE '\.(key|pem|p12|pfx|jks)$|/id_(rsa|ecdsa|ed25519)$|/(token|auth-token|\.npmrc|\.netrc|\.git-credentials)$' \
         | grep -vE '^\./usr/share/' || true)
  [[ -z $keys ]] && ok "$img: no key or token files" || bad "$img: key or token files: $keys"
  pem=$(grep -rlIE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' "$root/etc" "$root/home" "$root/opt" "$root/root" \
        "$root/var/lib/llava-mnist" "$root/usr/local" 2>/dev/null | sed "s|^$root||" || true)
  [[ -z $pem ]] && ok "$img: no PEM private key" || bad "$img: PEM private keys in $pem"
  etc=$(find "$root/etc/llava-mnist" -mindepth 1 2>/dev/null | sed "s|^$root||")
  [[ -z $etc ]] && ok "$img: /etc/llava-mnist empty (Secrets are mounted)" || bad "$img: /etc/llava-mnist holds $etc"
  weights=$(awk '$1 > 1048576 {print $2}' /tmp/image-files.$$ | grep -E '\.(safetensors|bin|pt|pth|gguf|ckpt|onnx|h5)$' || true)
  if [[ $target == control ]]; then
    torch=$(awk '{print $2}' /tmp/image-files.$$ | grep -E '/lib(torch|c10)[a-z_]*\.so' || true)
    [[ -z $torch ]] && ok "$img: no libtorch" || bad "$img: libtorch files $torch"
  fi
  if [[ $target != demo ]]; then
    [[ -z $weights ]] && ok "$img: no weights" || bad "$img: weights $weights"
  else
    demo=./opt/llava-mnist/data/models/demo-lm/model.safetensors
    others=$(grep -vxF "$demo" <<< "$weights" || true)
    size=$(awk -v p="$demo" '$2 == p {print $1}' /tmp/image-files.$$)
    hidden=$(grep -o '"hidden_size": *[0-9]*' "$root/opt/llava-mnist/data/models/demo-lm/config.json" 2>/dev/null | grep -o '[0-9]*$')
    if [[ -z $others && -n $size && $size -lt 100000000 && $hidden == 128 \
          && -f $root/opt/llava-mnist/data/models/demo-lm/demo_lm.json ]]; then
      ok "$img: weights are only the demo LM ($size bytes, hidden $hidden)"
    else
      bad "$img: weights: $weights (demo LM size '$size', hidden '$hidden')"
    fi
  fi
  rm -f /tmp/image-files.$$

}

for target in control runtime demo; do
  img=${TAGS[$target]}
  if ! podman image exists "$img"; then
    scripts/build_image.sh --target "$target" --binary "${BINS[$target]}" || { bad "building $img"; continue; }
  fi
  check_image "$img" "$target"
done

# The checks themselves: an image made to break each rule must fail each of them.
tmp=$(mktemp -d)
mkdir -p "$tmp/ctx"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ctx/server.pem" 2>/dev/null
head -c 2000000 /dev/zero > "$tmp/ctx/model.safetensors"
echo secret > "$tmp/ctx/token"
cat > "$tmp/ctx/Dockerfile" <<EOF
FROM ${TAGS[runtime]}
USER root
COPY server.pem /opt/app/server.pem
COPY token /etc/llava-mnist/auth/token
COPY model.safetensors /opt/app/model.safetensors
ENV LLAVA_AUTH_TOKEN=hunter2
EOF
bad_img=localhost/llava-mnist-image-test-bad:latest
if podman build --network=none -t "$bad_img" "$tmp/ctx" > "$tmp/build.log" 2>&1; then
  out=$(check_image "$bad_img" runtime)
  podman image unmount "$bad_img" > /dev/null 2>&1
  podman rmi -f "$bad_img" > /dev/null 2>&1
  for rule in "user 'root'" "runs as uid '0'" "credentials in the environment" "key or token files" \
              "PEM private keys" "/etc/llava-mnist holds" "weights ./opt/app/model.safetensors"; do
    if grep -q "^FAIL .*$rule" <<< "$out"; then ok "a bad image fails: $rule"; else bad "a bad image passes: $rule"; fi
  done
else
  bad "building the bad image: $(tail -3 "$tmp/build.log")"
fi
rm -rf "$tmp"
echo "$passed passed, $failed failed"
((failed == 0))
