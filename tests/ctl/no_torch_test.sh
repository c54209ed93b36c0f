#!/usr/bin/env bash
# The control plane's binary links no libtorch: neither its own NEEDED entries (readelf)
# nor anything the loader would bring in (ldd) names a torch or c10 library. llava-mnist,
# checked the same way, must name them: the check itself is shown to see torch.
#   usage: tests/ctl/no_torch_test.sh LLAVA_CTL LLAVA_MNIST
set -euo pipefail
ctl=$1 mnist=$2
pattern='lib(torch|c10)[a-z_]*\.so'

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

fail=0
if needed "$ctl" | grep -E "$pattern"; then
  echo "FAIL: $ctl has the NEEDED entries above" >&2; fail=1
fi
if ldd "$ctl" | grep -E "$pattern"; then
  echo "FAIL: $ctl loads the libraries above" >&2; fail=1
fi
if ! ldd "$mnist" | grep -E "$pattern" > /dev/null; then
  echo "FAIL: $mnist loads no torch library: the pattern '$pattern' sees nothing" >&2; fail=1
fi
[[ $fail == 0 ]] || exit 1
echo "$ctl: $(needed "$ctl" | wc -l) NEEDED entries, $(ldd "$ctl" | wc -l) libraries loaded, none of torch"
echo "$mnist: $(ldd "$mnist" | grep -cE "$pattern") torch libraries loaded"
