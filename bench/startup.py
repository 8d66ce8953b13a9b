#!/usr/bin/python3
"""startup.py: time from exec to the first answered call, for books-server or any server of the API.

usage: bench/startup.py [--runs N] [--books N] BINARY

For each store (memory:, an empty sqlite: file, a sqlite: file holding --books books, default
1,000,000), starts BINARY --runs times (default 20) on a free loopback port and measures, with
time.perf_counter, from just before the fork/exec to the moment a ListBooks(page_size=1) answered
OK. The client polls the port with a TCP connect every 0.2 ms, then makes a channel (Debian's
python3-grpcio) and calls; a channel made before the port listens would wait for grpcio's
reconnect timer (~100 ms) instead of the server. The same call on a new channel to a server that is
already up is measured too ("client floor"): what the client itself costs of the total.
The big sqlite: file is made once: the server creates the schema, then Python's sqlite3 inserts
the rows in one transaction (authors are stored as each name followed by a NUL: see
src/store/sqlite/sq.h); it lives in a temporary directory removed at the end.

Prints one table row per store: median, p90 and max in milliseconds. Exits 1 when a start fails.
"""

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (stubs from the repository's proto)

import grpc  # noqa: E402

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def list_stub(pb, port):
    """A ListBooks callable on a new channel to the port."""
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    stub = channel.unary_unary("/%s/ListBooks" % bench.SERVICE,
                               request_serializer=pb.ListBooksRequest.SerializeToString,
                               response_deserializer=pb.ListBooksResponse.FromString)
    return stub, channel


def wait_accepting(port, proc, limit_s=10.0):
    """Polls a TCP connect every 0.2 ms until the port accepts (or the server exits)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.0002)
    return False


def start_once(binary, store, pb):
    port = free_port()
    env = dict(os.environ, PORT=str(port), BOOKS_STORE=store, BOOKS_LOG_LEVEL="warning")
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    channel = None
    try:
        # Polling the port, then a new channel: a channel made before the port listens waits for
        # grpcio's reconnect timer (about 100 ms here, whatever the backoff options say).
        if not wait_accepting(port, proc):
            raise RuntimeError("the server did not accept connections within 10 s")
        stub, channel = list_stub(pb, port)
        stub(pb.ListBooksRequest(page_size=1), timeout=10, wait_for_ready=True)
        elapsed = time.perf_counter() - t0
        # the client floor: a new channel to the same, running server
        stub2, channel2 = list_stub(pb, port)
        t1 = time.perf_counter()
        stub2(pb.ListBooksRequest(page_size=1), timeout=10, wait_for_ready=True)
        floor = time.perf_counter() - t1
        channel2.close()
    finally:
        if channel is not None:
            channel.close()
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            sys.stderr.write(err.decode(errors="replace"))
            sys.exit("startup.py: the server exited with %d" % proc.returncode)
    return elapsed, floor


def fill_sqlite(binary, path, n, pb):
    start_once(binary, "sqlite:" + path, pb)  # creates the schema, then stops (checkpointed)
    db = sqlite3.connect(path)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO books(name, display_name, publisher, authors) VALUES (?, ?, ?, ?)",
        (("books/m%07d" % i, "Book %d" % i, "Publisher", b"Author A\0") for i in range(n)))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def row(label, times):
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return "| %s | %.1f | %.1f | %.1f |" % (label, statistics.median(ms), p90, ms[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--books", type=int, default=1000000)
    ap.add_argument("binary")
    a = ap.parse_args()
    if a.runs < 1 or a.books < 0:
        sys.exit("startup.py: --runs must be at least 1 and --books not negative")
    binary = os.path.abspath(a.binary)
    pb = bench.books_pb2()
    with tempfile.TemporaryDirectory(prefix="books-startup-") as tmp:
        big = os.path.join(tmp, "big.db")
        fill_sqlite(binary, big, a.books, pb)
        size_mb = os.path.getsize(big) / 1e6
        stores = [("memory:", "memory:", None),
                  ("sqlite: empty", None, os.path.join(tmp, "empty-%d.db")),
                  ("sqlite: %d books (%.0f MB)" % (a.books, size_mb), "sqlite:" + big, None)]
        print("exec to first answered ListBooks, %d runs each (%s)" % (a.runs, binary))
        print("| store | median ms | p90 ms | max ms |")
        print("|---|---|---|---|")
        floors = []
        for label, store, pattern in stores:
            times = []
            for i in range(a.runs):
                s = store if store else "sqlite:" + (pattern % i)
                t, floor = start_once(binary, s, pb)
                times.append(t)
                floors.append(floor)
            print(row(label, times))
        print(row("client floor (new channel, running server)", floors))


if __name__ == "__main__":
    main()
