# shellcheck shell=bash
# bench/lib.sh: helpers for run.sh and callgrind.sh (sourced, not run).
# The caller sets BENCH_DIR (this folder), PORT, WORK (a scratch folder) and PY (python with grpcio);
# optionally SERVER_LOG (default $WORK/server.log) and H2LOAD_OUT (default $WORK/h2load.out), so that
# several servers and h2loads can run side by side (run.sh with INSTANCES > 1).

# method_name WORD: GetBook/ListBooks/CreateBook from get|getbook|GetBook, list..., create...
method_name() {
  case $(printf %s "$1" | tr '[:upper:]' '[:lower:]') in
    get | getbook) echo GetBook ;;
    list | listbooks) echo ListBooks ;;
    create | createbook) echo CreateBook ;;
    *) return 1 ;;
  esac
}

# make_payloads: request bodies from the repository's proto into $WORK/payloads/METHOD.bin
make_payloads() {
  "$PY" "$BENCH_DIR/bench.py" payloads "$WORK/payloads"
}

# grpc_status METHOD: the grpc-status trailer of one call of METHOD with its benchmark body, made
# with nghttp over h2c (the same bytes h2load sends); "none" when there was no answer.
grpc_status() {
  local s
  s=$(timeout 10 nghttp -v -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$WORK/payloads/$1.bin" "http://127.0.0.1:$PORT/books.v1.BooksService/$1" 2>/dev/null \
      | grep -a -o 'grpc-status: [0-9]*' | tail -1 | cut -d' ' -f2)
  echo "${s:-none}"
}

# port_pid: pid of the process listening on $PORT (empty when none or unknown)
port_pid() {
  ss -Hltnp "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
port_busy() { ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; }

# cpu_ticks PID: utime+stime of every thread of PID, in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name, which may hold spaces)
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}
# peak_rss_kib PID: VmHWM, the peak resident set over the process's life so far
peak_rss_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null; }

now_ns() { date +%s%N; }

SRV_PID="" LAUNCH_PID=""

# start_server 'CMD' PREFIX...: runs CMD with bash -c under PREFIX (e.g. taskset -c 0), PORT in its
# environment, output to $SERVER_LOG. Ready: GetBook answers with any grpc-status within
# $READY_TIMEOUT s. Then seeds books/b0000..b0999 (SEED=0 skips) and requires GetBook(books/b0042)
# to answer 0. SRV_PID: the process holding the listening socket (the measured one).
start_server() {
  local cmd=$1 st=none deadline p log=${SERVER_LOG:-$WORK/server.log}
  shift
  if port_busy; then
    echo "port $PORT is in use (pid $(port_pid)); pick another with PORT=..." >&2
    return 1
  fi
  "$@" env PORT="$PORT" bash -c "$cmd" > "$log" 2>&1 &
  LAUNCH_PID=$! SRV_PID=$!
  deadline=$((SECONDS + ${READY_TIMEOUT:-30}))
  while [ $SECONDS -lt "$deadline" ]; do
    if ! kill -0 "$LAUNCH_PID" 2>/dev/null; then
      echo "the server exited before answering on port $PORT; its output:" >&2
      tail -20 "$log" >&2
      return 1
    fi
    st=$(grpc_status GetBook)
    [ "$st" != none ] && break
    sleep 0.1
  done
  if [ "$st" = none ]; then
    echo "no gRPC answer on port $PORT within ${READY_TIMEOUT:-30} s; server output:" >&2
    tail -20 "$log" >&2
    return 1
  fi
  p=$(port_pid)
  [ -n "$p" ] && SRV_PID=$p
  SEED_RESULT="seed: skipped"
  if [ "${SEED:-1}" != 0 ]; then
    if ! SEED_RESULT=$("$PY" "$BENCH_DIR/bench.py" seed "127.0.0.1:$PORT" 2>&1); then
      echo "seeding failed: $SEED_RESULT" >&2
      return 1
    fi
  fi
  st=$(grpc_status GetBook)
  if [ "$st" != 0 ]; then
    echo "GetBook(books/b0042) answers grpc-status $st after seeding, not 0; server output:" >&2
    tail -20 "$log" >&2
    return 1
  fi
}

