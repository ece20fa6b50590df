#!/bin/sh
# Generates the weft.v1 Python stubs (*_pb2.py, *_pb2_grpc.py) from proto/ into
# ./gen (or the directory given as $1). Nothing generated is committed: the
# stubs must match the protobuf runtime they are imported with, so they are made
# where they run.
#
# Uses Debian's protoc (protobuf-compiler 3.21, with libprotobuf-dev for the
# well-known types) and grpc_python_plugin (protobuf-compiler-grpc 1.51), which
# match python3-protobuf and python3-grpcio. Without them it falls back to
# grpcio-tools (python3 -m pip install grpcio-tools), which bundles its own protoc.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
out=${1:-$here/gen}
python=${WEFT_PYTHON:-/usr/bin/python3}
mkdir -p "$out"
# The protoc beside grpc_python_plugin (/usr/bin), not whichever is first on PATH:
# npm's `protoc` (node_modules/.bin, used for the TypeScript bindings) is newer
# than python3-protobuf and generates code that it cannot import.
plugin=$(command -v grpc_python_plugin 2>/dev/null || true)
protoc=${PROTOC:-${plugin:+$(dirname "$plugin")/protoc}}
if [ -n "$plugin" ] && [ -x "$protoc" ]; then
  "$protoc" -I "$proto" --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin" \
    "$proto"/weft/v1/*.proto
elif "$python" -c 'import grpc_tools' >/dev/null 2>&1; then
  "$python" -m grpc_tools.protoc -I "$proto" --python_out="$out" --grpc_python_out="$out" "$proto"/weft/v1/*.proto
else
  echo "gen.sh: need protoc and grpc_python_plugin (apt-get install protobuf-compiler libprotobuf-dev protobuf-compiler-grpc) or grpcio-tools (pip install grpcio-tools)" >&2
  exit 1
fi
echo "stubs in $out/weft/v1"
