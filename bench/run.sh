#!/bin/bash
# bench/run.sh: load-test one or more gRPC books servers with h2load and compare them.
#
# usage: bench/run.sh NAME='CMD' [NAME2='CMD2' ...]
#   e.g. bench/run.sh mine='build/books-server'
#        bench/run.sh mem='build/books-server' \
#                     file='rm -f /tmp/b.db*; exec env BOOKS_STORE=sqlite:/tmp/b.db build/books-server'
#   CMD runs a server in the foreground on port $PORT; it is run with bash -c (relative paths are
#   taken from the current directory), so compound commands work.
#
# For every round, every scenario (method) and every server (the server order rotates from round to
# round, so no server always runs first), it:
#   1. starts a fresh server pinned to CPU $SERVER_CPU (taskset), waits until GetBook answers with
#      any grpc-status, seeds books/b0000..b0999 through CreateBook (ALREADY_EXISTS counts as done)
#      and requires grpc-status 0 for GetBook(books/b0042);
#   2. warms up with $WARMUP requests of the method at 16x10 (not measured);
#   3. for each level CxM in $LEVELS (C connections x M concurrent streams each): one grpc-status
#      check call (nghttp), h2load pinned to CPU $CLIENT_CPU for N requests with a per-request log,
#      another grpc-status check; records req/s, latency (mean/p50/p99/max from the log), the
#      server's CPU time over the h2load run (utime+stime, /proc/PID/stat) per request and as % of
#      the wall time, and its peak RSS (VmHWM);
#   4. stops the server (SIGTERM).
# Request bodies: GetBook(name="books/b0042"), ListBooks(page_size=50) (first page), CreateBook with
# a book and no book_id (a new server-named book per call); built from proto/books/v1/books.proto at
# run time by bench.py.
#
# Output: $OUT_DIR/round-N.tsv (one row per server, method, level), $OUT_DIR/summary.md and
# summary.tsv (medians over the rounds; printed at the end), $OUT_DIR/meta.txt (settings, machine).
#
# Knobs (environment, defaults):
#   ROUNDS=3              interleaved rounds
#   LEVELS="1x1 16x10"    CLIENTSxSTREAMS
#   N                     requests per level for every level (default: 20000 at 1x1, 100000 otherwise)
#   N_<level>             requests for one level, e.g. N_1x1=5000 N_16x10=50000 (wins over N)
#   SCENARIOS="GetBook ListBooks CreateBook"   (get, list, create also accepted)
#   WARMUP=20000          warm-up requests per fresh server, at 16x10 (at 1x1 when WARMUP < 16); 0: none
#   SERVER_CPU=0 CLIENT_CPU=1   CPUs for taskset
#   PORT=50061            the port the servers are started on
#   OUT_DIR=bench/results/run-YYYYmmdd-HHMMSS
#   SEED=1                0: do not seed (for servers that start with their books)
#   READY_TIMEOUT=30      seconds for a server to answer its first call
#   BENCH_PYTHON=/usr/bin/python3
#   AUX_CPU_MATCH         a process-name pattern (pgrep), e.g. 'postgres': also record the summed
#                         utime+stime of every matching process over each h2load run, per request
#                         (columns aux_cpu_s, aux_cpu_us_per_req). Default: none (off)
#   AUX_CPU_PARENT        with AUX_CPU_MATCH: only this pid and its matching children (e.g. the
#                         postmaster of the one PostgreSQL cluster the servers use)
#   INSTANCES=1           instances of each server: start CMD that many times (ports PORT, PORT+1,
#                         ..., all pinned to SERVER_CPU, one after the other, each ready and seeded
#                         before the next starts) and load them all at once: one h2load per instance,
#                         all on CLIENT_CPU, each with CLIENTS/INSTANCES connections and N/INSTANCES
#                         requests. req/s, ok/failed counts and server CPU are summed over the
#                         instances, latencies are over all their requests, RSS is the largest
#                         instance's, a grpc-status check is made on every instance.
#                         INSTANCES_<NAME> sets it for one server (NAME with . and - as _).
#                         CMD sees BENCH_INSTANCE (1, 2, ...) and BENCH_INSTANCES: a server on a
#                         shared database should reset it only when BENCH_INSTANCE is 1.
set -uo pipefail
{ # braces: bash reads the whole script before running it, so editing it mid-run is harmless

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
NAMES=() CMDS=()
for a in "$@"; do
  case $a in
    -h | --help) usage ;;
    *=*) ;;
    *) echo "run.sh: expected NAME='CMD', got: $a" >&2; usage ;;
  esac
  n=${a%%=*}
  [[ $n =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "run.sh: bad server name '$n' (letters, digits, _ . -)" >&2; exit 2; }
  for seen in "${NAMES[@]}"; do
    [ "$seen" != "$n" ] || { echo "run.sh: server name '$n' given twice" >&2; exit 2; }
  done
  NAMES+=("$n")
  CMDS+=("${a#*=}")
done

ROUNDS=${ROUNDS:-3}
LEVELS=${LEVELS:-"1x1 16x10"}
SCENARIOS=${SCENARIOS:-"GetBook ListBooks CreateBook"}
WARMUP=${WARMUP:-20000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-50061}
PY=${BENCH_PYTHON:-/usr/bin/python3}
AUX_CPU_MATCH=${AUX_CPU_MATCH:-}
INSTANCES=${INSTANCES:-1}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/run-$(date +%Y%m%d-%H%M%S)}
TCK=$(getconf CLK_TCK)

