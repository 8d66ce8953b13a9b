#!/usr/bin/python3
"""Relative numbers for the firestore: store against Google's Firestore emulator (issue 19): the
emulator is a JVM on this machine, not Firestore, so only ratios between rows mean anything.

Rows, each on a fresh collection, 64 calls in flight from one grpcio channel:
  create, group_commit=on      a batch of queued creates is one BatchWrite
  create, group_commit=off     one BatchWrite of one write per create (a CreateDocument's cost)
  create with request_id       one atomic Commit of the batch (books + request documents)
  get, record cache            GetBook of books already read once
  get, cache_mb=0              every GetBook a GetDocument
  list, 50 a page              ListBooks pages (RunQuery)

usage: bench/firestore.py BOOKS_SERVER [--host 127.0.0.1:PORT] [--n 2000]
Without --host it starts an emulator of its own (tests/support/fsemulator.py) and stops it.
"""

import argparse
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "wire"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--host")
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    os.environ["BOOKS_SERVER"] = os.path.abspath(a.binary)
    import harness
    import fsemulator
    from harness import CreateBookRequest, GetBookRequest, ListBooksRequest, make_book
    em = None if a.host else fsemulator.Emulator.start()
    host = a.host or em.host

    def server(extra):
        coll = "bench_%s" % uuid.uuid4().hex[:8]
        return harness.ServerProcess(env={
            "BOOKS_STORE": "firestore://books-bench?collection=%s%s" % (coll, extra),
            "FIRESTORE_EMULATOR_HOST": host}, label="bench").start_and_wait()

    def run(label, stub, make_call, n):
        t0 = time.monotonic()
        pending, done = [], 0
        for i in range(n):
            pending.append(make_call(i))
            if len(pending) == 64:
                pending.pop(0).result()
                done += 1
        for f in pending:
            f.result()
        dt = time.monotonic() - t0
        print("  %-32s %7.0f calls/s  (%d in %.1f s)" % (label, n / dt, n, dt))

    try:
        print("firestore: against the emulator at %s (relative numbers only)" % host)
        for label, extra, rid in (("create, group_commit=on", "", False),
                                  ("create, group_commit=off", "&group_commit=off", False),
                                  ("create with request_id", "", True)):
            srv = server(extra)
            stub = srv.stub()
            run(label, stub, lambda i: stub.CreateBook.future(CreateBookRequest(
                book_id="b%06d" % i, book=make_book("T %d" % i, ["A"], "P"),
                request_id=str(uuid.uuid4()) if rid else ""), timeout=60), a.n)
            if not rid and "off" not in extra:
                run("get, record cache", stub, lambda i: stub.GetBook.future(
                    GetBookRequest(name="books/b%06d" % (i % a.n)), timeout=60), a.n)
                run("list, 50 a page", stub, lambda i: stub.ListBooks.future(
                    ListBooksRequest(page_size=50), timeout=60), a.n // 10)
            srv.stop()
        srv = server("&cache_mb=0")
        stub = srv.stub()
        run("create (for the next row)", stub, lambda i: stub.CreateBook.future(CreateBookRequest(
            book_id="b%06d" % i, book=make_book("T", ["A"], "P")), timeout=60), a.n // 4)
        run("get, cache_mb=0", stub, lambda i: stub.GetBook.future(
            GetBookRequest(name="books/b%06d" % (i % (a.n // 4))), timeout=60), a.n)
        srv.stop()
    finally:
        if em:
            em.stop()


if __name__ == "__main__":
    main()
