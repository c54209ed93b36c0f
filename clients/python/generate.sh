#!/usr/bin/env bash
# Generates the Python gRPC stubs of protos/llava.proto into
# clients/python/llava_client/_proto/ (git-ignored; run again after the proto changes),
# with Debian's protoc (protobuf-compiler) and grpc_python_plugin (protobuf-compiler-grpc).
# The proto is mapped to llava_client/_proto/llava.proto so that the generated modules
# import each other as llava_client._proto.*, with no sys.path edits.
#   clients/python/generate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
protos=$here/../../protos
plugin=${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}
command -v protoc >/dev/null || { echo "generate.sh: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
[[ -n $plugin ]] || { echo "generate.sh: grpc_python_plugin is missing (apt-get install protobuf-compiler-grpc)" >&2; exit 1; }
out=$here/llava_client/_proto
tmp=$(mktemp -d "$here/.generate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
protoc --proto_path="llava_client/_proto=$protos" --python_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-grpc_python="$plugin" llava_client/_proto/llava.proto
: > "$tmp/llava_client/_proto/__init__.py"
rm -rf "$out"
mv "$tmp/llava_client/_proto" "$out"
