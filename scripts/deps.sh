#!/bin/sh
# deps.sh [run|unit|test|container]: install the Debian 12 packages books-server needs, and nothing
# else.
#   run        what building and running the server needs (default)
#   unit       run + what the cmocka unit tests need (the container image's build stage)
#   test       also what the wire tests, sanitizer, valgrind and terraform checks need, the hostile
#              suite (python3-h2, nghttpx), fuzzing (clang, libFuzzer), hardening-check
#              (devscripts), the interop clients (C++, Go, Java; node and npm as for terraform),
#              the Firestore emulator (Google's package: see below) and Patroni with etcd (the
#              failover tests)
#   container  what scripts/container-test.sh needs on the host: podman, runc, mmdebstrap and the
#              Python gRPC client with the protos it calls through
# apt-get runs only when a package is missing, so a second run takes a moment and works offline.
# Must run as root (or with SKIP_APT=1, which only reports what is missing).
set -eu

RUN_PKGS="build-essential cmake pkg-config
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev protobuf-compiler
  golang-github-gogo-googleapis-dev grpc-proto
  uuid-dev libbsd-dev libssl-dev libsqlite3-dev zlib1g-dev libpq-dev"
UNIT_PKGS="libcmocka-dev"
# The interop clients (tests/interop): C++, Go and Java toolchains with their gRPC libraries and
# protoc plugins. Go: protobuf-go's 1.5 generation of github.com/golang/protobuf (grpc-go accepts 1.3
# too, whose runtime cannot load these protos), genproto for google.rpc's Go types. Java: what
# grpc-java's jars need at run time besides the opencensus that libgrpc-java declares.
INTEROP_PKGS="libgrpc++-dev protobuf-compiler-grpc
  golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev golang-google-protobuf-dev
  golang-google-genproto-dev protoc-gen-go protoc-gen-go-grpc
  default-jdk-headless libgrpc-java protobuf-compiler-grpc-java-plugin libprotobuf-java
  libgoogle-common-protos-java libguava-java libperfmark-java libgoogle-gson-java libnetty-java
  libgeronimo-annotation-1.3-spec-java"
# The failover tests' Patroni cluster (tests/support/patroni.py): Debian's Patroni 3.0 and etcd 3.4
# (a one-member etcd is the cluster's DCS); python3-etcd is the client library Patroni's etcd3
# module imports (patroni depends on it or on consul/kazoo/kubernetes: named so that apt picks it).
# Their packages enable etcd.service and patroni.service; the tests start neither: they run their
# own etcd and Patroni processes on free loopback ports.
PATRONI_PKGS="patroni etcd-server python3-etcd"
TEST_PKGS="$UNIT_PKGS python3 python3-grpcio python3-grpc-tools python3-protobuf python3-h2 valgrind
  devscripts nghttp2-client nghttp2-proxy clang libclang-rt-14-dev postgresql
  $PATRONI_PKGS $INTEROP_PKGS"
CONTAINER_PKGS="podman runc mmdebstrap devscripts python3 python3-grpcio python3-grpc-tools python3-protobuf
  grpc-proto golang-github-gogo-googleapis-dev"

case "${1:-run}" in
  run) want=$RUN_PKGS ;;
  unit) want="$RUN_PKGS $UNIT_PKGS" ;;
  test) want="$RUN_PKGS $TEST_PKGS" ;;
  container) want="$CONTAINER_PKGS" ;;
  *) echo "usage: deps.sh [run|unit|test|container]" >&2; exit 2 ;;
esac
# The terraform test (tests/terraform) and the Node interop client (tests/interop/node) need node
# and npm: any already on PATH will do (such as NodeSource's nodejs, which conflicts with Debian's
# npm package), else Debian's.
if [ "${1:-run}" = test ] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  want="$want nodejs npm"
fi

# The Firestore emulator (the firestore: store's tests): Google's package, from Google's Cloud SDK
# apt repository (cloud.google.com/sdk/docs/install#deb), with Java from Debian. This project's
# machines have it already; a plain Debian machine gets it the documented way.
if [ "${1:-run}" = test ] && ! dpkg-query -W -f='${Status}\n' google-cloud-cli-firestore-emulator \
    2>/dev/null | grep -q '^install ok installed$'; then
  if [ "${SKIP_APT:-0}" = 1 ]; then
    echo "deps: missing: google-cloud-cli-firestore-emulator (SKIP_APT=1, not installing)" >&2
    exit 1
  fi
  echo "deps: installing the Firestore emulator from Google's Cloud SDK apt repository"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends ca-certificates curl gnupg default-jre-headless
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
    gpg --dearmor --yes -o /usr/share/keyrings/cloud.google.gpg
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
    > /etc/apt/sources.list.d/google-cloud-sdk.list
  apt-get update
  apt-get install -y --no-install-recommends google-cloud-cli google-cloud-cli-firestore-emulator
fi

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "deps: all packages present"
  exit 0
fi
if [ "${SKIP_APT:-0}" = 1 ]; then
  echo "deps: missing:$missing (SKIP_APT=1, not installing)" >&2
  exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086  # one word per package
apt-get install -y --no-install-recommends $missing