# ---- preflight -----------------------------------------------------------------------------------
for c in h2load nghttp taskset ss awk; do
  command -v "$c" > /dev/null || { echo "run.sh: $c not found: run bench/deps.sh" >&2; exit 2; }
done
"$PY" -c 'import grpc, grpc_tools, google.protobuf' 2> /dev/null \
  || { echo "run.sh: $PY lacks grpcio/grpc_tools/protobuf: run bench/deps.sh" >&2; exit 2; }
for cpu in "$SERVER_CPU" "$CLIENT_CPU"; do
  taskset -c "$cpu" true 2> /dev/null || { echo "run.sh: cannot pin to CPU $cpu (set SERVER_CPU/CLIENT_CPU)" >&2; exit 2; }
done
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || echo "run.sh: warning: server and h2load share CPU $SERVER_CPU" >&2
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ROUNDS must be a positive integer" >&2; exit 2; }
[[ $WARMUP =~ ^[0-9]+$ ]] || { echo "run.sh: WARMUP must be a number of requests" >&2; exit 2; }
METHODS=()
for s in $SCENARIOS; do
  m=$(method_name "$s" 2> /dev/null) || true
  [ -n "$m" ] || { echo "run.sh: unknown scenario '$s' (GetBook, ListBooks, CreateBook)" >&2; exit 2; }
  METHODS+=("$m")
