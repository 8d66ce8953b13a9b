#!/bin/sh
# run.sh WORKDIR: generate C++ messages and stubs from proto/ (books.proto and the google/api protos
# next to it) and Debian's google/rpc protos (for the error details) with Debian's protoc and
# grpc_cpp_plugin into WORKDIR, compile them with client.cc against libgrpc++, then run the client
# against BOOKS_INTEROP_TARGET (host:port). Set by tests/interop/test_interop.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}
src=${BOOKS_SOURCE_DIR:-$here/../../..}
googleapis=${GOOGLEAPIS_PROTO_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}  # google/rpc

for tool in protoc grpc_cpp_plugin c++ pkg-config; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "run.sh: $tool not found (scripts/deps.sh test)" >&2; exit 1; }
done
pkg-config --exists grpc++ protobuf ||
  { echo "run.sh: grpc++ or protobuf not known to pkg-config (scripts/deps.sh test)" >&2; exit 1; }

protos="books/v1/books.proto google/api/field_behavior.proto google/api/field_info.proto
  google/api/resource.proto google/api/annotations.proto google/api/http.proto
  google/api/client.proto google/rpc/status.proto google/rpc/error_details.proto"
t0=$(date +%s%N)
rm -rf "$work/gen" && mkdir -p "$work/gen"
# shellcheck disable=SC2086  # one word per proto
protoc -I "$src/proto" -I "$googleapis" -I /usr/include --cpp_out="$work/gen" $protos
protoc -I "$src/proto" -I "$googleapis" -I /usr/include --grpc_out="$work/gen" \
  --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" books/v1/books.proto
t1=$(date +%s%N)
echo "interop-cpp: generated in $(( (t1 - t0) / 1000000 )) ms"
# shellcheck disable=SC2046,SC2086  # pkg-config's flags are words
c++ -std=c++17 -O0 -pipe -Wall -I "$work/gen" -o "$work/client" "$here/client.cc" \
  $(find "$work/gen" -name '*.cc' | sort) \
  $(pkg-config --cflags --libs grpc++ protobuf) -lpthread
echo "interop-cpp: compiled in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
exec "$work/client" "$BOOKS_INTEROP_TARGET"
