#!/bin/sh
# run.sh WORKDIR: generate the Python messages and stubs from proto/ (books.proto and the google/api
# protos next to it) and Debian's google/rpc protos (for the error details) with Debian's
# grpc_tools.protoc into WORKDIR, then run client.py against BOOKS_INTEROP_TARGET (host:port). Set
# by tests/interop/test_interop.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}
src=${BOOKS_SOURCE_DIR:-$here/../../..}
googleapis=${GOOGLEAPIS_PROTO_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}  # google/rpc
py=/usr/bin/python3

"$py" -c 'import grpc, grpc_tools.protoc, google.protobuf' ||
  { echo "run.sh: $py lacks grpcio, grpc_tools or protobuf (scripts/deps.sh test)" >&2; exit 1; }

t0=$(date +%s%N)
rm -rf "$work/gen" && mkdir -p "$work/gen"
"$py" -m grpc_tools.protoc -I "$src/proto" -I "$googleapis" \
  --python_out="$work/gen" --grpc_python_out="$work/gen" \
  books/v1/books.proto google/api/field_behavior.proto google/api/field_info.proto \
  google/api/resource.proto google/api/annotations.proto google/api/http.proto \
  google/api/client.proto google/rpc/status.proto google/rpc/error_details.proto
echo "interop-python: generated in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
PYTHONDONTWRITEBYTECODE=1 exec "$py" "$here/client.py" "$work/gen" "$BOOKS_INTEROP_TARGET"
