#!/bin/bash
# container-test.sh: build the books-server image from ./Dockerfile with Debian's podman and smoke-test
# it, on a Debian 12 machine with no Docker engine and no image registry (as root):
#   1. installs podman, runc, mmdebstrap and the Python gRPC client when missing (apt only then);
#   2. creates the base images docker.io/library/debian:bookworm and :bookworm-slim with mmdebstrap
#      from the Debian mirror when they are not in podman's store (reused by later runs);
#   3. podman build --pull=never (the image build runs the unit tests), prints the image size and
#      checks the image's binary with tests/hardening/check.sh (devscripts' hardening-check);
#   4. runs the image as Cloud Run would (PORT in the environment), waits for grpc.health.v1 Check to
#      say SERVING, calls CreateBook, GetBook, ListBooks with Debian's python3-grpcio, checks the
#      server runs as uid 65532, stops it with SIGTERM (podman stop) and checks exit code 0 and JSON
#      log lines; then, with BOOKS_STORE=sqlite:/var/lib/books/books.db, that a book survives a
#      container restart. Containers are always removed; the image books-server:test is kept.
# Exits non-zero with a message at the first failure.
# Environment: BOOKS_IMAGE (default books-server:test), DEBIAN_MIRROR (default deb.debian.org),
#              BOOKS_REBUILD_BASE=1 to recreate the base images.
set -euo pipefail
t_start=$(date +%s)
cd "$(dirname "$0")/.."
SRC=$(pwd)

