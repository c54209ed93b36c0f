#!/usr/bin/env bash
# Clang's thread-safety analysis (-Wthread-safety, as errors) over every source that takes
# an absl::Mutex, with the flags the build uses (its compile_commands.json). The build
# itself is GCC's, which has no such analysis: this checks the ABSL_GUARDED_BY and
# ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations without a second build.
#   scripts/thread_safety.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
CLANG=${CLANGXX:-clang++-14}
command -v "$CLANG" >/dev/null || { echo "thread_safety: $CLANG is missing (scripts/setup.sh installs clang-14)" >&2; exit 1; }
[[ -f $BUILD_DIR/compile_commands.json ]] || { echo "thread_safety: no $BUILD_DIR/compile_commands.json (configure with cmake first)" >&2; exit 1; }
exec python3 - "$BUILD_DIR" "$CLANG" <<'PY'
import json, os, re, shlex, subprocess, sys
build_dir, clang = sys.argv[1], sys.argv[2]
entries = json.load(open(os.path.join(build_dir, "compile_commands.json")))
failed, checked = [], 0
for e in entries:
    src = e["file"]
    # Tests are skipped, but not the fakes they share (tests/fake_*.cc), whose locks are
    # real ones: the agent's threads call into them.
    in_tests = "/tests/" in src and not os.path.basename(src).startswith("fake_")
    if not os.path.exists(src) or in_tests or "_deps" in src:
        continue
    text = open(src, errors="replace").read()
    if "MutexLock" not in text and "absl::Mutex" not in text:
        continue
    args = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
    out = [clang, "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option"]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD", "-Winvalid-pch") or a.startswith("-fpch") or a == src:
            continue
        if a == "-include" or a.startswith("-include"):
            # the precompiled header is GCC's; clang parses the headers itself
            if a == "-include":
                skip = True
            continue
        out.append(a)
    out.append(src)
    checked += 1
    r = subprocess.run(out, cwd=e["directory"], capture_output=True, text=True)
    if r.returncode != 0:
        failed.append(src)
        sys.stderr.write(r.stderr)
print(f"thread_safety: {checked} sources checked, {len(failed)} failed")
sys.exit(1 if failed or checked == 0 else 0)
PY