# stop_server: SIGTERM to the server and its launcher (SIGKILL after STOP_TIMEOUT s), then reap
stop_server() {
  local p i
  for p in $SRV_PID $LAUNCH_PID; do
    kill -0 "$p" 2>/dev/null || continue
    kill -TERM "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt $((${STOP_TIMEOUT:-15} * 10)) ]; do
      sleep 0.1
      i=$((i + 1))
    done
    kill -0 "$p" 2>/dev/null && { echo "pid $p ignored SIGTERM; SIGKILL" >&2; kill -KILL "$p" 2>/dev/null; }
  done
  [ -n "$LAUNCH_PID" ] && wait "$LAUNCH_PID" 2>/dev/null
  SRV_PID="" LAUNCH_PID=""
  return 0
}

# h2load_run LEVEL METHOD N LOG: h2load pinned to $CLIENT_CPU, LEVEL = CLIENTSxSTREAMS, N requests of
# METHOD's body; summary to $H2LOAD_OUT, one line per request to LOG (empty: none)
h2load_run() {
  local c=${1%x*} m=${1#*x} log=()
  [ -n "$4" ] && { rm -f "$4"; log=(--log-file="$4"); }
  timeout "${H2LOAD_TIMEOUT:-900}" taskset -c "$CLIENT_CPU" h2load -n "$3" -c "$c" -m "$m" -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$WORK/payloads/$2.bin" "${log[@]}" \
    "http://127.0.0.1:$PORT/books.v1.BooksService/$2" > "${H2LOAD_OUT:-$WORK/h2load.out}" 2>&1
}

# h2load_field NAME: from $H2LOAD_OUT: req_s, ok_2xx, non_2xx (3xx+4xx+5xx), failed (h2load's
# "failed": every request that did not end in a 2xx response, errored and timed-out ones included)
h2load_field() {
  case $1 in
    req_s) awk '/^finished in/{gsub(",", "", $4); print $4}' "${H2LOAD_OUT:-$WORK/h2load.out}" ;;
    ok_2xx) awk '/^status codes:/{print $3}' "${H2LOAD_OUT:-$WORK/h2load.out}" ;;
    non_2xx) awk '/^status codes:/{print $5 + $7 + $9}' "${H2LOAD_OUT:-$WORK/h2load.out}" ;;
    failed) awk '/^requests:/{print $10}' "${H2LOAD_OUT:-$WORK/h2load.out}" ;;
  esac
}

# aux_pids: the processes whose name matches $AUX_CPU_MATCH (pgrep); with AUX_CPU_PARENT=PID, only
# PID itself and those of its children (e.g. one PostgreSQL cluster's postmaster and backends)
aux_pids() {
  if [ -n "${AUX_CPU_PARENT:-}" ]; then
    echo "$AUX_CPU_PARENT"
    pgrep -P "$AUX_CPU_PARENT" -- "$AUX_CPU_MATCH"
  else
    pgrep -- "$AUX_CPU_MATCH"
  fi
}
# aux_snapshot: "PID:STARTTIME TICKS" (utime+stime) for every process of aux_pids; PID:STARTTIME so
# that a reused pid is a new process
aux_snapshot() {
  local p
  for p in $(aux_pids); do
    sed 's/^\([0-9]*\) .*) /\1 /' "/proc/$p/stat" 2>/dev/null
  done | awk '{print $1 ":" $21, $13 + $14}'
}
# aux_ticks BEFORE AFTER: ticks the processes of snapshot AFTER used since snapshot BEFORE (one that
# is not in BEFORE counts from 0; one that ended in between is not counted)
aux_ticks() {
  awk 'FILENAME == ARGV[1] { b[$1] = $2; next } { d += $2 - (($1 in b) ? b[$1] : 0) } END { print d + 0 }' "$1" "$2"
}
