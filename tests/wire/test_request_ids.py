"""Wire tests: exactly-once CreateBook (AIP-155 request_id) in every store, and a PostgreSQL path
that cannot be weakened or poisoned (issue 17). Through Python grpcio and the `books` CLI:

  request_id       twice in a row (a retry: the first call's book, server-assigned name included);
                   8 at once (one book, every answer names it); after a restart (sqlite:); across
                   two instances (postgresql:); with another payload (FAILED_PRECONDITION,
                   REQUEST_ID_REUSED); not a UUID4 (INVALID_ARGUMENT on request_id);
  lost reply       a TCP proxy between books-server and PostgreSQL cuts every connection right
                   after forwarding COMMIT: the server finds out on a new connection and answers
                   the book; with the proxy refusing connections for a while, the CLI's retry with
                   the same request_id gets the original book; the data set holds one;
  durability       a role with synchronous_commit = off: the server's sessions still commit with
                   synchronous_commit = on (its own log line says so), and only the URI's
                   synchronous_commit=off weakens it; a LATIN1 database is refused at start;
  poisoned batch   a row the database refuses (a CHECK constraint added while serving, on
                   postgresql:; a trigger on sqlite:) fails alone: every other create of the same
                   burst commits;
  SQLSTATEs        permission denied (42501) and an undefined table (42P01) are FAILED_PRECONDITION,
                   not UNAVAILABLE; sessions terminated (57P01) and PostgreSQL restarted (08*) are
                   UNAVAILABLE; a database made read-only (25006 with target_session_attrs=primary;
                   a session libpq refuses with the default read-write) is UNAVAILABLE, never
                   INTERNAL, and the log says why (the rest of the table: test_pg.c);
  reads recover    after PostgreSQL restarts, every reader reconnects by itself (its log line says
                   how long after) and the first GetBook once health says SERVING succeeds.
"""

import concurrent.futures
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

import grpc

import harness
from harness import CreateBookRequest, GetBookRequest, make_book

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "support"))
import pgcluster  # noqa: E402
import tcpproxy  # noqa: E402

CLUSTER = None
CLI = os.environ.get("BOOKS_CLI") or os.path.join(os.path.dirname(harness.SERVER_PATH), "books")
health_pb2 = harness.health_pb2


def setUpModule():
    global CLUSTER
    CLUSTER = pgcluster.PgCluster.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def fresh_db(**options):
    return CLUSTER.fresh_database("rid", **options)


def db_of(uri):
    return uri.rsplit("/", 1)[1].split("?")[0]


def rid():
    return str(uuid.uuid4())


def create(stub, request_id, book_id="", title="T", timeout=30):
    return stub.CreateBook(CreateBookRequest(book_id=book_id, request_id=request_id,
                                             book=make_book(title)), timeout=timeout)


def wait_for(pred, timeout=60.0, what="condition"):
    harness.wait_for(pred, timeout, what)


