#!/usr/bin/python3
"""The schema-evolution test's driver (ctest -L evolution): adding a field to books.v1.Book takes
books.proto alone.

  1. copies proto/ into WORK/proto and adds one OPTIONAL string field, `isbn`, to message Book in
     that copy's books/v1/books.proto (the next free field number: 5 today), with a comment;
  2. measures the change: every file of the copy against proto/, the lines added and removed
     (WORK/change.diff, WORK/change.txt) -- it must be books.proto alone;
  3. configures WORK/build from this same source tree with -DBOOKS_PROTO_DIR=WORK/proto (nothing
     else differs from the build that runs this test: its build type, compiler, sanitizer and
     hardening options are passed on) and builds only its books-server and books;
  4. runs the unittest module test_evolution.py (beside this file), which drives both builds'
     binaries against memory:, sqlite:, postgresql: (a cluster of its own) and firestore: (the
     emulator of FIRESTORE_EMULATOR_HOST, or one of its own).

A missing dependency (PostgreSQL's binaries, the Firestore emulator) fails the test, naming it and
how to install it: CI has both, and a test that skips itself there would prove nothing.

This process imports no gRPC, but it starts processes only the way the wire tests do (subprocess
without preexec_fn, user or group: vfork + exec, see tests/check_no_fork.py), with every wait
bounded by the time left of --timeout.

usage: run.py --source-dir SRC --work-dir WORK --old-server BIN --old-cli BIN --timeout S
              [--cmake CMAKE] [--generator G] [--build-type T] [--c-compiler CC] [-D NAME=VALUE]...
"""

import argparse
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys
import time

# The field this test adds. Its number is the next after Book's highest (5 while Book has 1-4).
FIELD_NAME = "isbn"
FIELD_COMMENT = ["  // The book's ISBN, e.g. \"978-0-441-17271-9\" (tests/evolution adds it)."]
FIELD_LINE = "  string %s = %d [(google.api.field_behavior) = OPTIONAL];"
BOOKS_PROTO = os.path.join("books", "v1", "books.proto")

START = time.monotonic()


def say(msg):
    sys.stderr.write("[evolution] %s\n" % msg)
    sys.stderr.flush()


def fail(msg):
    say("FAILED: " + msg)
    sys.exit(1)


def left(deadline):
    return deadline - time.monotonic()


def add_field(text):
    """books.proto with FIELD_NAME added at the end of message Book; (text, field number)."""
    m = re.search(r"^message Book \{\n", text, re.M)
    if not m:
        fail("no `message Book {` in books.proto: the test does not know where to add %s"
             % FIELD_NAME)
    end = text.find("\n}\n", m.end())
    if end < 0:
        fail("message Book has no closing brace at the start of a line in books.proto")
    body = text[m.end():end]
    if re.search(r"\b%s\b\s*=" % FIELD_NAME, body):
        fail("message Book already has a field %s: this test adds it, so it needs another name"
             % FIELD_NAME)
    # Field numbers of Book's fields (lines "  TYPE name = N" / "  repeated TYPE name = N").
    numbers = [int(n) for n in re.findall(r"^\s+(?:repeated\s+|optional\s+)?[\w.]+\s+\w+\s*=\s*"
                                          r"(\d+)", body, re.M)]
    reserved = re.findall(r"^\s*reserved\s+([^;]*);", body, re.M)
    if not numbers:
        fail("found no fields in message Book")
    number = max(numbers) + 1
    for r in reserved:
        for part in r.split(","):
            part = part.strip()
            if part.isdigit() and int(part) >= number:
                number = int(part) + 1
            elif " to " in part:
                hi = part.split(" to ")[1].strip()
                if hi.isdigit() and int(hi) >= number:
                    number = int(hi) + 1
    # After Book's last field, as a person would add it: a blank line, its comment, the field.
    added = "\n".join([""] + FIELD_COMMENT + [FIELD_LINE % (FIELD_NAME, number)])
    return text[:end] + "\n" + added + text[end:], number


