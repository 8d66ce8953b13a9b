#!/bin/sh
# run.sh WORKDIR: install the pinned @grpc/grpc-js, @grpc/proto-loader and protobufjs
# (package-lock.json) into WORKDIR with `npm ci` (only when the lock changed since the last
# install, so the source tree gets no node_modules and later runs need no network), then run
# client.js against BOOKS_INTEROP_TARGET (host:port): it loads books.proto from proto/ at run time,
# Node's usual way. Set by tests/interop/test_interop.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "run.sh: $tool not found (scripts/deps.sh test installs it)" >&2; exit 1; }
done

t0=$(date +%s%N)
mkdir -p "$work"
if [ ! -f "$work/node_modules/@grpc/grpc-js/package.json" ] ||
   ! cmp -s "$here/package-lock.json" "$work/.installed-package-lock.json"; then
  rm -f "$work/.installed-package-lock.json"
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --prefer-offline)
  cp "$here/package-lock.json" "$work/.installed-package-lock.json"
fi
echo "interop-node: installed in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
NODE_PATH="$work/node_modules" exec node "$here/client.js" "$BOOKS_INTEROP_TARGET"
