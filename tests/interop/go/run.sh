#!/bin/sh
# run.sh WORKDIR: generate Go messages and stubs from proto/ (and the google/api protos it imports)
# with Debian's protoc, protoc-gen-go and protoc-gen-go-grpc into a GOPATH under WORKDIR, build
# client.go offline against Debian's Go packages (/usr/share/gocode: grpc-go, protobuf-go and
# genproto's google.golang.org/genproto/googleapis/rpc/{status,errdetails}), then run it against
# BOOKS_INTEROP_TARGET (host:port). Set by tests/interop/test_interop.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}
src=${BOOKS_SOURCE_DIR:-$here/../../..}
googleapis=${GOOGLEAPIS_PROTO_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "run.sh: $tool not found (scripts/deps.sh test)" >&2; exit 1; }
done
for pkg in google.golang.org/grpc google.golang.org/protobuf github.com/golang/protobuf/ptypes \
           google.golang.org/genproto/googleapis/rpc/errdetails; do
  [ -d "/usr/share/gocode/src/$pkg" ] ||
    { echo "run.sh: /usr/share/gocode/src/$pkg missing (scripts/deps.sh test)" >&2; exit 1; }
done

# GOPATH mode, offline: the generated packages first, then Debian's. The generated
# google.golang.org/genproto/googleapis/api/annotations (googleapis' go_package, which our
# google/api protos carry) shadows Debian's older copy of that package, so each google/api file is
# registered once. Debian's annotations.proto, http.proto and client.proto carry gogo's go_package
# "api"; the M options give them googleapis' instead.
export GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache"
export GOPROXY=off GOFLAGS= CGO_ENABLED=0
ann="google.golang.org/genproto/googleapis/api/annotations;annotations"
opts=""
for f in annotations http client; do
  opts="$opts --go_opt=Mgoogle/api/$f.proto=$ann --go-grpc_opt=Mgoogle/api/$f.proto=$ann"
done

t0=$(date +%s%N)
rm -rf "$work/gopath" && mkdir -p "$work/gopath/src"
# shellcheck disable=SC2086  # one word per option
protoc -I "$src/proto" -I "$googleapis" -I /usr/include $opts \
  --go_out="$work/gopath/src" --go-grpc_out="$work/gopath/src" \
  books/v1/books.proto google/api/field_behavior.proto google/api/field_info.proto \
  google/api/resource.proto google/api/annotations.proto google/api/http.proto \
  google/api/client.proto
t1=$(date +%s%N)
echo "interop-go: generated in $(( (t1 - t0) / 1000000 )) ms"
go build -o "$work/client" "$here/client.go"
echo "interop-go: compiled in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
exec "$work/client" "$BOOKS_INTEROP_TARGET"
