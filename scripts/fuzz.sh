#!/bin/sh
# fuzz.sh [SECONDS_PER_TARGET]: build and run the fuzz targets of tests/fuzz (tests/fuzz/README.md).
#   1. build-fuzz/         clang, libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer
#                          (-DBOOKS_FUZZ=ON), and build-fuzz-replay/: gcc, no sanitizer, every
#                          target linked to tests/fuzz/replay_main.c (-DBOOKS_FUZZ_REPLAY=ON)
#   2. each target in turn for SECONDS_PER_TARGET (default 60), seeded with its committed corpus
#      tests/fuzz/corpus/<target>/ (read only: new inputs go to build-fuzz/corpus/<target>/, what
#      fails to build-fuzz/crashes/<target>/), with -timeout=10 -rss_limit_mb=2048; prints the
#      executions of each from libFuzzer's final stats
#   3. every committed corpus, and what this run added to build-fuzz/corpus/, once under valgrind
#      (memcheck, definite and indirect leaks are errors) with the replay binaries: valgrind sees
#      inside glibc, libgrpc, libcrypto, zlib and libsqlite3, which ASan does not instrument
# Exits 1 when any target crashed, leaked, timed out or ran out of memory, or valgrind reported
# anything; every target still runs, and the summary names the ones that failed.
# Packages: scripts/deps.sh run for the build, then clang, libclang-rt-14-dev (libFuzzer) and
# valgrind, each installed with apt-get only when dpkg-query says it is missing (then as root).
# Environment: BOOKS_FUZZ_TARGETS="get_book trace" runs only those; BOOKS_FUZZ_BUILD_DIR and
# BOOKS_FUZZ_REPLAY_DIR move the two build trees (defaults build-fuzz, build-fuzz-replay).
set -eu
cd "$(dirname "$0")/.."

secs=${1:-60}
case $secs in
  '' | *[!0-9]* | 0) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (a whole number > 0)" >&2; exit 2 ;;
esac
build=${BOOKS_FUZZ_BUILD_DIR:-build-fuzz}
replay=${BOOKS_FUZZ_REPLAY_DIR:-build-fuzz-replay}
jobs=$(nproc)

if [ -n "${BOOKS_FUZZ_TARGETS:-}" ]; then
  targets=$BOOKS_FUZZ_TARGETS
else
  targets=$(cd tests/fuzz/corpus && for d in */; do printf '%s ' "${d%/}"; done)
fi

echo "== packages"
./scripts/deps.sh run
missing=""
for p in clang libclang-rt-14-dev valgrind; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "fuzz: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086  # one word per package
  apt-get install -y --no-install-recommends $missing
fi

echo "== build: $build (clang, libFuzzer, ASan, UBSan) and $replay (gcc, replay driver)"
mkdir -p "$build" "$replay"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBOOKS_FUZZ=ON -DBOOKS_TESTS=OFF > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$jobs"
cmake -S . -B "$replay" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBOOKS_FUZZ_REPLAY=ON -DBOOKS_TESTS=OFF > "$replay/configure.log" 2>&1 \
  || { cat "$replay/configure.log"; exit 1; }
cmake --build "$replay" -j"$jobs"

failed=""
summary="$build/summary.txt"
mkdir -p "$build/logs"
printf '%-16s %14s %10s %8s %9s  %s\n' target executions exec/s "new" "rss_mb" result > "$summary"

# Stack traces for UBSan too (the build aborts on the first report, -fno-sanitize-recover).
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

echo "== fuzzing: $secs s per target, one at a time"
for t in $targets; do
  bin="$build/tests/fuzz/fuzz_$t"
  seeds="tests/fuzz/corpus/$t"
  [ -x "$bin" ] && [ -d "$seeds" ] || { echo "fuzz: no target $t ($bin, $seeds)" >&2; exit 2; }
  mkdir -p "$build/corpus/$t" "$build/crashes/$t"
  log="$build/logs/$t.log"
  echo "-- $t"
  rc=0
  # The first directory is where libFuzzer writes what it finds: the scratch one, never the repo's.
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" "$build/corpus/$t" "$seeds" > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc; $log)"
    failed="$failed $t"
    # What went wrong, and the input that did it.
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz check failed|.*runtime error|artifact_prefix|Test unit written|ALARM|.*out-of-memory)' "$log" | head -n 20 || true
  fi
  printf '%-16s %14s %10s %8s %9s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "${new:-?}" "${rss:-?}" "$result" | tee -a "$summary"
done

echo "== valgrind over every committed corpus and what this run found (replay build)"
for t in $targets; do
  log="$replay/valgrind-$t.log"
  # One process for all the inputs, in order: state one input leaves behind (in glibc's getopt,
  # say) meets the next, as it does under libFuzzer.
  if valgrind --quiet --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect \
      --errors-for-leak-kinds=definite,indirect "$replay/tests/fuzz/fuzz_$t" "tests/fuzz/corpus/$t" \
      "$build/corpus/$t" > "$log" 2>&1; then
    printf '%-16s valgrind ok (%s)\n' "$t" "$(tail -n 1 "$log")" | tee -a "$summary"
  else
    cat "$log"
    printf '%-16s valgrind FAILED (%s)\n' "$t" "$log" | tee -a "$summary"
    failed="$failed valgrind:$t"
  fi
done

echo "== summary ($summary)"
cat "$summary"
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed (inputs in $build/crashes/<target>/; tests/fuzz/README.md says how to reproduce)"
  exit 1
fi
echo "fuzz: all targets ran clean"
