#!/bin/sh
# run.sh [books-server flags...]: install what the server needs (Debian 12, as root), build it (and
# the `books` client beside it), and start it in the foreground with the embedded in-memory store
# on $PORT (default 8080).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh run
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBOOKS_TESTS=OFF
cmake --build build -j"$(nproc)" --target books-server books
exec ./build/books-server "$@"