class RequestIdRules(object):
    """The request_id rules, through the wire, against the store of self.store_uri()."""

    def store_env(self):
        raise NotImplementedError

    def test_retry_returns_the_first_book(self):
        srv = self.start_server(env=self.store_env())
        stub = srv.stub()
        r = rid()
        first = create(stub, r)                       # a server-assigned name
        again = create(stub, r)                       # the retry: same request, same id
        self.assertEqual(again, first)
        self.assertEqual(create(stub, r.upper()), first)  # the same UUID, either case
        chosen = rid()
        a = create(stub, chosen, book_id="chosen-1")
        self.assertEqual(create(stub, chosen, book_id="chosen-1"), a)  # not ALREADY_EXISTS
        names = [b.name for b in harness.list_all(stub)[0]]
        self.assertEqual(sorted(names), sorted([first.name, "books/chosen-1"]))
        # Another payload under a used id: FAILED_PRECONDITION, naming the id; nothing made.
        self.expect_error(lambda: create(stub, r, title="Another"),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                          metadata={"request_id": r})
        self.expect_error(lambda: create(stub, "not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT,
                          reason="FIELD_VIOLATION", fields=["request_id"])
        self.assertEqual(len(harness.list_all(stub)[0]), 2)

    def test_eight_at_once(self):
        srv = self.start_server(env=self.store_env())
        r = rid()
        barrier = threading.Barrier(8)

        def go(_):
            ch = harness.insecure_channel(srv.port)
            try:
                barrier.wait(10)
                return create(harness.books_pb2_grpc.BooksServiceStub(ch), r).name
            finally:
                ch.close()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            names = list(pool.map(go, range(8)))
        self.assertEqual(len(set(names)), 1, names)
        self.assertEqual([b.name for b in harness.list_all(srv.stub())[0]], names[:1])


class MemoryRequestIdTest(RequestIdRules, harness.WireTestCase):
    def store_env(self):
        return {"BOOKS_STORE": "memory:"}


class SqliteRequestIdTest(RequestIdRules, harness.WireTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="books-rid-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir], check=False))

    def store_env(self):
        return {"BOOKS_STORE": "sqlite:%s/books.db" % self.dir}

    def test_after_restart(self):
        srv = self.start_server(env=self.store_env(), label="before")
        r = rid()
        made = create(srv.stub(), r)
        srv.stop_and_check()
        srv2 = self.start_server(env=self.store_env(), label="after")
        self.assertEqual(create(srv2.stub(), r), made)
        self.assertEqual(len(harness.list_all(srv2.stub())[0]), 1)

    def test_a_refused_row_fails_alone(self):
        srv = self.start_server(env=self.store_env())
        stub = srv.stub()
        create(stub, rid(), book_id="warm-up")
        # The database's own rule, added while the server serves (another connection).
        db = sqlite3.connect(os.path.join(self.dir, "books.db"), timeout=30)
        # The row's book is its encoded Book: the title "poison" is in its bytes.
        db.execute("CREATE TRIGGER poison BEFORE INSERT ON books WHEN instr(NEW.book, "
                   "CAST('poison' AS BLOB)) > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
        db.commit()
        db.close()
        outcome = burst_with_poison(srv)
        self.assertEqual(outcome["poison"], "FAILED_PRECONDITION", outcome)
        self.assertEqual(set(outcome["others"]), {"OK"}, outcome)
        self.assertEqual(len(harness.list_all(stub)[0]), 1 + len(outcome["others"]))


def burst_with_poison(srv, n=40):
    """n creates at once (so they share batches) and one among them the database refuses."""
    barrier = threading.Barrier(n + 1)

    def go(i):
        ch = harness.insecure_channel(srv.port)
        try:
            barrier.wait(10)
            create(harness.books_pb2_grpc.BooksServiceStub(ch), rid(), book_id="b-%02d" % i,
                   title="poison" if i < 0 else "fine %d" % i)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name
        finally:
            ch.close()
    with concurrent.futures.ThreadPoolExecutor(n + 1) as pool:
        futs = [pool.submit(go, i) for i in list(range(n // 2)) + [-1] + list(range(n // 2, n))]
        codes = [f.result() for f in futs]
    return {"poison": codes[n // 2], "others": codes[:n // 2] + codes[n // 2 + 1:]}


class PostgresRequestIdTest(RequestIdRules, harness.WireTestCase):
    def store_env(self):
        if not hasattr(self, "uri"):
            self.uri = fresh_db()
        return {"BOOKS_STORE": self.uri}

    def test_across_two_instances(self):
        env = self.store_env()
        a = self.start_server(env=env, label="a")
        b = self.start_server(env=env, label="b")
        r = rid()
        results = [None, None]
        barrier = threading.Barrier(2)

        def go(k):
            barrier.wait(10)
            results[k] = create((a, b)[k].stub(), r).name
        threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results[0], results[1])
        self.assertEqual(create(b.stub(), r).name, results[0])
        self.assertEqual(CLUSTER.psql("SELECT count(*) FROM books", db=db_of(self.uri)), "1")

    def test_a_refused_row_fails_alone(self):
        srv = self.start_server(env=self.store_env())
        create(srv.stub(), rid(), book_id="warm-up")
        db = db_of(self.uri)
        # The row's book is its encoded Book: the title "poison" is in its bytes.
        CLUSTER.psql("ALTER TABLE books ADD CONSTRAINT poison CHECK "
                     "(position('poison'::bytea in book) = 0)",
                     db=db)
        # The burst must share a transaction whatever the machine's load does to its timing: a
        # session holds the table (EXCLUSIVE: reads pass, writes wait), one create waits on it,
        # the burst queues behind that create, and only then does the lock go. The next
        # transaction holds the whole burst, the refused row among them.
        holder = CLUSTER.hold_lock(db, "EXCLUSIVE", 60)
        try:
            blocker = threading.Thread(target=create, args=(srv.stub(), rid()),
                                       kwargs={"book_id": "blocker"})
            blocker.start()
            wait_for(lambda: CLUSTER.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'books-server' "
                "AND wait_event_type = 'Lock'", db=db) == "1", what="the first create to wait")
            result = {}
            burst = threading.Thread(target=lambda: result.update(burst_with_poison(srv)))
            burst.start()
            time.sleep(2.0)  # the burst reaches the server's queue (milliseconds, normally)
        finally:
            CLUSTER.release_lock(holder)
        burst.join(60)
        blocker.join(60)
        outcome = result
        self.assertEqual(outcome["poison"], "FAILED_PRECONDITION", outcome)
        self.assertEqual(set(outcome["others"]), {"OK"}, outcome)
        self.assertEqual(CLUSTER.psql("SELECT count(*) FROM books", db=db),
                         str(2 + len(outcome["others"])))  # the warm-up and the first create
        self.assertTrue(any("refused a row of a round" in l.get("message", "")
                            for l in srv.log_lines(strict=False)),
                        "no batch was split: the burst never shared a transaction")


class LostReplyTest(harness.WireTestCase):
    """COMMIT reaches PostgreSQL, its answer never reaches books-server."""

    def setUp(self):
        super().setUp()
        self.uri = fresh_db()
        self.proxy = tcpproxy.TcpProxy(("127.0.0.1", CLUSTER.port)).start()
        self.addCleanup(self.proxy.stop)
        via = self.uri.replace(":%d/" % CLUSTER.port, ":%d/" % self.proxy.port)
        self.srv = self.start_server(env={"BOOKS_STORE": via + "?statement_timeout_ms=5000"})
        self.stub = self.srv.stub()
        create(self.stub, rid(), book_id="warm-up")

    def rows_of(self, request_id):
        return CLUSTER.psql("SELECT name FROM books WHERE request_id = '%s'" % request_id,
                            db=db_of(self.uri))

    def test_the_server_finds_out(self):
        r = rid()
        self.proxy.drop_after(b"COMMIT\0")
        made = create(self.stub, r, timeout=30)
        self.assertEqual(self.proxy.drops, 1)
        self.assertEqual(self.rows_of(r), made.name)  # exactly one, the one answered
        self.assertTrue(any("after a lost connection" in l.get("message", "")
                            for l in self.srv.log_lines(strict=False)))

    def test_the_clients_retry_gets_the_original(self):
        r = rid()
        self.proxy.drop_after(b"COMMIT\0", refuse_s=4.0)
        run = subprocess.run([CLI, "create", "--title", "Lost reply", "--author", "A",
                              "--publisher", "P", "--request-id", r, "--retries", "8",
                              "--timeout", "2", "--json", "--addr",
                              "127.0.0.1:%d" % self.srv.port],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertGreaterEqual(self.proxy.refused, 1)  # the first attempt did fail
        name = re.search(r'"name":"(books/[^"]+)"', run.stdout).group(1)
        self.assertEqual(self.rows_of(r), name)         # the original book, and only one
        self.assertEqual(CLUSTER.psql("SELECT count(*) FROM books", db=db_of(self.uri)), "2")


class DurabilityTest(harness.WireTestCase):

    def settings_line(self, srv):
        for l in srv.log_lines(strict=False):
            if l.get("message", "").endswith("session settings"):
                return l
        self.fail("no session settings line:\n%s" % srv.output_tail())

    def test_role_level_synchronous_commit_off_is_overridden(self):
        uri = fresh_db()
        CLUSTER.psql("CREATE ROLE weak LOGIN", db="postgres")
        CLUSTER.psql("ALTER ROLE weak SET synchronous_commit = off; "
                     "GRANT ALL ON SCHEMA public TO weak", db=db_of(uri))
        weak = uri.replace("postgres@", "weak@")
        self.assertEqual(CLUSTER.psql("SELECT rolconfig::text FROM pg_roles WHERE "
                                      "rolname = 'weak'"), "{synchronous_commit=off}")
        srv = self.start_server(env={"BOOKS_STORE": weak + "?options=-csynchronous_commit%3Doff"})
        line = self.settings_line(srv)
        self.assertEqual((line["synchronous_commit"], line["client_encoding"],
                          line["server_encoding"]), ("on", "UTF8", "UTF8"), line)
        create(srv.stub(), rid(), book_id="durable")
        srv.stop_and_check()
        # Only the store's own parameter weakens it, and the log says so.
        srv = self.start_server(env={"BOOKS_STORE": weak + "?synchronous_commit=off"})
        self.assertEqual(self.settings_line(srv)["synchronous_commit"], "off")

    def test_latin1_database_is_refused(self):
        uri = fresh_db(ENCODING="'LATIN1'", LC_COLLATE="'C'", LC_CTYPE="'C'", TEMPLATE="template0")
        srv = harness.ServerProcess(env={"BOOKS_STORE": uri}, label="latin1")
        srv.start()
        self.assertEqual(srv.wait(60), 1, srv.output_tail())
        err = srv.stderr_text()
        self.assertIn("encoding is LATIN1", err)
        self.assertIn("UTF8", err)
        srv.cleanup()
        self.assertEqual(CLUSTER.psql("SELECT to_regclass('books') IS NULL", db=db_of(uri)), "t")


class SqlstateTest(harness.WireTestCase):

    def test_permission_denied_and_undefined_table_are_not_retryable(self):
        uri = fresh_db()
        db = db_of(uri)
        srv = self.start_server(env={"BOOKS_STORE": uri + "?cache_mb=0"})
        stub = srv.stub()
        create(stub, rid(), book_id="before")
        # 42501: the server's role may no longer insert (a role of its own, so the test can
        # take rights away from it).
        CLUSTER.psql("CREATE ROLE limited LOGIN; GRANT ALL ON books, books_schema TO limited; "
                     "GRANT USAGE ON SCHEMA public TO limited", db=db)
        srv.stop_and_check()
        srv = self.start_server(env={"BOOKS_STORE": uri.replace("postgres@", "limited@") +
                                     "?cache_mb=0"}, label="limited")
        stub = srv.stub()
        CLUSTER.psql("REVOKE INSERT ON books FROM limited", db=db)
        self.expect_error(lambda: create(stub, rid(), book_id="denied"),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="STORE_REFUSED")
        CLUSTER.psql("REVOKE SELECT ON books FROM limited", db=db)
        self.expect_error(lambda: stub.GetBook(GetBookRequest(name="books/before"), timeout=30),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="STORE_REFUSED")
        # 42P01: the table is gone from under the server.
        CLUSTER.psql("GRANT ALL ON books TO limited; ALTER TABLE books RENAME TO books_gone",
                     db=db)
        self.expect_error(lambda: create(stub, rid(), book_id="gone"),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="STORE_REFUSED")
        CLUSTER.psql("ALTER TABLE books_gone RENAME TO books", db=db)
        create(stub, rid(), book_id="back")

    def test_terminated_sessions_and_a_restart_are_unavailable(self):
        uri = fresh_db()
        srv = self.start_server(env={"BOOKS_STORE": uri + "?cache_mb=0&pool=3"})
        stub = srv.stub()
        create(stub, rid(), book_id="kept")
        CLUSTER.terminate_backends(db_of(uri))     # 57P01 admin_shutdown for the sessions
        codes = set()
        for _ in range(3):
            try:
                stub.GetBook(GetBookRequest(name="books/kept"), timeout=10)
                codes.add("OK")
            except grpc.RpcError as e:
                codes.add(e.code().name)
        self.assertTrue(codes <= {"OK", "UNAVAILABLE"}, codes)


    def test_a_read_only_database_is_unavailable_never_internal(self):
        for attrs in ("primary", None):
            uri = fresh_db()
            db = db_of(uri)
            query = "?cache_mb=0" + ("&target_session_attrs=" + attrs if attrs else "")
            srv = self.start_server(env={"BOOKS_STORE": uri + query},
                                    label="read-only-%s" % (attrs or "default"))
            stub = srv.stub()
            create(stub, rid(), book_id="before")
            # Every new session of the database is read-only now (as a primary made read-only,
            # or a node that came back as a standby, would be).
            CLUSTER.psql("ALTER DATABASE %s SET default_transaction_read_only = on" % db,
                         db="postgres")
            CLUSTER.terminate_backends(db)
            codes = set()
            for _ in range(5):
                try:
                    create(stub, rid(), timeout=10)
                    codes.add("OK")
                except grpc.RpcError as e:
                    codes.add(e.code().name)
                    if e.code() == grpc.StatusCode.UNAVAILABLE:
                        self.assertEqual(harness.error_details(e).error_info.reason,
                                         "STORE_UNAVAILABLE")
                time.sleep(0.1)
            self.assertEqual(codes, {"UNAVAILABLE"}, attrs)
            messages = [l.get("message", "") for l in srv.log_lines(strict=False)]
            if attrs == "primary":  # libpq takes the session; the INSERT meets 25006
                self.assertTrue(any("read-only transaction" in m and "(BOOKS_EUNAVAIL)" in m
                                    for m in messages), "\n".join(messages[-20:]))
            else:  # libpq refuses the session: the store finds no primary
                self.assertTrue(any("session is read-only" in m for m in messages),
                                "\n".join(messages[-20:]))
            CLUSTER.psql("ALTER DATABASE %s RESET default_transaction_read_only" % db,
                         db="postgres")
            CLUSTER.terminate_backends(db)
            made = []

            def works():
                try:
                    made.append(create(stub, rid(), book_id="after", timeout=10))
                    return True
                except grpc.RpcError as e:
                    self.assertIn(e.code(), (grpc.StatusCode.UNAVAILABLE,
                                             grpc.StatusCode.UNKNOWN), e.details())
                    return False
            wait_for(works, what="creates to succeed again")
            self.assertEqual(made[0].name, "books/after")
            self.assertEqual(CLUSTER.psql("SELECT count(*) FROM books", db=db), "2")
            srv.stop_and_check()


class ReadsRecoverTest(harness.WireTestCase):
    """After PostgreSQL restarts, every reader reconnects on its own, without a caller's read
    having to fail first."""

    def test_every_reader_reconnects_by_itself(self):
        uri = fresh_db()
        srv = self.start_server(env={"BOOKS_STORE": uri + "?cache_mb=0&pool=3"})
        stub = srv.stub()
        create(stub, rid(), book_id="kept")
        CLUSTER.stop(remove=False)
        wait_for(lambda: health(srv) == health_pb2.HealthCheckResponse.NOT_SERVING,
                 what="NOT_SERVING")
        CLUSTER.restart()
        back = time.monotonic()
        back_wall = time.time()
        wait_for(lambda: health(srv) == health_pb2.HealthCheckResponse.SERVING, what="SERVING")
        serving_after = time.monotonic() - back
        # Give every reader time to reconnect by itself, then read once per reader: no read
        # may meet a dead connection.
        wait_for(lambda: reconnects(srv, "read") >= 3, timeout=30, what="3 readers back")
        for _ in range(6):
            self.assertEqual(stub.GetBook(GetBookRequest(name="books/kept"), timeout=10).name,
                             "books/kept")
        import datetime
        after = sorted(round(datetime.datetime.fromisoformat(l["time"].replace("Z", "+00:00"))
                             .timestamp() - back_wall, 3)
                       for l in srv.log_lines(strict=False)
                       if "read connection is back" in l.get("message", ""))
        sys.stderr.write("[recover] BooksService SERVING %.2f s after PostgreSQL was back; each "
                         "reader reconnected %s s after it\n" % (serving_after, after))


def health(srv):
    return harness.health_status(srv)


def reconnects(srv, kind):
    return sum(1 for l in srv.log_lines(strict=False)
               if "the %s connection is back" % kind in l.get("message", ""))


if __name__ == "__main__":
    unittest.main()
