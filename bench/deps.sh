#!/bin/sh
# bench/deps.sh: install what bench/ needs on Debian 12, and only what is missing: h2load and nghttp
# (nghttp2-client), valgrind (callgrind), Debian's Python gRPC client and protoc (python3-grpcio,
# python3-grpc-tools, python3-protobuf) and ss (iproute2); taskset comes with util-linux. The protos
# bench.py compiles are all in proto/.
# apt-get runs only when a package is missing (dpkg-query check), so a second run works offline.
# Must run as root, or with SKIP_APT=1, which only reports what is missing (exit 1 when something is).
set -eu

want="nghttp2-client valgrind python3 python3-grpcio python3-grpc-tools python3-protobuf iproute2
  util-linux"
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "bench/deps: all packages present"
  exit 0
fi
if [ "${SKIP_APT:-0}" = 1 ]; then
  echo "bench/deps: missing:$missing (SKIP_APT=1, not installing)" >&2
  exit 1
fi
echo "bench/deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086  # one word per package
apt-get install -y --no-install-recommends $missing
