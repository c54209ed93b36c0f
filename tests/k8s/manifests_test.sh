#!/usr/bin/env bash
# k8s/ renders and validates strictly, and the validator refuses broken manifests:
#  - `kubectl kustomize` renders every overlay (k8s/overlays/*), and every object of it and
#    of k8s/examples passes scripts/k8s_validate.mjs (schema, types, required fields, no
#    unknown field);
#  - each manifest under tests/k8s/broken (a typo `readinesProbe`, a wrong type, a missing
#    required field, a misplaced field, an unknown kind, and an overlay of the real base
#    with a misspelled patch) is refused with the problem its `# expect:` line names;
#  - scripts/k8s_podman.mjs makes the local overlay's StatefulSet into llava-worker-0 and
#    -1 with their own ports, and leaves out Services and NetworkPolicies.
# kubectl, node and data/npm-k8s (scripts/setup.sh) missing is a failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
for c in kubectl node; do command -v $c >/dev/null || { echo "FAIL: $c is missing (scripts/setup.sh)"; exit 1; }; done
npm_dir=${LLAVA_K8S_NPM_DIR:-data/npm-k8s}
[[ -d $npm_dir/node_modules/kubernetes-models ]] || { echo "FAIL: kubernetes-models missing in $npm_dir (scripts/setup.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

overlays=(k8s/overlays/*/)
((${#overlays[@]} >= 3)) || bad "expected the overlays gpu, cpu and local, found ${overlays[*]}"
for o in "${overlays[@]}" k8s/base/; do
  o=${o%/}
  if kubectl kustomize "$o" > "$tmp/rendered.yaml" 2> "$tmp/err"; then
    ok "kubectl kustomize $o ($(grep -c '^kind:' "$tmp/rendered.yaml") objects)"
  else
    bad "kubectl kustomize $o: $(cat "$tmp/err")"
    continue
  fi
  if node scripts/k8s_validate.mjs "$tmp/rendered.yaml" > "$tmp/out" 2>&1; then
    ok "valid: $o ($(tail -1 "$tmp/out"))"
  else
    bad "invalid: $o"; sed 's/^/    /' "$tmp/out"
  fi
done
for f in k8s/examples/*.yaml; do
  if node scripts/k8s_validate.mjs "$f" > "$tmp/out" 2>&1; then ok "valid: $f"; else bad "invalid: $f"; cat "$tmp/out"; fi
done

for f in tests/k8s/broken/*.yaml tests/k8s/broken/*/; do
  f=${f%/}
  src=$f; [[ -d $f ]] && src=$f/kustomization.yaml
  expect=$(sed -n 's/^# expect: //p' "$src" | head -1)
  [[ -n $expect ]] || { bad "$f has no '# expect:' line"; continue; }
  node scripts/k8s_validate.mjs "$f" > "$tmp/out" 2>&1
  rc=$?
  if [[ $rc == 1 ]] && grep -qF -- "$expect" "$tmp/out"; then
    ok "refused: $f ($expect)"
  else
    bad "not refused as expected (rc $rc): $f; want: $expect"; sed 's/^/    /' "$tmp/out"
  fi
done

# The podman form of the local overlay.
if kubectl kustomize k8s/overlays/local | node scripts/k8s_podman.mjs > "$tmp/play.yaml" 2> "$tmp/convert.log"; then
  kinds=$(grep -E '^kind:' "$tmp/play.yaml" | sort | uniq -c | tr -s ' ' | tr '\n' ',')
  if [[ $kinds == " 1 kind: Deployment, 1 kind: PersistentVolumeClaim, 2 kind: Pod," ]] \
     && grep -q 'name: llava-worker-1$' "$tmp/play.yaml" \
     && grep -q 'value: 127.0.0.1:51061' "$tmp/play.yaml" && grep -q 'port: 51061' "$tmp/play.yaml" \
     && ! grep -q 'containerPort' "$tmp/play.yaml" \
     && grep -q 'left out Service/llava-coordinator' "$tmp/convert.log" \
     && grep -q 'left out NetworkPolicy/llava-coordinator' "$tmp/convert.log"; then
    ok "k8s_podman: local overlay -> Deployment, PVC, Pods llava-worker-0/1 with their own ports"
  else
    bad "k8s_podman output: $kinds"; cat "$tmp/convert.log"
  fi
else
  bad "k8s_podman failed"; cat "$tmp/convert.log"
fi

echo "$passed passed, $failed failed"
((failed == 0))
