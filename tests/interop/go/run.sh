#!/bin/sh
# run.sh WORKDIR: generate Go messages and stubs from proto/ alone (books.proto and the google/api
# protos next to it; google/protobuf from /usr/include) with Debian's protoc, protoc-gen-go and
# protoc-gen-go-grpc into a GOPATH under WORKDIR, with no M option: every file's go_package says
# where its code goes. Then build client.go offline against Debian's Go packages
# (/usr/share/gocode: grpc-go, protobuf-go and genproto's
# google.golang.org/genproto/googleapis/rpc/{status,errdetails}) and run it against
# BOOKS_INTEROP_TARGET (host:port). Set by tests/interop/test_interop.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}
src=${BOOKS_SOURCE_DIR:-$here/../../..}

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "run.sh: $tool not found (scripts/deps.sh test)" >&2; exit 1; }
done
for pkg in google.golang.org/grpc google.golang.org/protobuf github.com/golang/protobuf/ptypes \
           google.golang.org/genproto/googleapis/rpc/errdetails; do
  [ -d "/usr/share/gocode/src/$pkg" ] ||
    { echo "run.sh: /usr/share/gocode/src/$pkg missing (scripts/deps.sh test)" >&2; exit 1; }
done

# GOPATH mode, offline: the generated packages first, then Debian's. The proto/google/api files
# carry googleapis' go_package, google.golang.org/genproto/googleapis/api/annotations, so books.pb.go
# imports that package and their generated code lands in it, shadowing Debian's older copy
# (golang-google-genproto-dev, which lacks field_info.proto and FieldBehavior IDENTIFIER): each
# google/api file is registered once, from the definitions books.proto was compiled against.
export GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache"
export GOPROXY=off GOFLAGS= CGO_ENABLED=0

t0=$(date +%s%N)
rm -rf "$work/gopath" && mkdir -p "$work/gopath/src"
protoc -I "$src/proto" -I /usr/include \
  --go_out="$work/gopath/src" --go-grpc_out="$work/gopath/src" \
  books/v1/books.proto google/api/field_behavior.proto google/api/field_info.proto \
  google/api/resource.proto google/api/annotations.proto google/api/http.proto \
  google/api/client.proto
t1=$(date +%s%N)
echo "interop-go: generated in $(( (t1 - t0) / 1000000 )) ms"
go build -o "$work/client" "$here/client.go"
echo "interop-go: compiled in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
exec "$work/client" "$BOOKS_INTEROP_TARGET"
