#!/bin/bash
# bench/callgrind.sh: instructions per call of one method, and where they go, with callgrind.
#
# usage: bench/callgrind.sh 'CMD' METHOD [N]
#   e.g. bench/callgrind.sh build/books-server GetBook 2000
#        bench/callgrind.sh 'BOOKS_LOG_LEVEL=warning exec $VALGRIND build/books-server' ListBooks
#   CMD starts the server in the foreground on $PORT, as for run.sh. It is run under valgrind: as
#   "exec $VALGRIND CMD" unless CMD itself says where with $VALGRIND (needed when CMD is compound,
#   e.g. 'rm -f /tmp/b.db; BOOKS_STORE=sqlite:/tmp/b.db exec $VALGRIND build/books-server').
#   METHOD: GetBook, ListBooks or CreateBook (get, list, create). N: measured calls (2000).
#
# What it does: starts the server under `valgrind --tool=callgrind` pinned to $SERVER_CPU (so it runs
# one worker thread), seeds books/b0000..b0999, sends $WARMUP calls of METHOD (200), then measures
# $REPEAT (2) back-to-back intervals of N calls each with h2load at $CONC (1x1: one call at a time).
#
# How the warm-up is kept out: callgrind_control --dump right before and right after each interval.
# A dump writes the counts since the previous dump and restarts them, so each interval's file holds
# exactly the instructions the server ran while h2load sent those N calls (plus h2load's one
# connection set-up, and anything the server does on its own in the ~0.1 s between a dump and h2load
# starting or ending; the "idle" line below measures that background rate). Start-up, seeding,
# warm-up and shutdown land in other files. This is more robust than differencing two whole runs
# (W calls vs W+N calls): those totals include start-up and shutdown, whose cost varies from run to
# run, and background work that scales with wall time, which under valgrind is long and variable;
# the difference of two large numbers then carries all of that noise. Two intervals instead of
# one show whether the figure is stable (they should agree within a few per cent; CreateBook's
# grows slightly as the store fills).
#
# Ir per call = the interval's total Ir ("summary:" line of its dump) / N; reported per interval and
# as the mean. Then the top $TOP functions of the first interval by inclusive and by self Ir
# (callgrind_annotate), with Ir per call. Everything is kept in $OUT_DIR.
#
# Knobs (environment, defaults): WARMUP=200 REPEAT=2 CONC=1x1 TOP=15 SERVER_CPU=0 CLIENT_CPU=1
#   PORT=50071 READY_TIMEOUT=180 OUT_DIR=bench/results/callgrind-METHOD-YYYYmmdd-HHMMSS
#   SEED=1 (0: do not seed)  VALGRIND_EXTRA="" (more valgrind options)  BENCH_PYTHON=/usr/bin/python3
set -uo pipefail
{ # braces: bash reads the whole script before running it, so editing it mid-run is harmless

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 2 ] && [ $# -le 3 ] || usage
CMD=$1
METHOD=$(method_name "$2") || { echo "callgrind.sh: unknown method '$2'" >&2; usage; }
N=${3:-2000}
WARMUP=${WARMUP:-200}
REPEAT=${REPEAT:-2}
CONC=${CONC:-1x1}
TOP=${TOP:-15}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-50071}
READY_TIMEOUT=${READY_TIMEOUT:-180}
# shellcheck disable=SC2034  # PY is used by lib.sh
PY=${BENCH_PYTHON:-/usr/bin/python3}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/callgrind-$METHOD-$(date +%Y%m%d-%H%M%S)}
for c in valgrind callgrind_control callgrind_annotate h2load nghttp taskset ss; do
  command -v "$c" > /dev/null || { echo "callgrind.sh: $c not found: run bench/deps.sh" >&2; exit 2; }
done
[[ $N =~ ^[1-9][0-9]*$ ]] && [[ $WARMUP =~ ^[0-9]+$ ]] && [[ $REPEAT =~ ^[1-9][0-9]*$ ]] \
  || { echo "callgrind.sh: N, WARMUP and REPEAT must be integers (N, REPEAT > 0)" >&2; exit 2; }
[[ $CONC =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] && [ "$N" -ge "${CONC%x*}" ] \
  || { echo "callgrind.sh: CONC must be CLIENTSxSTREAMS with at most N clients" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/books-callgrind.XXXXXX")
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR" || exit 2
make_payloads || exit 2

# --dump-instr=no: costs per function and line, not per instruction (smaller dumps; the per-call
#   and per-function figures need no more).
# --fair-sched=yes: valgrind runs one thread at a time; its default lock can starve a thread that
#   waits for another (the project's test.sh uses it for the same reason).
# --vgdb=yes: callgrind_control talks to the run through vgdb (the default, stated).
# --separate-threads=no: one profile summed over the server's threads (the default, stated).
VG_OUT="$WORK/callgrind.out"
VALGRIND="valgrind --tool=callgrind --dump-instr=no --fair-sched=yes --vgdb=yes --separate-threads=no --callgrind-out-file=$VG_OUT ${VALGRIND_EXTRA:-}"
export VALGRIND
case $CMD in
  *'$VALGRIND'* | *'${VALGRIND}'*) RUN=$CMD ;;
  *) RUN="exec \$VALGRIND $CMD" ;;
esac

