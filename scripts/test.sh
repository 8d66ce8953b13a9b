#!/bin/sh
# test.sh: install what the build and the tests need (Debian 12, as root), then build and run every
# test:
#   1. RelWithDebInfo build (Debian's hardening flags): cmocka unit tests, the wire tests (the real
#      binary driven by Python grpcio, the hostile suite bare and through nghttpx, the PostgreSQL
#      store against a real PostgreSQL), terraform and docs checks, the hardening check, the
#      benchmark driver's smoke run
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: the same tests, which fail on any report
#   3. valgrind (memcheck, leak check) over every unit test
#   4. the fuzz targets: each for FUZZ_SECONDS (default 20, a regression gate; long runs are
#      scripts/fuzz.sh N by hand) with libFuzzer + ASan + UBSan, then every committed corpus once
#      under valgrind (scripts/fuzz.sh)
#   5. the container image: scripts/container-test.sh builds it with podman and smoke-tests it
# A PostgreSQL 15 cluster of its own (tests/support/pgcluster.py: Debian's binaries, a temporary
# directory, a free loopback port) serves steps 1-3 (BOOKS_TEST_POSTGRES_URI), and Google's
# Firestore emulator (tests/support/fsemulator.py: its own process group, a free port) the
# firestore: store's conformance rows (FIRESTORE_EMULATOR_HOST); both are stopped at the end,
# whatever happens. Exits non-zero on the first failure. Build trees: build/, build-asan/,
# build-fuzz/, build-fuzz-replay/.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh test
jobs=$(nproc)

pgdir=$(mktemp -d /tmp/books-test-pg.XXXXXX)
fsdir=$(mktemp -d /tmp/books-test-fs.XXXXXX)
stop_all() {
  /usr/bin/python3 tests/support/pgcluster.py stop "$pgdir" || true
  # The emulator's whole process group: gcloud leaves its JVM running when only gcloud is killed.
  /usr/bin/python3 tests/support/fsemulator.py stop "$fsdir" || true
  rm -rf "$fsdir"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
echo "== PostgreSQL for the tests"
BOOKS_TEST_POSTGRES_URI=$(/usr/bin/python3 tests/support/pgcluster.py start "$pgdir")
export BOOKS_TEST_POSTGRES_URI
echo "$BOOKS_TEST_POSTGRES_URI"
echo "== the Firestore emulator for the tests"
FIRESTORE_EMULATOR_HOST=$(/usr/bin/python3 tests/support/fsemulator.py start "$fsdir")
export FIRESTORE_EMULATOR_HOST
echo "$FIRESTORE_EMULATOR_HOST"

echo "== 1/5 build and test"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBOOKS_TESTS=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== 2/5 AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBOOKS_SANITIZE=ON -DBOOKS_TESTS=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE 'bench|hardening'

echo "== 3/5 valgrind over the unit tests"
for t in build/tests/test_*; do
  [ -x "$t" ] || continue
  echo "valgrind $t"
  # --fair-sched=yes: valgrind runs one thread at a time, and its default lock lets reader threads
  # that loop until the writers finish starve those writers for many minutes.
  valgrind --fair-sched=yes --quiet --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect "$t" > "build/valgrind-$(basename "$t").log" 2>&1 \
    || { cat "build/valgrind-$(basename "$t").log"; echo "valgrind: $t failed"; exit 1; }
done

echo "== 4/5 fuzz targets"
./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

echo "== 5/5 container image"
./scripts/container-test.sh
echo "== all tests passed"
