#!/bin/sh
# test.sh: install what the build and the tests need (Debian 12, as root), then build and run every
# test four ways:
#   1. RelWithDebInfo build: cmocka unit tests + wire tests (the real binary driven by Python grpcio)
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: the same tests, which fail on any report
#   3. valgrind (memcheck, leak check) over every unit test
#   4. the container image: scripts/container-test.sh builds it with podman and smoke-tests it
# Exits non-zero on the first failure. Build trees: build/ and build-asan/.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh test
jobs=$(nproc)

echo "== 1/4 build and test"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBOOKS_TESTS=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== 2/4 AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBOOKS_SANITIZE=ON -DBOOKS_TESTS=ON
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== 3/4 valgrind over the unit tests"
for t in build/tests/test_*; do
  [ -x "$t" ] || continue
  echo "valgrind $t"
  # --fair-sched=yes: valgrind runs one thread at a time, and its default lock lets reader threads
  # that loop until the writers finish starve those writers for many minutes.
  valgrind --fair-sched=yes --quiet --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect "$t" > "build/valgrind-$(basename "$t").log" 2>&1 \
    || { cat "build/valgrind-$(basename "$t").log"; echo "valgrind: $t failed"; exit 1; }
done

echo "== 4/4 container image"
./scripts/container-test.sh
echo "== all tests passed"
