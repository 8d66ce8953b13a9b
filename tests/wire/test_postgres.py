"""Wire tests: the postgresql:// store through the real binary, against a real PostgreSQL 15 that
this module starts (tests/support/pgcluster.py: Debian's binaries, a data directory under /tmp, a
free port on loopback) and stops.

  * one instance: create, get, list and page tokens; a restart keeps books, order and tokens; the
    password in the URI never reaches stdout or stderr;
  * many instances on one database: a book created through one is read through another at once;
    the same book_id created at once through three gives exactly one OK; a page token from one
    works on another; paging across instances while books are added neither repeats nor skips;
  * start-up faults: an unreachable database (retries, then exit 1 naming the server and the
    cause), a schema from a newer books-server, another application's `books` table; two servers
    starting at once on an empty database;
  * outages while serving: the database's connections killed, or PostgreSQL restarted: the calls
    caught in it get UNAVAILABLE, later calls succeed without restarting books-server, and health
    reports books.v1.BooksService NOT_SERVING meanwhile while "" (the process) stays SERVING;
  * crashes: kill -9 of books-server under concurrent creates, and kill -9 of the postmaster under
    load then a restart: every acknowledged book is there afterwards, byte for byte;
  * deadlines: a read blocked in the database (a lock held by another session) ends with
    DEADLINE_EXCEEDED at the caller's deadline and the query is cancelled in the database.
"""

import os
import signal
import sys
import threading
import time
import unittest
import uuid

import grpc

import harness
from harness import CreateBookRequest, GetBookRequest, ListBooksRequest, make_book

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "support"))
import pgcluster  # noqa: E402

health_pb2 = harness.health_pb2
content, health_status, wait_for = harness.content, harness.health_status, harness.wait_for

CLUSTER = None
SERVICE = "books.v1.BooksService"


def setUpModule():
    global CLUSTER
    CLUSTER = pgcluster.PgCluster.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def fresh_db():
    """A new empty database; returns its URI."""
    return CLUSTER.fresh_database("books_wire")


def server(uri, label="pg", **env):
    e = {"BOOKS_STORE": uri}
    e.update(env)
    return harness.ServerProcess(env=e, label=label)


def read(path):
    with open(path) as f:
        return f.read()




