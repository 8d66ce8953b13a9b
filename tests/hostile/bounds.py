"""bounds.py BINARY [BINARY...]: issue 16's attacks (tests/wire/test_hostile_bounds.py) and issue
22's 200 ListBooks that never read (tests/wire/test_list_admission.py) against each given
books-server binary, one fresh server per attack, and one JSON line per attack and binary on
stdout: what the clients got, the server's peak RSS, how long it took. For before/after tables:

    /usr/bin/python3 tests/hostile/bounds.py /tmp/old/build/books-server build/books-server

The test module asserts on the same numbers; this prints them for any binary, also one that fails
them (an older build). It starts its own PostgreSQL cluster (tests/support/pgcluster.py) and stops
it, and each server, however it ends."""

import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("BOOKS_HOSTILE_SCALE", "1")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
os.environ.setdefault("BOOKS_WIRE_TIMEOUT_S", "3600")
sys.path.insert(0, os.path.join(HERE, "..", "wire"))

import harness  # noqa: E402
import pgcluster  # noqa: E402  (harness put tests/support on the path)
import test_hostile_bounds as bounds  # noqa: E402
import test_list_admission as admission  # noqa: E402


def run(binary, name, env, scenario, *args):
    harness.SERVER_PATH = os.path.abspath(binary)
    srv = harness.ServerProcess(env=env, label=name)
    out = {"binary": binary, "attack": name}
    try:
        srv.start_and_wait()
        out.update(scenario(srv, *args))
    except Exception as e:  # noqa: BLE001: an older binary may fail in any way; say how
        out["error"] = "%s: %s" % (type(e).__name__, str(e)[:300])
    finally:
        if srv.running():
            out["exit_code_on_sigterm"] = srv.stop()
        srv.cleanup()
    print(json.dumps(out), flush=True)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    bounds.CLUSTER = admission.CLUSTER = pgcluster.PgCluster.start()
    try:
        for binary in argv[1:]:
            d = tempfile.mkdtemp(prefix="books-bounds-")
            try:
                run(binary, "big pages, sqlite:",
                    bounds.server_env("sqlite:%s/books.db" % d), bounds.big_pages, "sqlite")
            finally:
                shutil.rmtree(d, ignore_errors=True)
            run(binary, "big pages, postgresql:", bounds.server_env(bounds.fresh_db()),
                bounds.big_pages, "postgresql")
            uri = bounds.fresh_db()
            run(binary, "padded creates, locked table",
                bounds.server_env(uri + "?cache_mb=0&statement_timeout_ms=0"),
                bounds.padded_creates, uri.rsplit("/", 1)[1])
            uri = bounds.fresh_db()
            run(binary, "SIGTERM, locked table, reads in flight",
                bounds.server_env(uri + "?cache_mb=0&statement_timeout_ms=60000",
                                  BOOKS_SHUTDOWN_GRACE_MS=2000),
                bounds.shutdown_while_stalled, uri.rsplit("/", 1)[1])
            run(binary, "200 ListBooks that never read, %d MiB" % admission.LIMIT_MB,
                admission.server_env(bounds.fresh_db()), admission.stuck_lists)
    finally:
        bounds.CLUSTER.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
