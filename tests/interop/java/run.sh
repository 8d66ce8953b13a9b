#!/bin/sh
# run.sh WORKDIR: generate Java messages and stubs from proto/ alone (books.proto and the google/api
# protos next to it; google/protobuf from /usr/include) with Debian's protoc and grpc_java_plugin
# into WORKDIR, compile them with Client.java against Debian's grpc-java jars (google.rpc's
# messages come compiled in proto-google-common-protos), then run the client against
# BOOKS_INTEROP_TARGET (host:port). Set by tests/interop/test_interop.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}
src=${BOOKS_SOURCE_DIR:-$here/../../..}

for tool in protoc grpc_java_plugin javac java; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "run.sh: $tool not found (scripts/deps.sh test)" >&2; exit 1; }
done
# What grpc-java 1.41 needs at run time; Debian's libgrpc-java declares none of it but opencensus.
cp=""
for jar in grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub \
           protobuf proto-google-common-protos guava perfmark-api gson \
           netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common \
           netty-handler netty-handler-proxy netty-resolver netty-transport \
           geronimo-annotation-1.3-spec; do
  [ -f "/usr/share/java/$jar.jar" ] ||
    { echo "run.sh: /usr/share/java/$jar.jar missing (scripts/deps.sh test)" >&2; exit 1; }
  cp="$cp:/usr/share/java/$jar.jar"
done

t0=$(date +%s%N)
rm -rf "$work/gen" "$work/classes" && mkdir -p "$work/gen" "$work/classes"
protoc -I "$src/proto" -I /usr/include --java_out="$work/gen" \
  books/v1/books.proto google/api/field_behavior.proto google/api/field_info.proto \
  google/api/resource.proto google/api/annotations.proto google/api/http.proto \
  google/api/client.proto
protoc -I "$src/proto" -I /usr/include --grpc-java_out="$work/gen" \
  --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" books/v1/books.proto
t1=$(date +%s%N)
echo "interop-java: generated in $(( (t1 - t0) / 1000000 )) ms"
# The generated com.google.api classes come first on the class path: they are the ones this proto
# was written against (FieldBehavior.IDENTIFIER, FieldInfo), newer than proto-google-common-protos
# 1.16's copies.
find "$work/gen" -name '*.java' > "$work/sources.txt"
javac -nowarn -encoding UTF-8 -d "$work/classes" -cp "${cp#:}" "@$work/sources.txt" \
  "$here/Client.java"
echo "interop-java: compiled in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
exec java -cp "$work/classes$cp" com.example.books.interop.Client "$BOOKS_INTEROP_TARGET"