class OneInstanceTest(harness.WireTestCase):

    def test_crud_restart_tokens_and_no_password_in_logs(self):
        uri = fresh_db()
        # A password libpq is given (trust authentication ignores it); it must appear nowhere.
        secret = "s3cret-Pa55word"
        with_pw = uri.replace("postgres@", "postgres:%s@" % secret)
        srv = server(with_pw).start_and_wait()
        try:
            stub = srv.stub()
            made = {}
            for i in range(25):
                b = stub.CreateBook(CreateBookRequest(
                    book_id="pg-%02d" % i,
                    book=make_book("T\u00e9 %d \"q\" {x}" % i, ["A, %d" % i, "\u6751\u4e0a"][:1 + i % 2] +
                                   ["B \\ %d" % i], "P\n%d" % i)), timeout=30)
                made[b.name] = b
            self.assertEqual(stub.GetBook(GetBookRequest(name="books/pg-07"), timeout=30),
                             made["books/pg-07"])
            page1 = stub.ListBooks(ListBooksRequest(page_size=10), timeout=30)
            self.assertEqual([b.name for b in page1.books], sorted(made)[:10])
            self.assertTrue(page1.next_page_token)
            with self.assertRaises(grpc.RpcError) as cm:
                stub.CreateBook(CreateBookRequest(book_id="pg-07", book=make_book("x", ["y"], "z")),
                                timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        finally:
            self.assertEqual(srv.stop(), 0)
        for path in (srv.stdout_path, srv.stderr_path):
            with open(path, "rb") as f:
                self.assertNotIn(secret.encode(), f.read(), path)
        # A restart: same books, same order, and the token of before still works.
        srv2 = server(with_pw).start_and_wait()
        try:
            stub = srv2.stub()
            page2 = stub.ListBooks(ListBooksRequest(page_size=10, page_token=page1.next_page_token),
                                   timeout=30)
            self.assertEqual([b.name for b in page2.books], sorted(made)[10:20])
            for name, b in made.items():
                self.assertEqual(stub.GetBook(GetBookRequest(name=name), timeout=30), b)
        finally:
            self.assertEqual(srv2.stop(), 0)


class ManyInstancesTest(harness.WireTestCase):

    def setUp(self):
        super().setUp()
        self.uri = fresh_db()
        self.servers = [server(self.uri, label="pg-%d" % i).start_and_wait() for i in range(3)]
        self.stubs = [s.stub() for s in self.servers]

    def tearDown(self):
        for s in self.servers:
            self.assertEqual(s.stop(), 0)
        super().tearDown()

    def test_create_through_one_read_through_another(self):
        for i in range(20):
            made = self.stubs[i % 3].CreateBook(CreateBookRequest(
                book_id="x-%d" % i, book=make_book("Title %d" % i, ["Au"], "Pub")), timeout=30)
            for k in range(3):
                self.assertEqual(self.stubs[k].GetBook(GetBookRequest(name=made.name), timeout=30),
                                 made)

    def test_same_id_at_once_through_all(self):
        for round_ in range(10):
            book_id = "race-%d" % round_
            results = [None] * 6
            barrier = threading.Barrier(6)

            def go(k):
                barrier.wait()
                try:
                    self.stubs[k % 3].CreateBook(CreateBookRequest(
                        book_id=book_id, book=make_book("Racer %d" % k, ["A"], "P")), timeout=30)
                    results[k] = "OK"
                except grpc.RpcError as e:
                    results[k] = e.code().name
            threads = [threading.Thread(target=go, args=(k,)) for k in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(results.count("OK"), 1, results)
            self.assertEqual(results.count("ALREADY_EXISTS"), 5, results)

    def test_page_tokens_cross_instances_no_repeats_no_skips(self):
        names = set()
        for i in range(60):
            names.add(self.stubs[0].CreateBook(CreateBookRequest(
                book_id="p-%03d" % (i * 2), book=make_book("P", ["A"], "P")), timeout=30).name)
        seen, token, k, added = [], "", 0, 0
        while True:
            page = self.stubs[k % 3].ListBooks(ListBooksRequest(page_size=7, page_token=token),
                                               timeout=30)
            seen += [b.name for b in page.books]
            # Books added between pages, through another instance, before and after the cursor.
            if added < 10:
                self.stubs[(k + 1) % 3].CreateBook(CreateBookRequest(
                    book_id="p-%03d" % (added * 12 + 1), book=make_book("N", ["A"], "P")),
                    timeout=30)
                added += 1
            k += 1
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(len(seen), len(set(seen)), "a book repeated")
        self.assertEqual(seen, sorted(seen), "out of order")
        self.assertTrue(names <= set(seen), "a book present from the start was skipped")


class StartupTest(harness.WireTestCase):

    def test_unreachable_database_retries_then_exits_1(self):
        port = pgcluster._free_port()  # nothing listens there
        uri = "postgresql://books:hunter2@127.0.0.1:%d/books?startup_timeout_s=2" % port
        srv = server(uri)
        srv.start()
        t0 = time.monotonic()
        rc = srv.wait(60)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, srv.output_tail())
        err = read(srv.stderr_path)
        self.assertIn("127.0.0.1:%d" % port, err)
        self.assertIn("Connection refused", err)
        self.assertNotIn("hunter2", err + read(srv.stdout_path))
        self.assertGreaterEqual(took, 1.5, "gave up without retrying")
        self.assertIn("retrying", read(srv.stdout_path))

    def test_newer_schema_and_foreign_tables_are_refused_untouched(self):
        uri = fresh_db()
        srv = server(uri).start_and_wait()
        self.assertEqual(srv.stop(), 0)
        db = uri.rsplit("/", 1)[1]
        CLUSTER.psql("UPDATE books_schema SET version = 99", db=db)
        srv = server(uri)
        srv.start()
        self.assertEqual(srv.wait(60), 1)
        self.assertIn("version 99", read(srv.stderr_path))
        self.assertEqual(CLUSTER.psql("SELECT version FROM books_schema", db=db), "99")

        other = fresh_db()
        odb = other.rsplit("/", 1)[1]
        CLUSTER.psql("CREATE TABLE books (id int)", db=odb)
        srv = server(other)
        srv.start()
        self.assertEqual(srv.wait(60), 1)
        self.assertIn("did not create", read(srv.stderr_path))
        self.assertEqual(CLUSTER.psql("SELECT to_regclass('books_schema') IS NULL", db=odb), "t")

    def test_two_servers_start_at_once_on_an_empty_database(self):
        uri = fresh_db()
        a, b = server(uri, label="a"), server(uri, label="b")
        a.start()
        b.start()
        try:
            for s in (a, b):
                s.wait_listening()
                s.wait_serving()
            db = uri.rsplit("/", 1)[1]
            self.assertEqual(CLUSTER.psql("SELECT count(*) FROM books_schema", db=db), "1")
            made = a.stub().CreateBook(CreateBookRequest(book_id="both",
                                                         book=make_book("B", ["A"], "P")),
                                       timeout=30)
            self.assertEqual(b.stub().GetBook(GetBookRequest(name="books/both"), timeout=30), made)
        finally:
            self.assertEqual(a.stop(), 0)
            self.assertEqual(b.stop(), 0)


class OutageTest(harness.WireTestCase):
    """Connections killed, then PostgreSQL restarted, under a server that keeps running."""

    def test_connections_killed_then_database_restarted(self):
        uri = fresh_db()
        db = uri.rsplit("/", 1)[1]
        srv = server(uri + "?cache_mb=0").start_and_wait()
        try:
            stub = srv.stub()
            stub.CreateBook(CreateBookRequest(book_id="before", book=make_book("B", ["A"], "P")),
                            timeout=30)
            for attempt in ("terminate", "restart"):
                if attempt == "terminate":
                    CLUSTER.terminate_backends(db)
                    time.sleep(0.5)  # the backends have exited; their sockets are closed
                    # The server notices a closed idle connection before it sends a query on it:
                    # reads go on a new connection, and a create is not caught in the break
                    # (UNKNOWN).
                    self.assertEqual(stub.GetBook(GetBookRequest(name="books/before"),
                                                  timeout=10).name, "books/before")
                    got = stub.CreateBook(CreateBookRequest(book_id="just-after-terminate",
                                                            book=make_book("B", ["A"], "P")),
                                          timeout=10)
                    self.assertEqual(got.name, "books/just-after-terminate")
                else:
                    CLUSTER.stop(remove=False)
                    # While it is down: UNAVAILABLE (retryable), health says so, "" still serves.
                    codes = set()
                    for _ in range(5):
                        try:
                            stub.GetBook(GetBookRequest(name="books/before"), timeout=10)
                            codes.add("OK")
                        except grpc.RpcError as e:
                            codes.add(e.code().name)
                    self.assertEqual(codes, {"UNAVAILABLE"})
                    wait_for(lambda: health_status(srv, SERVICE) ==
                             health_pb2.HealthCheckResponse.NOT_SERVING, what="NOT_SERVING")
                    self.assertEqual(health_status(srv, ""), health_pb2.HealthCheckResponse.SERVING)
                    CLUSTER.restart()
                # Later calls succeed without restarting books-server. A call caught in the break
                # may see UNAVAILABLE, and a create whose transaction was on its way UNKNOWN: clients
                # retry those, a create with the same request_id (AIP-155).
                create = CreateBookRequest(book_id="after-" + attempt,
                                           book=make_book("B", ["A"], "P"),
                                           request_id=str(uuid.uuid4()))
                def works():
                    try:
                        stub.GetBook(GetBookRequest(name="books/before"), timeout=10)
                        got = stub.CreateBook(create, timeout=10)
                        self.assertEqual(got.name, "books/after-" + attempt)
                        return True
                    except grpc.RpcError as e:
                        self.assertIn(e.code(), (grpc.StatusCode.UNAVAILABLE,
                                                 grpc.StatusCode.UNKNOWN), e.details())
                        return False
                wait_for(works, what="calls to succeed again after %s" % attempt)
                wait_for(lambda: health_status(srv, SERVICE) ==
                         health_pb2.HealthCheckResponse.SERVING, what="SERVING again")
        finally:
            self.assertEqual(srv.stop(), 0)


class CrashTest(harness.WireTestCase):

    def run_creates(self, srv, clients=6):
        return harness.run_creates(srv.port, clients)

    def check_all_there(self, uri, acked):
        srv = server(uri).start_and_wait()
        try:
            stub = srv.stub()
            for name, want in acked.items():
                self.assertEqual(content(stub.GetBook(GetBookRequest(name=name), timeout=30)),
                                 want, name)
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_kill_9_books_server_under_creates(self):
        uri = fresh_db()
        srv = server(uri).start_and_wait()
        acked, errors, stop, threads = self.run_creates(srv)
        wait_for(lambda: len(acked) >= 300, what="300 acknowledged creates")
        os.kill(srv.pid, signal.SIGKILL)
        srv.wait(30)
        srv.stop()  # already gone: this only collects it and closes its files
        stop.set()
        for t in threads:
            t.join(60)
        self.assertGreaterEqual(len(acked), 300)
        self.check_all_there(uri, dict(acked))

    def test_kill_9_postmaster_under_load_then_restart(self):
        uri = fresh_db()
        srv = server(uri).start_and_wait()
        try:
            acked, errors, stop, threads = self.run_creates(srv)
            wait_for(lambda: len(acked) >= 300, what="300 acknowledged creates")
            CLUSTER.kill9()
            time.sleep(1.0)
            CLUSTER.restart()
            n = len(acked)
            wait_for(lambda: len(acked) >= n + 100, what="creates to succeed after the restart")
            stop.set()
            for t in threads:
                t.join(60)
            self.assertTrue(set(errors) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, set(errors))
            self.check_all_there(uri, dict(acked))
        finally:
            self.assertEqual(srv.stop(), 0)


class DeadlineTest(harness.WireTestCase):

    def test_blocked_read_is_cancelled_at_the_deadline(self):
        uri = fresh_db()
        db = uri.rsplit("/", 1)[1]
        srv = server(uri + "?cache_mb=0&statement_timeout_ms=0").start_and_wait()
        try:
            stub = srv.stub()
            stub.CreateBook(CreateBookRequest(book_id="locked", book=make_book("L", ["A"], "P")),
                            timeout=30)
            # Another session holds an exclusive lock on books for 20 s.
            holder = CLUSTER.hold_lock(db, "ACCESS EXCLUSIVE", 20)
            try:
                t0 = time.monotonic()
                with self.assertRaises(grpc.RpcError) as cm:
                    stub.GetBook(GetBookRequest(name="books/locked"), timeout=1.0)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
                self.assertLess(time.monotonic() - t0, 10)
                # The query does not wait on in the database: it was cancelled.
                wait_for(lambda: CLUSTER.psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    "'books-server' AND wait_event_type = 'Lock'", db=db) == "0",
                    timeout=10, what="the blocked query to be cancelled")
            finally:
                CLUSTER.release_lock(holder)
        finally:
            self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