# Ir of one dump file: its "summary:" line (callgrind_annotate's PROGRAM TOTALS)
dump_ir() { awk '/^summary:/{print $2; exit} /^totals:/{t=$2} END{if (t != "") print t}' "$1" | head -1; }
# the newest dump part file (callgrind.out.N), after callgrind_control --dump wrote one
last_part() { ls -1 "$VG_OUT".* 2> /dev/null | awk -F. '{print $NF "\t" $0}' | sort -n | tail -1 | cut -f2; }
dump() { # LABEL: dump the counts so far; prints the file it went to
  callgrind_control --dump="$1" "$SRV_PID" > "$WORK/control.out" 2>&1 \
    || { echo "callgrind_control --dump failed: $(cat "$WORK/control.out")" >&2; return 1; }
  last_part
}
fail() { echo "callgrind.sh: $*" >&2; tail -20 "$WORK/server.log" > "$OUT_DIR/server.log.tail" 2> /dev/null; exit 1; }

T0=$(date +%s)
echo "== callgrind: $METHOD, warm-up $WARMUP, $REPEAT x $N measured calls at $CONC; server: $CMD"
start_server "$RUN" taskset -c "$SERVER_CPU" || fail "the server did not come up under valgrind"
echo "   server pid $SRV_PID (valgrind) on CPU $SERVER_CPU; $SEED_RESULT"
pre=$(grpc_status "$METHOD")
if [ "$WARMUP" -gt 0 ]; then
  wl=$CONC
  [ "$WARMUP" -ge "${CONC%x*}" ] || wl=1x1
  h2load_run "$wl" "$METHOD" "$WARMUP" "" || fail "warm-up failed: $(tail -3 "$WORK/h2load.out")"
fi
f=$(dump "start-up, seeding, warm-up") || fail "could not dump"
cp "$f" "$OUT_DIR/callgrind.out.warmup"

irs=() walls=()
for r in $(seq 1 "$REPEAT"); do
  w0=$(now_ns)
  h2load_run "$CONC" "$METHOD" "$N" "" || fail "h2load failed: $(tail -5 "$WORK/h2load.out")"
  w1=$(now_ns)
  f=$(dump "$N calls of $METHOD, interval $r") || fail "could not dump"
  ok=$(h2load_field ok_2xx)
  [ "$ok" = "$N" ] || fail "interval $r: $ok of $N calls got a 2xx answer: $(grep -E '^(requests|status codes):' "$WORK/h2load.out")"
  cp "$f" "$OUT_DIR/callgrind.out.measured$r"
  irs+=("$(dump_ir "$f")")
  walls+=("$(awk -v w=$((w1 - w0)) 'BEGIN{printf "%.1f", w / 1e9}')")
done
# background: as long as one interval took (at most 10 s), no calls
idle_s=$(awk -v w="${walls[0]}" 'BEGIN{ s = w; if (s > 10) s = 10; if (s < 1) s = 1; printf "%.1f", s }')
sleep "$idle_s"
f=$(dump "idle for $idle_s s") || fail "could not dump"
cp "$f" "$OUT_DIR/callgrind.out.idle"
idle_ir=$(dump_ir "$f")
post=$(grpc_status "$METHOD")
stop_server
T1=$(date +%s)

report() {
  local i sum=0
  echo "method: $METHOD   measured calls: $REPEAT x $N at $CONC (after $WARMUP warm-up calls)   grpc-status before/after: $pre/$post"
  for i in "${!irs[@]}"; do
    awk -v r=$((i + 1)) -v ir="${irs[$i]}" -v n="$N" -v w="${walls[$i]}" \
      'BEGIN{ printf "interval %d: %d Ir in %s s under valgrind = %.0f Ir/call\n", r, ir, w, ir / n }'
    sum=$((sum + irs[i]))
  done
  awk -v s="$sum" -v k="${#irs[@]}" -v n="$N" -v m="$METHOD" 'BEGIN{ printf "%s: %.0f instructions per call (mean of %d intervals)\n", m, s / k / n, k }'
  awk -v ir="$idle_ir" -v s="$idle_s" -v a="${irs[0]}" -v w="${walls[0]}" \
    'BEGIN{ printf "idle: %d Ir in %s s with no calls (%.2f%% of interval 1, scaled to its length)\n", ir, s, 100 * ir * (w / s) / a }'
  echo "total wall time: $((T1 - T0)) s"
  # callgrind_annotate 3.19 counts the cost under a "calls=0" line (a call made before the dump,
  # such as the threads' start_thread -> worker_main, still running) as the caller's self cost, so
  # clone and start_thread would show 100% self; read "calls=1" there instead (call counts are not
  # shown here, only costs).
  sed 's/^calls=0 /calls=1 /' "$OUT_DIR/callgrind.out.measured1" > "$WORK/annotate.in"
  for kind in inclusive self; do
    inc=no
    [ $kind = self ] || inc=yes
    echo
    echo "top $TOP functions by $kind Ir (interval 1); Ir/call = Ir / $N, % of the interval's Ir:"
    callgrind_annotate --inclusive=$inc --threshold=100 \
        --auto=no "$WORK/annotate.in" 2> /dev/null \
      | awk -v top="$TOP" -v n="$N" '
          /file:function$/ { on = 1; next }
          on && $1 ~ /^[0-9,]+$/ {
            ir = $1; gsub(",", "", ir)
            rest = substr($0, index($0, "("))
            gsub(/\[\/[^]]*\//, "[", rest)        # [/usr/lib/x86_64-linux-gnu/libc.so.6] -> [libc.so.6]
            printf "%10.0f Ir/call  %s\n", ir / n, rest
            if (++k >= top) exit
          }'
  done
}
report | tee "$OUT_DIR/report.txt"
[ "$pre" = 0 ] && [ "$post" = 0 ] || { echo "callgrind.sh: grpc-status before/after was $pre/$post, not 0/0" >&2; exit 1; }
exit 0
}
