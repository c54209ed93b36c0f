# llava-mnist CPU images: Debian bookworm, the runtime libraries only, a binary, a non-root
# user. Three targets:
#   control  the control plane: build/bin/llava-ctl (coordinator and client commands, no
#            libtorch) and its libraries only; the coordinator's image (k8s/base), and
#            the image of the submit Jobs (k8s/examples)
#   runtime  (default) llava-mnist (every command; the workers'): the model and the data
#            are mounted (k8s/overlays/gpu, cpu)
#   demo     runtime + MNIST, the Llama 3.1 tokenizer and the small demo LM (no real
#            weights), so that k8s/overlays/local runs without volumes
# scripts/build_image.sh builds them here from a debootstrap base (no registry needed):
#   scripts/build_image.sh [--target control|runtime|demo] [--binary PATH]
# Any OCI builder from the repository root works too:
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -t llava-mnist .
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim --target control -t llava-ctl .
# The GPU variant of the workers' image is Dockerfile.gpu (a CUDA + PyTorch base image);
# the control image serves GPU clusters unchanged.
ARG BASE_IMAGE=localhost/llava-mnist-base:bookworm-lean
FROM ${BASE_IMAGE} AS system
# What every image shares: Debian's sources, an installer of runtime packages that leaves
# no package lists or docs behind, the user, the state and Secret directories.
RUN set -eux; \
    echo 'deb http://deb.debian.org/debian bookworm main' > /etc/apt/sources.list; \
    echo 'deb http://deb.debian.org/debian bookworm-updates main' >> /etc/apt/sources.list; \
    echo 'deb http://deb.debian.org/debian-security bookworm-security main' >> /etc/apt/sources.list; \
    printf '%s\n' '#!/bin/sh' 'set -eux' 'apt-get update -qq' \
      'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"' \
      'apt-get clean' 'rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*' \
      > /usr/local/sbin/install-packages; \
    chmod 0755 /usr/local/sbin/install-packages; \
    groupadd --gid 10001 llava; \
    useradd --uid 10001 --gid 10001 --home-dir /home/llava --create-home --shell /usr/sbin/nologin llava; \
    mkdir -p /var/lib/llava-mnist/state /etc/llava-mnist; \
    chown -R 10001:10001 /var/lib/llava-mnist
# Defaults a pod overrides with its environment (see k8s/base): the coordinator's state on
# the volume mounted at /var/lib/llava-mnist/state; everything else as the flags say.
ENV LLAVA_STATE_DIR=/var/lib/llava-mnist/state \
    LLAVA_LISTEN=0.0.0.0:50051
WORKDIR /home/llava

FROM system AS control
# The Debian packages of llava-ctl's shared libraries (scripts/build_image.sh computes
# them from the binary with ldd and dpkg; this default is the list for bookworm).
ARG CONTROL_PACKAGES="libgrpc++1.51 libgrpc29 libprotobuf32 libgoogle-glog0v6 libgflags2.2 \
  libabsl20220623 libssl3 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0"
RUN install-packages ${CONTROL_PACKAGES}
ARG CTL_BINARY=build/bin/llava-ctl
COPY ${CTL_BINARY} /usr/local/bin/llava-ctl
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/llava-ctl"]
CMD ["help"]

FROM system AS runtime
# The Debian runtime packages of the binary's shared libraries (computed as for control).
# libopenblas0-pthread: libtorch's BLAS behind libblas.so.3 (the reference BLAS is 8x
# slower). ca-certificates: none needed by the binary; left out.
ARG RUNTIME_PACKAGES="libtorch1.13 libgrpc++1.51 libgrpc29 libprotobuf32 libgoogle-glog0v6 \
  libgflags2.2 libabsl20220623 libgloo0 libssl3 libpcre2-8-0 libpng16-16 zlib1g \
  libopenblas0-pthread libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0"
RUN install-packages ${RUNTIME_PACKAGES}
# The binary (a path inside the build context; scripts/build_image.sh stages it there).
ARG BINARY=build/bin/llava-mnist
COPY ${BINARY} /usr/local/bin/llava-mnist
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/llava-mnist"]
CMD ["help"]

FROM runtime AS demo
# MNIST (data/mnist), the Llama 3.1 tokenizer and the demo LM trained here by
# `llava-mnist make-demo-lm` (hidden 128, text only): no real weights, no keys.
COPY data/mnist/ /opt/llava-mnist/data/mnist/
COPY data/tokenizer/tokenizer.json /opt/llava-mnist/data/tokenizer/tokenizer.json
COPY data/models/demo-lm/ /opt/llava-mnist/data/models/demo-lm/
ENV LLAVA_MODEL=/opt/llava-mnist/data/models/demo-lm \
    LLAVA_TOKENIZER=/opt/llava-mnist/data/tokenizer/tokenizer.json \
    LLAVA_DATA_DIR=/opt/llava-mnist/data/mnist \
    LLAVA_DEVICE=cpu