def write_if_changed(path, data):
    """Writes data to path unless it holds exactly that already (a rerun then rebuilds nothing)."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def copy_proto(src_proto, dst_proto):
    """A copy of src_proto/ at dst_proto/ with the field added; returns the field number."""
    wanted = set()
    number = None
    for root, _, files in os.walk(src_proto):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), src_proto)
            with open(os.path.join(src_proto, rel), "rb") as f:
                data = f.read()
            if rel == BOOKS_PROTO:
                text, number = add_field(data.decode("utf-8"))
                data = text.encode("utf-8")
            write_if_changed(os.path.join(dst_proto, rel), data)
            wanted.add(rel)
    if number is None:
        fail("%s not found" % os.path.join(src_proto, BOOKS_PROTO))
    for root, _, files in os.walk(dst_proto):  # files a former proto/ had
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), dst_proto)
            if rel not in wanted:
                os.unlink(os.path.join(dst_proto, rel))
    return number


def measure(src_proto, dst_proto, work):
    """The change exercise: every file that differs between the two trees, with its lines."""
    diff, changed, plus, minus = [], [], 0, 0
    rels = set()
    for tree in (src_proto, dst_proto):
        for root, _, files in os.walk(tree):
            rels.update(os.path.relpath(os.path.join(root, n), tree) for n in files)
    for rel in sorted(rels):
        a_path, b_path = os.path.join(src_proto, rel), os.path.join(dst_proto, rel)
        a = open(a_path, encoding="utf-8").read().splitlines(True) if os.path.exists(a_path) else []
        b = open(b_path, encoding="utf-8").read().splitlines(True) if os.path.exists(b_path) else []
        if a == b:
            continue
        lines = list(difflib.unified_diff(a, b, "proto/" + rel, "evolution/proto/" + rel))
        diff.extend(lines)
        p = sum(1 for l in lines if l.startswith("+") and not l.startswith("+++"))
        m = sum(1 for l in lines if l.startswith("-") and not l.startswith("---"))
        code = sum(1 for l in lines if l.startswith("+") and not l.startswith("+++")
                   and not l[1:].strip().startswith("//") and l[1:].strip())
        changed.append((rel, p, m, code))
        plus, minus = plus + p, minus + m
    with open(os.path.join(work, "change.diff"), "w") as f:
        f.writelines(diff)
    summary = ["change exercise: adding `%s` to books.v1.Book took %d file(s), +%d/-%d lines"
               % (FIELD_NAME, len(changed), plus, minus)]
    for rel, p, m, code in changed:
        summary.append("  proto/%s: +%d -%d (%d of them declaration, the rest comment or blank)"
                       % (rel, p, m, code))
    summary.append("  no source, build or test file: the second build is this tree with "
                   "-DBOOKS_PROTO_DIR only")
    with open(os.path.join(work, "change.txt"), "w") as f:
        f.write("\n".join(summary) + "\n")
    for line in summary:
        say(line)
    sys.stderr.write("".join(diff))
    if [c[0] for c in changed] != [BOOKS_PROTO]:
        fail("the copy differs from proto/ in %s, not in books.proto alone" %
             [c[0] for c in changed])


def check_dependencies():
    """Fails now, before a minute of building, when the test could not run to its end."""
    missing = []
    pg_bin = os.environ.get("BOOKS_PG_BIN") or (sorted(glob.glob("/usr/lib/postgresql/*/bin"))
                                                or [""])[-1]
    if not (pg_bin and os.access(os.path.join(pg_bin, "initdb"), os.X_OK)):
        missing.append("PostgreSQL's server binaries (initdb, pg_ctl under /usr/lib/postgresql/*/"
                       "bin, or BOOKS_PG_BIN): apt-get install postgresql-15, or "
                       "./scripts/deps.sh test")
    if not shutil.which("setpriv") and os.geteuid() == 0:
        missing.append("setpriv(1) (util-linux), to run PostgreSQL as its own user")
    if not os.environ.get("FIRESTORE_EMULATOR_HOST") and \
            not shutil.which(os.environ.get("BOOKS_GCLOUD", "gcloud")):
        missing.append("a Firestore emulator: set FIRESTORE_EMULATOR_HOST=HOST:PORT (scripts/"
                       "test.sh starts one), or install gcloud with its firestore emulator "
                       "(./scripts/deps.sh test) so that the test starts its own")
    if missing:
        fail("this test runs every store and skips none; missing:\n  - " + "\n  - ".join(missing))


def run(cmd, deadline, what, cwd=None, env=None):
    say("%s: %s" % (what, " ".join(cmd)))
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             timeout=max(1.0, left(deadline)))
    except subprocess.TimeoutExpired:
        fail("%s did not finish in the test's time budget" % what)
    if res.returncode != 0:
        fail("%s failed (exit code %d)" % (what, res.returncode))
    say("%s: %.1f s" % (what, time.monotonic() - t0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--old-server", required=True)
    ap.add_argument("--old-cli", required=True)
    ap.add_argument("--timeout", type=float, required=True, help="ctest's TIMEOUT of this test")
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--generator", default="")
    ap.add_argument("--build-type", default="RelWithDebInfo")
    ap.add_argument("--c-compiler", default="")
    ap.add_argument("-D", dest="defines", action="append", default=[])
    a = ap.parse_args()

    src = os.path.abspath(a.source_dir)
    work = os.path.abspath(a.work_dir)
    # A minute before ctest kills this process: every wait below ends by then, with a message.
    deadline = START + a.timeout - 60
    os.makedirs(work, exist_ok=True)
    check_dependencies()

    proto = os.path.join(work, "proto")
    number = copy_proto(os.path.join(src, "proto"), proto)
    say("added `string %s = %d` (OPTIONAL) to books.v1.Book in %s" %
        (FIELD_NAME, number, os.path.join(proto, BOOKS_PROTO)))
    measure(os.path.join(src, "proto"), proto, work)

    build = os.path.join(work, "build")
    cfg = [a.cmake, "-S", src, "-B", build, "-DBOOKS_PROTO_DIR=" + proto,
           "-DCMAKE_BUILD_TYPE=" + a.build_type, "-DBOOKS_TESTS=OFF"]
    if a.generator:
        cfg += ["-G", a.generator]
    if a.c_compiler:
        cfg += ["-DCMAKE_C_COMPILER=" + a.c_compiler]
    cfg += ["-D" + d for d in a.defines]
    run(cfg, deadline, "configure the build with the new field")
    run([a.cmake, "--build", build, "--target", "books-server", "books", "-j",
         str(os.cpu_count() or 2)], deadline, "build books-server and books with the new field")
    new_server = os.path.join(build, "books-server")
    new_cli = os.path.join(build, "books")
    for path in (new_server, new_cli, a.old_server, a.old_cli):
        if not os.access(path, os.X_OK):
            fail("%s is not an executable" % path)

    budget = left(deadline) - 30
    if budget < 120:
        fail("only %.0f s left for the scenarios after the build; raise the test's TIMEOUT"
             % budget)
    env = dict(os.environ,
               BOOKS_SERVER=os.path.abspath(a.old_server), BOOKS_CLI=os.path.abspath(a.old_cli),
               BOOKS_EVO_SERVER=new_server, BOOKS_EVO_CLI=new_cli, BOOKS_EVO_PROTO_DIR=proto,
               BOOKS_EVO_FIELD="%s=%d" % (FIELD_NAME, number), BOOKS_SOURCE_DIR=src,
               BOOKS_WIRE_TIMEOUT_S="%d" % budget, GRPC_ENABLE_FORK_SUPPORT="0",
               PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("BOOKS_STUB_DIR", os.path.join(work, "pystubs"))
    run([sys.executable, "-m", "unittest", "-v", "test_evolution"], START + a.timeout - 20,
        "the scenarios (test_evolution.py)", cwd=os.path.dirname(os.path.abspath(__file__)),
        env=env)
    say("passed in %.0f s" % (time.monotonic() - START))
    with open(os.path.join(work, "change.txt")) as f:
        sys.stderr.write(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
