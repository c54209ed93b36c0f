#!/usr/bin/env bash
# Dependencies for air-gapped GPU machines that have CUDA + PyTorch but no gRPC, abseil,
# glog, GoogleTest, ... and no network.
#   scripts/offline_deps.sh download [DIR]   on a Debian bookworm machine with network:
#                                            fetch the .debs into DIR (default .deps/debs)
#   scripts/offline_deps.sh install [DIR] [PREFIX]
#                                            on the GPU machine: unpack every .deb into
#                                            PREFIX (default .deps/prefix; never into /)
#                                            and write PREFIX/env.sh to source before cmake
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  libgrpc++-dev libgrpc++1.51 libgrpc-dev libgrpc29 libprotobuf-dev libprotobuf32
  libprotoc32 protobuf-compiler protobuf-compiler-grpc libabsl-dev libabsl20220623
  libre2-9 libre2-dev libc-ares2 libc-ares-dev libgoogle-glog-dev libgoogle-glog0v6
  libgflags-dev libgflags2.2 libunwind8 libunwind-dev libssl-dev zlib1g-dev
  libgtest-dev libgmock-dev googletest nlohmann-json3-dev libpcre2-dev libpcre2-8-0
  libpng-dev libpng16-16
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
  libprometheus-cpp-push1.0 libcivetweb-dev libcivetweb1 civetweb libcurl4-openssl-dev libcurl4
)

mode=${1:-}
case "$mode" in
  download)
    dir=${2:-.deps/debs}
    mkdir -p "$dir"
    (cd "$dir" && apt-get download "${PACKAGES[@]}")
    echo "downloaded $(ls "$dir" | wc -l) packages into $dir ($(du -sh "$dir" | cut -f1))"
    ;;
  install)
    dir=${2:-.deps/debs}
    prefix=$(realpath -m "${3:-.deps/prefix}")
    mkdir -p "$prefix"
    for deb in "$dir"/*.deb; do dpkg -x "$deb" "$prefix"; done
    lib=$prefix/usr/lib/x86_64-linux-gnu
    # Debian's .so links are absolute only inside the package tree: make them relative
    # to the prefix where they point at /usr/lib.
    find "$lib" -maxdepth 1 -type l | while read -r l; do
      t=$(readlink "$l")
      case "$t" in /*) ln -sf "$prefix$t" "$l" ;; esac
    done
    torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
    nccl_root=$(python3 -c 'import nvidia.nccl as n;print(list(n.__path__)[0])' 2>/dev/null || true)
    cat > "$prefix/env.sh" <<ENV
export LLAVA_DEPS_PREFIX=$prefix
export CMAKE_PREFIX_PATH="$prefix/usr;$torch_prefix"
export LIBRARY_PATH="$lib:$nccl_root/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$lib:$nccl_root/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$lib/pkgconfig:$prefix/usr/share/pkgconfig"
export PATH="$prefix/usr/bin:\$PATH"
export NCCL_ROOT="$nccl_root"
ENV
    echo "unpacked into $prefix; source $prefix/env.sh"
    ;;
  *)
    sed -n '2,10p' "$0"
    exit 2
    ;;
esac
