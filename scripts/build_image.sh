#!/usr/bin/env bash
# Builds the llava-mnist container images with podman, here, with no registry: the base is
# Debian bookworm made by debootstrap, without apt's caches and lists, docs, man pages and
# translations, and imported once (localhost/llava-mnist-base:bookworm-lean),
# then `podman build --network=host` installs the runtime packages with apt-get and adds
# the binary. Layers are cached: a second run with the same binary takes seconds.
#   scripts/build_image.sh [--target control|runtime|demo] [--binary PATH] [--tag NAME]
#   scripts/build_image.sh --gpu --base CUDA_PYTORCH_IMAGE [--binary PATH] [--tag NAME]
#     --target  runtime (default): llava-mnist + runtime libraries; demo: + MNIST, tokenizer,
#               demo LM (what k8s/overlays/local and cpu run); control: llava-ctl (no
#               libtorch) + its libraries, the coordinator's image
#     --binary  the binary (runtime, demo: $LLAVA_BINARY, default build/bin/llava-mnist;
#               control: $LLAVA_CTL, default build/bin/llava-ctl)
#     --data    where data/ is (the demo target's files; $LLAVA_DATA_ROOT, default .)
#     --tag     image name (default localhost/llava-mnist:latest, demo: localhost/llava-mnist-demo:latest,
#               control: localhost/llava-ctl:latest, gpu: localhost/llava-mnist-gpu:latest)
#     --gpu     Dockerfile.gpu on --base (a CUDA + PyTorch image, pulled by podman): the
#               binary (built against that PyTorch by scripts/gpu_build.sh) and the
#               libraries ldd finds for it outside glibc, the CUDA driver, PyTorch and NCCL
# Environment: CONTAINERS_CONF (default: scripts/containers.conf, the settings podman 4.3
# needs on our machines: runc, cgroupfs, ulimits), LLAVA_IMAGE_WORK (scratch dir, default
# build/image).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=runtime
BINARY=""
TAG=""
GPU_BASE=""
DATA_ROOT=${LLAVA_DATA_ROOT:-.}
while (($#)); do
  case "$1" in
    --target) TARGET=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --data) DATA_ROOT=$2; shift 2 ;;
    --gpu) TARGET=gpu; shift ;;
    --base) GPU_BASE=$2; shift 2 ;;
    *) echo "build_image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$TARGET" in
  runtime) TAG=${TAG:-localhost/llava-mnist:latest} ;;
  demo) TAG=${TAG:-localhost/llava-mnist-demo:latest} ;;
  control) TAG=${TAG:-localhost/llava-ctl:latest} ;;
  gpu) TAG=${TAG:-localhost/llava-mnist-gpu:latest} ;;
  *) echo "build_image.sh: --target control, runtime or demo" >&2; exit 2 ;;
esac
# The binary the target holds, and its name inside the image.
if [[ $TARGET == control ]]; then
  BINARY=${BINARY:-${LLAVA_CTL:-build/bin/llava-ctl}}; NAME=llava-ctl
else
  BINARY=${BINARY:-${LLAVA_BINARY:-build/bin/llava-mnist}}; NAME=llava-mnist
fi
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/scripts/containers.conf}
WORK=${LLAVA_IMAGE_WORK:-build/image}
BASE=localhost/llava-mnist-base:bookworm-lean
log() { echo "[build_image] $*" >&2; }
for tool in podman readelf dpkg strip; do
  command -v "$tool" >/dev/null || { log "missing $tool (scripts/setup.sh installs it)"; exit 1; }
done
[[ -x $BINARY ]] || { log "no binary at $BINARY (build it, or pass --binary)"; exit 1; }