IMAGE=${BOOKS_IMAGE:-books-server:test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_FULL=docker.io/library/debian:bookworm
BASE_SLIM=docker.io/library/debian:bookworm-slim
GRPC_PROTO_DIR=/usr/share/grpc-proto
# The podman invocations that work without a Docker engine or a registry on these machines.
BUILD_OPTS=(--isolation chroot --network host --pull=never)
# Rootful podman asks runc for rlimits of its own (nofile 1048576, ...) unless --ulimit is given, and
# raising a hard limit needs CAP_SYS_RESOURCE, which this sandbox's root lacks (hard nofile 20000):
# runc then fails with "error setting rlimit type 7: operation not permitted". So pass both limits,
# Cloud Run-like values capped at this shell's hard limits.
cap() { if [ "$2" = unlimited ] || [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi; }
NOFILE=$(cap 65536 "$(ulimit -Hn)")
NPROC=$(cap 4096 "$(ulimit -Hu)")
RUN_OPTS=(--runtime runc --network host --log-driver k8s-file
          --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")

fail() { echo "container-test: FAIL: $*" >&2; exit 1; }
t_step=""
step() {
  local now; now=$(date +%s)
  [ -z "$t_step" ] || echo "   ($((now - t_step)) s)"
  t_step=$now
  echo "== $*"
}

[ "$(id -u)" = 0 ] || fail "run as root (rootful podman)"
[ -f Dockerfile ] || fail "no Dockerfile in $SRC"

# ---- 1. tools -------------------------------------------------------------------------------------
step "1/4 tools"
./scripts/deps.sh container || fail "installing the tools (scripts/deps.sh container)"
podman --version

# ---- 2. base images -------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/books-container-test.XXXXXX)
CTR=""
cleanup() {
  if [ -n "$CTR" ]; then podman rm -f -t 0 "$CTR" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The base images, like Docker Hub's (built by debuerreotype): a minbase Debian 12 from the mirror with
# merged /usr (usr-is-merged, no usrmerge/perl), debuerreotype's apt settings for containers, PATH
# and CMD bash; -slim is the same tree "slimified" (docs but copyrights, man pages, info, locales
# removed, and dpkg told to skip them from then on). One mmdebstrap run makes both.
debuerreotype_config() {  # ROOT
  local r=$1 clean
  clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
  clean="$clean /var/cache/apt/*.bin || true"
  printf 'force-unsafe-io\n' > "$r/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  printf '%s\n' "DPkg::Post-Invoke { \"$clean\"; };" "APT::Update::Post-Invoke { \"$clean\"; };" \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' > "$r/etc/apt/apt.conf.d/docker-clean"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' \
    > "$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
  printf 'Acquire::Languages "none";\n' > "$r/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' \
    > "$r/etc/apt/apt.conf.d/docker-gzip-indexes"
}
SLIM_EXCLUDE=(/usr/share/doc/'*' /usr/share/info/'*' /usr/share/linda/'*' /usr/share/lintian/overrides/'*'
  /usr/share/locale/'*' /usr/share/man/'*')
SLIM_INCLUDE=(/usr/share/doc/'*'/copyright /usr/share/locale/all_languages /usr/share/locale/currency/'*'
  /usr/share/locale/l10n/'*' /usr/share/locale/languages /usr/share/locale/locale.alias)
slimify() {  # ROOT
  local r=$1 p keep=() d
  for p in "${SLIM_INCLUDE[@]}"; do keep+=(! -path "$r$p"); done
  for p in "${SLIM_EXCLUDE[@]}"; do
    d=$r${p%/\*}
    [ -d "$d" ] || continue
    find "$d" -mindepth 1 ! -type d "${keep[@]}" -delete
    find "$d" -mindepth 1 -depth -type d -empty -delete
  done
  {
    echo "# like debuerreotype-slimify: keep these out of the image"
    for p in "${SLIM_EXCLUDE[@]}"; do echo "path-exclude $p"; done
    for p in "${SLIM_INCLUDE[@]}"; do echo "path-include $p"; done
  } > "$r/etc/dpkg/dpkg.cfg.d/docker"
}
import_tree() {  # ROOT TAG
  tar --numeric-owner --xattrs -C "$1" -cf "$WORK/image.tar" . || fail "tar of the $2 tree"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL org.opencontainers.image.description=local mmdebstrap stand-in for $2" \
    "$WORK/image.tar" "$2" >/dev/null || fail "podman import $2"
  rm -f "$WORK/image.tar"
  podman image exists "$2" || fail "$2 not in podman's store after import"
}
step "2/4 base images"
if [ "${BOOKS_REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE_FULL" \
    && podman image exists "$BASE_SLIM"; then
  echo "$BASE_FULL, $BASE_SLIM: present"
else
  echo "creating $BASE_FULL and $BASE_SLIM with mmdebstrap from $MIRROR"
  mmdebstrap --quiet --mode=root --format=tar --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    bookworm "$WORK/rootfs.tar" \
    "deb $MIRROR bookworm main" \
    "deb $MIRROR bookworm-updates main" \
    "deb ${MIRROR%/debian}/debian-security bookworm-security main" > "$WORK/mmdebstrap.log" 2>&1 \
    || { tail -n 40 "$WORK/mmdebstrap.log"; fail "mmdebstrap (Debian mirror $MIRROR), log above"; }
  mkdir "$WORK/rootfs"
  tar --numeric-owner --xattrs -C "$WORK/rootfs" -xpf "$WORK/rootfs.tar" || fail "untar rootfs"
  rm -f "$WORK/rootfs.tar"
  debuerreotype_config "$WORK/rootfs"
  import_tree "$WORK/rootfs" "$BASE_FULL"
  slimify "$WORK/rootfs"
  import_tree "$WORK/rootfs" "$BASE_SLIM"
  rm -rf "$WORK/rootfs"
fi
# The Dockerfile says FROM debian:bookworm: make sure podman resolves that short name to the local
# image (and so never to a registry).
for short in debian:bookworm debian:bookworm-slim; do
  resolved=$(podman image inspect --format '{{index .RepoTags 0}}' "$short" 2>/dev/null) \
    || fail "podman does not resolve $short to a local image"
  mb=$(podman image inspect --format '{{.Size}}' "$short" | awk '{printf "%.0f MB", $1/1e6}')
  echo "$short -> $resolved ($mb)"
done

# ---- 3. build -------------------------------------------------------------------------------------
step "3/4 podman build $IMAGE (runs the unit tests)"
podman build "${BUILD_OPTS[@]}" -t "$IMAGE" -f Dockerfile . > "$WORK/build.log" 2>&1 \
  || { tail -n 60 "$WORK/build.log"; fail "podman build (last 60 lines above)"; }
grep -E 'STEP [0-9]+/[0-9]+: (FROM|RUN)|tests passed|tests failed' "$WORK/build.log" | cut -c1-110 || true
echo "cached steps: $(grep -c -- '--> Using cache' "$WORK/build.log" || true)"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $(awk -v s="$size" 'BEGIN{printf "%.1f MB (%d bytes)", s/1e6, s}')"
# The binary in the image carries Debian's hardening flags (the same check as the build tree's).
hc=$(podman create "$IMAGE") || fail "podman create $IMAGE"
podman cp "$hc:/usr/local/bin/books-server" "$WORK/books-server" || fail "podman cp the binary"
podman rm "$hc" >/dev/null
sh tests/hardening/check.sh "$WORK/books-server" || fail "the image's books-server is not hardened"
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = 65532:65532 ] \
  || fail "image User is not 65532:65532"

# ---- 4. run ---------------------------------------------------------------------------------------
step "4/4 run and smoke-test"
cat > "$WORK/smoke.py" <<'EOF'
"""Smoke test of a books-server container with Debian's grpcio; stubs generated at run time.
usage: smoke.py WORK SRC GRPC_PROTO_DIR PORT CONTAINER full|create|get"""
import os, subprocess, sys, time
import grpc
import grpc_tools
from grpc_tools import protoc

work, src, grpc_protos, port, ctr, mode = sys.argv[1:7]
stubs = os.path.join(work, "stubs")
if not os.path.isdir(stubs):
    os.makedirs(stubs + ".tmp")
    # books.proto and its google/api imports are all in proto/.
    protos = ["books/v1/books.proto", "google/api/field_behavior.proto",
              "google/api/field_info.proto", "google/api/resource.proto", "google/api/annotations.proto", "google/api/http.proto",
              "google/api/client.proto", "grpc/health/v1/health.proto"]
    args = ["protoc", "-I" + os.path.join(src, "proto"), "-I" + grpc_protos,
            "-I" + os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"),
            "--python_out=" + stubs + ".tmp", "--grpc_python_out=" + stubs + ".tmp"] + protos
    if protoc.main(args) != 0:
        sys.exit("smoke: grpc_tools.protoc failed")
    os.rename(stubs + ".tmp", stubs)
sys.path.insert(0, stubs)                          # google.api joins Debian's google namespace
grpc.__path__.append(os.path.join(stubs, "grpc"))  # grpc is a regular package: extend it
from books.v1 import books_pb2, books_pb2_grpc
from grpc.health.v1 import health_pb2, health_pb2_grpc


def fail(msg):
    sys.exit("smoke: " + msg)


channel = grpc.insecure_channel("127.0.0.1:" + port)
health = health_pb2_grpc.HealthStub(channel)
t0 = time.monotonic()
while True:  # readiness: poll Check; give up early if the container has died
    try:
        if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                health_pb2.HealthCheckResponse.SERVING:
            break
    except grpc.RpcError:
        pass
    running = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", ctr],
                             capture_output=True, text=True).stdout.strip()
    if running != "true":
        fail("container is not running (State.Running=%r) before SERVING" % running)
    if time.monotonic() - t0 > 60:
        fail("no SERVING from grpc.health.v1.Health/Check within 60 s")
    time.sleep(0.1)
print("SERVING after %.2f s" % (time.monotonic() - t0))

books = books_pb2_grpc.BooksServiceStub(channel)
want = books_pb2.Book(display_name="The C Programming Language",
                      authors=["Brian W. Kernighan", "Dennis M. Ritchie"], publisher="Prentice Hall")


def same(a, b):
    return a.display_name == b.display_name and list(a.authors) == list(b.authors) and \
        a.publisher == b.publisher


if mode in ("full", "create"):
    made = books.CreateBook(books_pb2.CreateBookRequest(book=want, book_id="k-and-r"), timeout=10)
    if made.name != "books/k-and-r" or not same(made, want):
        fail("CreateBook returned %r" % made)
    print("CreateBook:", made.name)
if mode in ("full", "get"):
    got = books.GetBook(books_pb2.GetBookRequest(name="books/k-and-r"), timeout=10)
    if got.name != "books/k-and-r" or not same(got, want):
        fail("GetBook returned %r" % got)
    print("GetBook:", got.name)
if mode == "full":
    try:
        books.GetBook(books_pb2.GetBookRequest(name="books/missing"), timeout=10)
        fail("GetBook of a missing book succeeded")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            fail("GetBook of a missing book: %s, want NOT_FOUND" % e.code())
    made2 = books.CreateBook(books_pb2.CreateBookRequest(book=books_pb2.Book(
        display_name="Second", authors=["A"], publisher="P")), timeout=10)
    listed = books.ListBooks(books_pb2.ListBooksRequest(page_size=10), timeout=10)
    names = [b.name for b in listed.books]
    if sorted(names) != sorted(["books/k-and-r", made2.name]) or listed.next_page_token:
        fail("ListBooks returned %r" % listed)
    print("ListBooks:", names)
st = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
if st != health_pb2.HealthCheckResponse.SERVING:
    fail("Health/Check says %s" % health_pb2.HealthCheckResponse.ServingStatus.Name(st))
print("Health/Check: SERVING")
channel.close()
EOF
cat > "$WORK/logcheck.py" <<'EOF'
"""Every line of the container's stdout is a JSON object with severity and message; one says
"listening" on PORT, one is about SIGTERM.  usage: logcheck.py STDOUT_FILE PORT"""
import json, sys
recs = []
for i, line in enumerate((l for l in open(sys.argv[1]) if l.strip()), 1):
    try:
        rec = json.loads(line)
    except ValueError as e:
        sys.exit("line %d is not JSON (%s): %r" % (i, e, line))
    if not isinstance(rec, dict) or "severity" not in rec or "message" not in rec:
        sys.exit("line %d has no severity/message: %r" % (i, line))
    recs.append(rec)
if not any(r["message"] == "listening" and r.get("port") == int(sys.argv[2]) for r in recs):
    sys.exit("no \"listening\" line with port %s" % sys.argv[2])
if not any("SIGTERM" in r["message"] for r in recs):
    sys.exit("no line about SIGTERM")
print("logs: %d JSON lines" % len(recs))
EOF

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
smoke() {  # MODE: the gRPC calls against $CTR on $port
  # Bounded (timeout), and without gRPC core's fork handlers: smoke.py runs podman through
  # subprocess while gRPC's threads run (tests/wire/harness.py says why that matters).
  GRPC_ENABLE_FORK_SUPPORT=0 timeout --kill-after=10 180 /usr/bin/python3 "$WORK/smoke.py" \
    "$WORK" "$SRC" "$GRPC_PROTO_DIR" "$port" "$CTR" "$1" \
    || { podman logs "$CTR" 2>&1 | tail -n 30; fail "gRPC smoke test ($1) against $CTR (log above)"; }
}
stop_ok() {  # podman stop sends the image's STOPSIGNAL (SIGTERM), SIGKILL after 10 s
  local t0 t1 code
  t0=$(date +%s.%N)
  podman stop -t 10 "$CTR" >/dev/null || fail "podman stop $CTR"
  t1=$(date +%s.%N)
  code=$(podman inspect --format '{{.State.ExitCode}}' "$CTR")
  echo "stopped in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s, exit code $code"
  podman logs "$CTR" > "$WORK/stdout.log" 2> "$WORK/stderr.log" || fail "podman logs $CTR"
  sed 's/^/   | /' "$WORK/stdout.log"
  if [ -s "$WORK/stderr.log" ]; then sed 's/^/   stderr| /' "$WORK/stderr.log"; fi
  [ "$code" = 0 ] || fail "$CTR: exit code $code after SIGTERM, want 0 (137: podman stop had to SIGKILL)"
  /usr/bin/python3 "$WORK/logcheck.py" "$WORK/stdout.log" "$port" \
    || fail "$CTR: the log is not the expected JSON lines"
}

# As Cloud Run runs it: only PORT set, the default (memory:) store.
port=$(free_port)
CTR="books-container-test-$$"
podman run -d --name "$CTR" "${RUN_OPTS[@]}" -e PORT="$port" "$IMAGE" >/dev/null \
  || fail "podman run $IMAGE"
echo "container $CTR on port $port (ulimit nofile=$NOFILE nproc=$NPROC)"
smoke full
uid=$(podman exec "$CTR" id -u) || fail "podman exec $CTR id -u"
[ "$uid" = 65532 ] || fail "the container runs as uid $uid, want 65532"
pid=$(podman inspect --format '{{.State.Pid}}' "$CTR")
read -r _ ruid euid _ < <(grep '^Uid:' "/proc/$pid/status")
if [ "$ruid" != 65532 ] || [ "$euid" != 65532 ]; then
  fail "books-server (host pid $pid) has uid $ruid/$euid, want 65532"
fi
echo "uid: exec id -u = $uid, server process (host pid $pid) uid = $ruid"
stop_ok
podman rm "$CTR" >/dev/null
CTR=""

# The data directory: a sqlite: store in /var/lib/books keeps a book across a restart.
port=$(free_port)
CTR="books-container-test-$$-sqlite"
podman run -d --name "$CTR" "${RUN_OPTS[@]}" -e PORT="$port" \
  -e BOOKS_STORE=sqlite:/var/lib/books/books.db "$IMAGE" >/dev/null || fail "podman run (sqlite)"
echo "container $CTR on port $port, BOOKS_STORE=sqlite:/var/lib/books/books.db"
smoke create
stop_ok
podman start "$CTR" >/dev/null || fail "podman start $CTR"
smoke get
stop_ok

step "passed"
mb=$(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}')
echo "container-test: OK: $IMAGE, $mb, total $(( $(date +%s) - t_start )) s"
