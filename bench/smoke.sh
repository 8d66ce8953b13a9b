#!/bin/sh
# bench/smoke.sh BINARY: proves the benchmark driver works, in about half a minute. Runs bench/run.sh
# against BINARY (a books-server) with tiny counts (1 round, 200 requests per level, 200 warm-up
# requests, levels 1x1 and 16x10, GetBook, ListBooks and CreateBook) and fails unless the summary has
# a row for every method and level with req/s > 0, no failed or non-2xx requests and grpc-status 0 in
# every check. Registered as the CTest bench_smoke (label bench). The figures themselves mean
# nothing at these counts.
#   env: SMOKE_N=200, PORT (default: a free port), KEEP=1 keeps the results folder.
set -u
[ $# -eq 1 ] || { echo "usage: smoke.sh BINARY" >&2; exit 2; }
bench_dir=$(cd "$(dirname "$0")" && pwd)
py=${BENCH_PYTHON:-/usr/bin/python3}
case $1 in
  /*) bin=$1 ;;
  *) bin=$(pwd)/$1 ;;
esac
[ -x "$bin" ] || { echo "smoke.sh: $bin is not an executable" >&2; exit 2; }
command -v h2load > /dev/null && command -v nghttp > /dev/null \
  || { echo "smoke.sh: h2load/nghttp missing: run bench/deps.sh" >&2; exit 2; }

# Two CPUs the process may use (server, client), or the same one twice on a one-CPU machine; a free
# port (other tests may be running: none of them is on it once we have it).
# shellcheck disable=SC2046  # two words
set -- $("$py" -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[0], c[1 if len(c) > 1 else 0])')
server_cpu=$1 client_cpu=$2
port=${PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
out=$(mktemp -d "${TMPDIR:-/tmp}/books-bench-smoke.XXXXXX")
methods="GetBook ListBooks CreateBook"
levels="1x1 16x10"

export BOOKS_SMOKE_BINARY="$bin"
ROUNDS=1 N=${SMOKE_N:-200} WARMUP=${SMOKE_N:-200} LEVELS=$levels SCENARIOS=$methods \
  SERVER_CPU=$server_cpu CLIENT_CPU=$client_cpu PORT=$port OUT_DIR=$out \
  bash "$bench_dir/run.sh" books-server='exec "$BOOKS_SMOKE_BINARY"'
rc=$?
echo "smoke.sh: run.sh exited $rc"
if [ -s "$out/summary.tsv" ]; then
  "$py" "$bench_dir/bench.py" check "$out/summary.tsv" "$methods" "$levels" || rc=1
else
  echo "smoke.sh: no summary was written" >&2
  rc=1
fi
if [ $rc -ne 0 ]; then
  echo "smoke.sh: FAILED; per-round rows:"
  cat "$out"/round-*.tsv 2> /dev/null
  ls "$out"/server-*.log > /dev/null 2>&1 && tail -n 20 "$out"/server-*.log
fi
if [ "${KEEP:-0}" = 1 ]; then echo "smoke.sh: results kept in $out"; else rm -rf "$out"; fi
[ $rc -eq 0 ] && echo "smoke.sh: OK"
exit $rc