done
n_for() { # LEVEL -> requests
  local v="N_$1"
  [[ $1 =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "run.sh: bad level '$1' (CLIENTSxSTREAMS, e.g. 16x10)" >&2; return 1; }
  if [ -n "${!v:-}" ]; then echo "${!v}"
  elif [ -n "${N:-}" ]; then echo "$N"
  elif [ "$1" = 1x1 ]; then echo 20000
  else echo 100000; fi
}
for lv in $LEVELS; do
  n=$(n_for "$lv") || exit 2
  [ "$n" -ge "${lv%x*}" ] 2> /dev/null || { echo "run.sh: level $lv needs at least ${lv%x*} requests, got '$n'" >&2; exit 2; }
done
instances_for() { # NAME -> instances
  local v="INSTANCES_${1//[.-]/_}"
  echo "${!v:-$INSTANCES}"
}
for nm in "${NAMES[@]}"; do
  ni=$(instances_for "$nm")
  [[ $ni =~ ^[1-8]$ ]] || { echo "run.sh: instances of $nm must be 1..8, got '$ni'" >&2; exit 2; }
  [ "$ni" = 1 ] && continue
  for lv in $LEVELS; do
    n=$(n_for "$lv")
    [ $((${lv%x*} % ni)) = 0 ] && [ $((n % ni)) = 0 ] \
      || { echo "run.sh: $nm has $ni instances: level $lv's connections and requests ($n) must divide by $ni" >&2; exit 2; }
  done
done
if [ -n "$AUX_CPU_MATCH" ]; then
  command -v pgrep > /dev/null || { echo "run.sh: AUX_CPU_MATCH needs pgrep (procps)" >&2; exit 2; }
  if [ -n "${AUX_CPU_PARENT:-}" ]; then
    kill -0 "$AUX_CPU_PARENT" 2> /dev/null || [ -d "/proc/$AUX_CPU_PARENT" ] \
      || { echo "run.sh: AUX_CPU_PARENT=$AUX_CPU_PARENT: no such process" >&2; exit 2; }
  fi
  [ -n "$(aux_pids)" ] || echo "run.sh: warning: no process matches AUX_CPU_MATCH='$AUX_CPU_MATCH' now" >&2
fi
BASE_PORT=$PORT
SRV_PIDS=() LAUNCH_PIDS=()
# stop_all: stops every instance start_instances started
stop_all() {
  local j
  for j in "${!SRV_PIDS[@]}"; do
    SRV_PID=${SRV_PIDS[$j]} LAUNCH_PID=${LAUNCH_PIDS[$j]}
    stop_server
  done
  SRV_PIDS=() LAUNCH_PIDS=()
  SRV_PID="" LAUNCH_PID=""
  PORT=$BASE_PORT
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/books-bench.XXXXXX")
trap 'stop_all; stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR" || exit 2
make_payloads || { echo "run.sh: could not build the request bodies" >&2; exit 2; }

START_S=$(date +%s)
{
  echo "started: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) CPUs online, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "h2load: $(h2load --version | head -1)"
  echo "ROUNDS=$ROUNDS LEVELS=\"$LEVELS\" SCENARIOS=\"${METHODS[*]}\" WARMUP=$WARMUP SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU PORT=$PORT"
  echo "AUX_CPU_MATCH='$AUX_CPU_MATCH' AUX_CPU_PARENT=${AUX_CPU_PARENT:-} INSTANCES=$INSTANCES"
  for lv in $LEVELS; do echo "N_$lv=$(n_for "$lv")"; done
  for i in "${!NAMES[@]}"; do echo "server ${NAMES[$i]} ($(instances_for "${NAMES[$i]}") instance(s)): ${CMDS[$i]}"; done
} > "$OUT_DIR/meta.txt"
cat "$OUT_DIR/meta.txt"

HEADER="round	server	method	level	requests	ok_2xx	non_2xx	failed	wall_s	req_s	mean_us	p50_us	p99_us	max_us	srv_cpu_s	srv_cpu_pct	srv_cpu_us_per_req	peak_rss_kib	grpc_pre	grpc_post	aux_cpu_s	aux_cpu_us_per_req	instances"
rc=0

# start_instances CMD NI: starts NI instances of CMD on ports BASE_PORT.. (each ready and seeded
# before the next starts); SRV_PIDS, LAUNCH_PIDS. Returns 1 when one does not come up.
start_instances() {
  local cmd=$1 ni=$2 j
  for j in $(seq 1 "$ni"); do
    PORT=$((BASE_PORT + j - 1)) SERVER_LOG=$WORK/server-$j.log
    [ "$ni" = 1 ] && SERVER_LOG=$WORK/server.log
    if ! start_server "$cmd" taskset -c "$SERVER_CPU" env BENCH_INSTANCE="$j" BENCH_INSTANCES="$ni"; then
      SRV_PIDS+=("$SRV_PID") LAUNCH_PIDS+=("$LAUNCH_PID")
      PORT=$BASE_PORT
      return 1
    fi
    SRV_PIDS+=("$SRV_PID") LAUNCH_PIDS+=("$LAUNCH_PID")
    SEEDS+=("$SEED_RESULT")
  done
  PORT=$BASE_PORT
}

# load_all LEVEL METHOD N LOG NI: h2load against every instance at once (instance j on port
# BASE_PORT+j-1, output $WORK/h2load-j.out and LOG-j), each with CLIENTS/NI connections and N/NI
# requests; with NI 1, exactly h2load_run (output $WORK/h2load.out and LOG). Returns non-zero when
# an h2load did.
load_all() {
  local lv=$1 m=$2 n=$3 log=$4 ni=$5 c=${1%x*} s=${1#*x} j r=0 pids=()
  if [ "$ni" = 1 ]; then
    H2LOAD_OUT=$WORK/h2load.out h2load_run "$lv" "$m" "$n" "$log"
    return
  fi
  for j in $(seq 1 "$ni"); do
    PORT=$((BASE_PORT + j - 1)) H2LOAD_OUT=$WORK/h2load-$j.out \
      h2load_run "$((c / ni > 0 ? c / ni : 1))x$s" "$m" "$((n / ni > 0 ? n / ni : 1))" "${log:+$log-$j}" &
    pids+=($!)
  done
  for j in "${pids[@]}"; do wait "$j" || r=1; done
  return $r
}

# sum_field NAME NI: h2load_field NAME summed over the instances' outputs (- when one is missing)
sum_field() {
  local j v out=()
  if [ "$2" = 1 ]; then H2LOAD_OUT=$WORK/h2load.out h2load_field "$1"; return; fi
  for j in $(seq 1 "$2"); do
    v=$(H2LOAD_OUT=$WORK/h2load-$j.out h2load_field "$1")
    [ -n "$v" ] || { echo -; return; }
    out+=("$v")
  done
  printf '%s\n' "${out[@]}" | awk '{ t += $1 } END { if (t == int(t)) printf "%d\n", t; else printf "%.2f\n", t }'
}

# status_all METHOD NI: grpc_status on every instance: the one value when all agree, else a,b,...
status_all() {
  local j out=()
  for j in $(seq 1 "$2"); do out+=("$(PORT=$((BASE_PORT + j - 1)) grpc_status "$1")"); done
  PORT=$BASE_PORT
  if [ "$(printf '%s\n' "${out[@]}" | sort -u | wc -l)" = 1 ]; then echo "${out[0]}"; else (IFS=,; echo "${out[*]}"); fi
}

# ticks_all: utime+stime summed over every instance (empty when one is gone)
ticks_all() {
  local p t sum=0
  for p in "${SRV_PIDS[@]}"; do
    t=$(cpu_ticks "$p")
    [ -n "$t" ] || { echo ""; return; }
    sum=$((sum + t))
  done
  echo "$sum"
}

# rss_all: the largest VmHWM of the instances
rss_all() {
  local p v max=""
  for p in "${SRV_PIDS[@]}"; do
    v=$(peak_rss_kib "$p")
    [ -n "$v" ] && { [ -z "$max" ] || [ "$v" -gt "$max" ]; } && max=$v
  done
  echo "$max"
}

# measure ROUND NAME CMD METHOD TSV: one fresh server (INSTANCES of it), every level, rows appended to TSV
measure() {
  local round=$1 name=$2 cmd=$3 m=$4 tsv=$5 lv n c pre post t0 t1 w0 w1 ok non failed rps
  local mean p50 p99 max wall cpu_s cpu_pct cpu_req rss wl ni aux_s aux_req a1 j
  ni=$(instances_for "$name")
  SEEDS=()
  if ! start_instances "$cmd" "$ni"; then
    echo "== round $round $name $m: the server did not come up; rows marked failed" >&2
    if [ "$ni" = 1 ]; then
      cp "$WORK/server.log" "$OUT_DIR/server-$name-$m-round$round.log" 2> /dev/null
    else
      for j in $(seq 1 "$ni"); do
        cp "$WORK/server-$j.log" "$OUT_DIR/server-$name-$m-round$round-instance$j.log" 2> /dev/null
      done
    fi
    for lv in $LEVELS; do
      printf '%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tnostart\tnostart\t-\t-\t%s\n' \
        "$round" "$name" "$m" "$lv" "$(n_for "$lv")" "$ni" >> "$tsv"
    done
    stop_all
    rc=1
    return
  fi
  echo "== round $round $name $m: pid ${SRV_PIDS[*]} on CPU $SERVER_CPU, h2load on CPU $CLIENT_CPU; ${SEEDS[*]}"
  if [ "$WARMUP" -gt 0 ]; then
    wl=16x10
    [ "$WARMUP" -ge 16 ] || wl=1x1
    [ "$ni" -gt 1 ] && [ "$wl" = 1x1 ] && wl=${ni}x1
    load_all "$wl" "$m" "$WARMUP" "" "$ni" || echo "   warm-up: h2load failed" >&2
  fi
  for lv in $LEVELS; do
    n=$(n_for "$lv")
    pre=$(status_all "$m" "$ni")
    [ -n "$AUX_CPU_MATCH" ] && aux_snapshot > "$WORK/aux.before"
    t0=$(ticks_all)
    w0=$(now_ns)
    load_all "$lv" "$m" "$n" "$WORK/h2load.log" "$ni" \
      || echo "   $lv: h2load exited non-zero: $(tail -q -n 3 "$WORK"/h2load*.out)" >&2
    w1=$(now_ns)
    t1=$(ticks_all)
    [ -n "$AUX_CPU_MATCH" ] && aux_snapshot > "$WORK/aux.after"
    post=$(status_all "$m" "$ni")
    rss=$(rss_all)
    ok=$(sum_field ok_2xx "$ni") non=$(sum_field non_2xx "$ni") failed=$(sum_field failed "$ni") rps=$(sum_field req_s "$ni")
    [ "$ni" = 1 ] || cat "$WORK"/h2load.log-* > "$WORK/h2load.log" 2> /dev/null
    read -r mean p50 p99 max < <("$PY" "$BENCH_DIR/bench.py" h2stats "$WORK/h2load.log" 2> /dev/null || echo "- - - -")
    [ "$ni" = 1 ] || rm -f "$WORK"/h2load.log-*
    if [ -z "$t0" ] || [ -z "$t1" ]; then
      wall=- cpu_s=- cpu_pct=- cpu_req=-
      echo "   $lv: the server (pid ${SRV_PIDS[*]}) is gone" >&2
    else
      read -r wall cpu_s cpu_pct cpu_req < <(awk -v d=$((t1 - t0)) -v tck="$TCK" -v w=$((w1 - w0)) -v n="$n" \
        'BEGIN { s = d / tck; printf "%.3f %.2f %.0f %.1f\n", w / 1e9, s, 100 * s / (w / 1e9), 1e6 * s / n }')
    fi
    aux_s=- aux_req=-
    if [ -n "$AUX_CPU_MATCH" ]; then
      a1=$(aux_ticks "$WORK/aux.before" "$WORK/aux.after")
      read -r aux_s aux_req < <(awk -v d="$a1" -v tck="$TCK" -v n="$n" \
        'BEGIN { s = d / tck; printf "%.2f %.1f\n", s, 1e6 * s / n }')
    fi
    [ "${ok:-0}" = "$n" ] && [ "${failed:-x}" = 0 ] && [ "${non:-x}" = 0 ] && [ "$pre" = 0 ] && [ "$post" = 0 ] || rc=1
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$round" "$name" "$m" "$lv" "$n" "${ok:--}" "${non:--}" "${failed:--}" "$wall" "${rps:--}" \
      "$mean" "$p50" "$p99" "$max" "$cpu_s" "$cpu_pct" "$cpu_req" "${rss:--}" "$pre" "$post" \
      "$aux_s" "$aux_req" "$ni" >> "$tsv"
    printf '   %-6s %7s req/s  cpu %5s us/req (%s%%)  aux %s us/req  lat mean/p50/p99 %s/%s/%s us  rss %s KiB  2xx %s/%s  grpc-status %s/%s\n' \
      "$lv" "${rps:--}" "$cpu_req" "$cpu_pct" "$aux_req" "$mean" "$p50" "$p99" "${rss:--}" "${ok:--}" "$n" "$pre" "$post"
  done
  stop_all
}

for round in $(seq 1 "$ROUNDS"); do
  tsv="$OUT_DIR/round-$round.tsv"
  echo "$HEADER" > "$tsv"
  for m in "${METHODS[@]}"; do
    for k in "${!NAMES[@]}"; do
      i=$(((k + round - 1) % ${#NAMES[@]}))
      measure "$round" "${NAMES[$i]}" "${CMDS[$i]}" "$m" "$tsv"
    done
  done
done

echo
echo "== summary: medians over $ROUNDS round(s); $OUT_DIR/summary.md"
"$PY" "$BENCH_DIR/bench.py" summarize "$OUT_DIR" || rc=1
END_S=$(date +%s)
{
  echo "finished: $(date -Is), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "wall time: $((END_S - START_S)) s"
} | tee -a "$OUT_DIR/meta.txt"
exit $rc
}