if [[ $TARGET == gpu ]]; then
  [[ -n $GPU_BASE ]] || { log "--gpu needs --base (a CUDA + PyTorch image)"; exit 2; }
  ctx=$WORK/context-gpu
  rm -rf "$ctx"; mkdir -p "$ctx/build/bin" "$ctx/build/gpu-libs"
  cp -p Dockerfile.gpu .dockerignore "$ctx/"
  cp -p "$BINARY" "$ctx/build/bin/llava-mnist"
  ldd "$BINARY" | awk '$3 ~ /^\// {print $1, $3}' | while read -r name path; do
    case "$name" in
      linux-vdso*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|libutil.so*|libcuda.so*) continue ;;
    esac
    case "$path" in */torch/lib/*|*/nvidia/*) continue ;; esac
    cp -L "$path" "$ctx/build/gpu-libs/$name"
  done
  log "gpu: $(ls "$ctx/build/gpu-libs" | wc -l) libraries staged; podman build on $GPU_BASE -t $TAG"
  podman build --network=host --layers -t "$TAG" --build-arg BASE_IMAGE="$GPU_BASE" \
    -f "$ctx/Dockerfile.gpu" "$ctx"
  exit
fi

# 1. The base image: debootstrap's minimal bookworm, once.
if ! podman image exists "$BASE"; then
  command -v debootstrap >/dev/null || { log "missing debootstrap"; exit 1; }
  rootfs=$WORK/rootfs
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  log "debootstrap --variant=minbase bookworm (once, ~30 s)"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  # What no image runs from: the downloaded packages, apt's lists (every image's install
  # step fetches them anew), docs, man pages, message translations.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  tar -C "$rootfs" -c . | podman import --message "debootstrap minbase bookworm, lean" - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

# 2. The runtime packages: the Debian package of each library the binary needs (as
# resolved on this machine), plus the BLAS that libtorch loads at run time.
packages=()
[[ $TARGET == control ]] || packages=(libopenblas0-pthread)
resolved=$(ldd "$BINARY")
while read -r lib; do
  path=$(awk -v l="$lib" '$1 == l {print $3}' <<< "$resolved")
  [[ -n $path ]] || { log "$BINARY: $lib not found by ldd"; exit 1; }
  real=$(readlink -f "$path")
  # dpkg records a file under /lib or /usr/lib, whichever the package shipped (merged /usr).
  pkg=$(dpkg -S "$real" "${real#/usr}" "/usr$real" 2>/dev/null | head -1 | cut -d: -f1 || true)
  [[ -n $pkg ]] || { log "$lib ($real) belongs to no Debian package: the image cannot install it"; exit 1; }
  packages+=("$pkg")
done < <(readelf -d "$BINARY" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -v -E '^(libc|libm|libgcc_s|ld-linux.*)\.so')
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
log "runtime packages: ${packages[*]}"

# 3. A build context with only what the image takes (no keys, no other weights).
ctx=$WORK/context
rm -rf "$ctx"; mkdir -p "$ctx/build/bin"
cp -p Dockerfile .dockerignore "$ctx/"
if [[ $TARGET == control ]]; then
  # Without its debug sections, most of a RelWithDebInfo binary (symbols stay, for backtraces).
  strip --strip-debug -o "$ctx/build/bin/$NAME" "$BINARY"
else
  ln -f "$BINARY" "$ctx/build/bin/$NAME" 2>/dev/null || cp -p "$BINARY" "$ctx/build/bin/$NAME"
fi
if [[ $TARGET == demo ]]; then
  for f in data/mnist/{train,test}-{images-idx3,labels-idx1}-ubyte.gz data/tokenizer/tokenizer.json \
           data/models/demo-lm/{config.json,generation_config.json,demo_lm.json,model.safetensors}; do
    [[ -f $DATA_ROOT/$f ]] || { log "missing $DATA_ROOT/$f (scripts/setup.sh makes it)"; exit 1; }
    mkdir -p "$ctx/$(dirname "$f")"
    ln -f "$DATA_ROOT/$f" "$ctx/$f" 2>/dev/null || cp -p "$DATA_ROOT/$f" "$ctx/$f"
  done
fi

log "podman build --target $TARGET -t $TAG"
t0=$(date +%s)
old_id=$(podman image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
podman build --network=host --layers --target "$TARGET" -t "$TAG" \
  --build-arg BASE_IMAGE="$BASE" --build-arg RUNTIME_PACKAGES="${packages[*]}" \
  --build-arg CONTROL_PACKAGES="${packages[*]}" \
  -f "$ctx/Dockerfile" "$ctx" > "$WORK/build-$TARGET.log" 2>&1 \
  || { tail -30 "$WORK/build-$TARGET.log" >&2; exit 1; }
# The image this tag named before, if nothing else uses it now (no pile of old binaries).
new_id=$(podman image inspect --format '{{.Id}}' "$TAG")
if [[ -n $old_id && $old_id != "$new_id" ]]; then podman rmi "$old_id" > /dev/null 2>&1 || true; fi
log "built $TAG in $(( $(date +%s) - t0 )) s ($(podman image inspect --format '{{.Size}}' "$TAG" | numfmt --to=iec))"
