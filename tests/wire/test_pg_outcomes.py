"""Wire tests: every create of a postgresql: batch gets its own outcome, and a read's cancel hits
only its own query. Each test pins one defect of the writer/readers of 363d47a (the issue's F1, F2,
F3, F5, F6, F8) through Python grpcio, a throwaway PostgreSQL (pgcluster) and, where the fault is
in the protocol, tests/support/pgproxy.py between books-server and PostgreSQL:

  F1  a split batch never writes an item twice: A (short deadline), B, R (refused by a CHECK), D
      in one batch, the table held past A's deadline: A DEADLINE_EXCEEDED, B OK, R
      FAILED_PRECONDITION, D OK (not ALREADY_EXISTS for its own row); with and without request_id;
  F5  a name goes to the create whose row it is: X (a used request_id, book_id n5) before Y
      (book_id n5, no request_id) in one batch: X REQUEST_ID_REUSED, Y OK;
  F2  a COMMIT whose CommandComplete arrived is committed, even when the connection breaks before
      ReadyForQuery: OK, the row exactly once;
  F8  a lost COMMIT result is resolved by request id with the fingerprint compared (another
      request under a used id: REQUEST_ID_REUSED), and within each create's own deadline (of A
      short and B long in one lost round, B is OK);
  F6  statement_timeout_ms=0 and a 30-day deadline: OK (SET LOCAL statement_timeout is clamped);
  F3  a late cancel (its connection delayed by the proxy) does not cancel the next read on that
      reader's connection.

How batches are made deterministic: a session holds the table (pgcluster.hold_lock), a first
"gate" create waits on it inside the writer's transaction (seen in pg_stat_activity), and the
creates meant to share the next batch are sent meanwhile, in order, from this thread. The server
exposes nothing that says "this create is queued", so consecutive sends are ORDER_GAP_S apart: a
create is read, validated and queued within microseconds of its arrival, so a gap of that size
makes arrival order queue order. Every other wait polls a condition with a bound.

Schemas differ between the binaries (363d47a: display_name, publisher, authors; now a `book`
bytea), so the database's rules here look at the row's name only.

Run by hand:  cd tests/wire && BOOKS_SERVER=... /usr/bin/python3 -m unittest -v test_pg_outcomes
"""

import os
import re
import sys
import time
import unittest
import uuid

import grpc

import harness
from harness import CreateBookRequest, GetBookRequest, make_book

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "support"))
import pgcluster  # noqa: E402
import pgproxy  # noqa: E402

CLUSTER = None
# Between two sends meant to be queued in that order (see the module's docstring).
ORDER_GAP_S = 0.2
# How long a create the test waits for may take at most (a bound, not an expectation).
CALL_BOUND_S = 60


def setUpModule():
    global CLUSTER
    CLUSTER = pgcluster.PgCluster.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def rid():
    return str(uuid.uuid4())


def db_of(uri):
    return uri.rsplit("/", 1)[1].split("?")[0]


def request(book_id, title, request_id=""):
    return CreateBookRequest(book_id=book_id, request_id=request_id, book=make_book(title))


def outcome(fut, bound=CALL_BOUND_S):
    """(status name, response or RpcError) of a call future, waiting at most `bound` seconds."""
    try:
        return "OK", fut.result(timeout=bound)
    except grpc.FutureTimeoutError:
        return "NOT_DONE", None
    except grpc.RpcError as e:
        return e.code().name, e


def call(fn):
    """(status name, response or RpcError) of a blocking call."""
    try:
        return "OK", fn()
    except grpc.RpcError as e:
        return e.code().name, e


class Lock:
    """A table lock held by another session (pgcluster.hold_lock), released once."""

    def __init__(self, db, mode="EXCLUSIVE", seconds=90):
        self.holder = CLUSTER.hold_lock(db, mode, seconds)

    def release(self):
        if self.holder is not None:
            holder, self.holder = self.holder, None
            CLUSTER.release_lock(holder)


class OutcomesBase(harness.WireTestCase):

    def fresh(self):
        self.uri = CLUSTER.fresh_database("outc")
        self.db = db_of(self.uri)
        return self.uri

    def sql(self, q):
        return CLUSTER.psql(q, db=self.db)

    def rows(self):
        """The table's names, sorted."""
        out = self.sql("SELECT name FROM books ORDER BY name")
        return out.split("\n") if out else []

    def rows_of_request(self, request_id):
        return int(self.sql("SELECT count(*) FROM books WHERE request_id = '%s'" % request_id))

    def lock(self, mode="EXCLUSIVE"):
        lk = Lock(self.db, mode)
        self.addCleanup(lk.release)
        return lk

    def waiting(self, min_wait_s=0.0, started_after=None):
        """How many of books-server's sessions wait on a lock (for at least min_wait_s, in a
        statement started after the wall-clock time started_after)."""
        q = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
             "application_name = 'books-server' AND wait_event_type = 'Lock'")
        if min_wait_s:
            q += " AND clock_timestamp() - query_start > interval '%.3f seconds'" % min_wait_s
        if started_after is not None:
            q += " AND query_start > to_timestamp(%.3f)" % started_after
        return int(self.sql(q))

    def wait_waiting(self, what, **kw):
        harness.wait_for(lambda: self.waiting(**kw) >= 1, timeout=30, what=what)

    def proxied_server(self, params=""):
        """A PgProxy in front of the cluster and a server whose store goes through it."""
        px = pgproxy.PgProxy(("127.0.0.1", CLUSTER.port))
        px.start()
        self.addCleanup(px.stop)
        srv = self.start_server(env={"BOOKS_STORE": px.via(self.fresh()) + params})
        return px, srv

    def refused_split_sizes(self, srv):
        """The sizes of the batches/rounds the server split because the database refused a row."""
        out = []
        for l in srv.log_lines(strict=False):
            m = re.search(r"refused a row of a (?:batch|round) of (\d+)", l.get("message", ""))
            if m:
                out.append(int(m.group(1)))
        return out


class SplitBatchTest(OutcomesBase):
    """F1: after a create's deadline passed inside a batch that a refused row then split."""

    GATE_S = 2.5   # the gate's deadline: its round ends then, with the table still held
    A_S = 4.5      # A's deadline: after the gate's round, so A is written, then expires in it

    def run_f1(self, with_ids):
        """with_ids: every create has a request id, and D is the retry of a request already
        stored (the identical request, made before the batch)."""
        srv = self.start_server(env={"BOOKS_STORE": self.fresh()})
        stub = srv.stub()
        ids = {k: (rid() if with_ids else "") for k in ("gate", "A", "B", "R", "D")}
        self.assertEqual(call(lambda: stub.CreateBook(request("warm", "Warm"),
                                                      timeout=30))[0], "OK")
        d_before = stub.CreateBook(request("f1-d", "D", ids["D"]), timeout=30) if with_ids \
            else None
        # Refused by name: the same rule for both schemas (SQLSTATE 23514).
        self.sql("ALTER TABLE books ADD CONSTRAINT poison CHECK (position('poison' in name) = 0)")
        lk = self.lock("EXCLUSIVE")
        gate = stub.CreateBook.future(request("f1-gate", "Gate", ids["gate"]),
                                      timeout=self.GATE_S)
        self.wait_waiting("the gate's INSERT to wait on the lock")
        t_a = time.time()
        futs = {"A": stub.CreateBook.future(request("f1-a", "A", ids["A"]), timeout=self.A_S)}
        for key, book_id in (("B", "f1-b"), ("R", "f1-poison"), ("D", "f1-d")):
            time.sleep(ORDER_GAP_S)
            futs[key] = stub.CreateBook.future(request(book_id, key, ids[key]),
                                               timeout=CALL_BOUND_S)
        # The gate's round times out at its deadline, the table still held; the next batch is
        # A, B, R, D; its round waits until A's deadline, then B, R, D go again, and wait.
        gate_code = outcome(gate)[0]
        a_code = outcome(futs["A"])[0]
        self.wait_waiting("the round after A's deadline to wait on the lock",
                          min_wait_s=0.3, started_after=t_a + self.A_S - 0.5)
        lk.release()
        got = {"gate": gate_code, "A": a_code}
        res = {}
        for key in ("B", "R", "D"):
            got[key], res[key] = outcome(futs[key])
        self.assertEqual(got, {"gate": "DEADLINE_EXCEEDED", "A": "DEADLINE_EXCEEDED", "B": "OK",
                               "R": "FAILED_PRECONDITION", "D": "OK"},
                         "outcomes; the server split rounds of %s" % self.refused_split_sizes(srv))
        self.check_error(res["R"], grpc.StatusCode.FAILED_PRECONDITION, reason="STORE_REFUSED")
        self.assertEqual((res["B"].name, res["B"].display_name), ("books/f1-b", "B"))
        self.assertEqual((res["D"].name, res["D"].display_name), ("books/f1-d", "D"))
        if d_before is not None:
            self.assertEqual(res["D"], d_before)
        self.assertEqual(self.rows(), ["books/f1-b", "books/f1-d", "books/warm"])
        # The construction held: B, R and D (and, in 363d47a, a stale copy) shared a round that
        # the refused row split.
        splits = self.refused_split_sizes(srv)
        self.assertTrue(splits and splits[0] >= 3, "the split rounds: %s" % splits)
        return stub, ids, res

    def test_f1_split_after_expiry_without_request_ids(self):
        """F1 (issue: expire() compacted the part, pg_write_batch halved its ORIGINAL length, so
        a stale copy of D was written a second time and answered EEXIST). 363d47a answered D
        ALREADY_EXISTS for the book its own call had just made."""
        self.run_f1(with_ids=False)

    def test_f1_split_after_expiry_with_request_ids(self):
        """F1 with request ids on every create, D being the retry of a request stored before the
        batch: each outcome is its own row's (D: the book its request made), each id has one row
        (A's and R's none), and a retry of B gets B's book. 363d47a answered these right on the
        wire, since a second copy of a create with a request id is settled by that id; but it
        settled D twice, and the first record reference it had taken for D leaked: a
        BOOKS_SANITIZE build's LeakSanitizer reports it when the server exits, which fails the
        test (harness: a sanitizer report on stderr)."""
        stub, ids, res = self.run_f1(with_ids=True)
        self.assertEqual({k: self.rows_of_request(ids[k]) for k in ("A", "B", "R", "D")},
                         {"A": 0, "B": 1, "R": 0, "D": 1})
        again = stub.CreateBook(request("f1-b", "B", ids["B"]), timeout=30)
        self.assertEqual(again, res["B"])


class OwnRowTest(OutcomesBase):

    def test_f5_a_name_is_credited_to_its_own_create(self):
        """F5: X (book_id n5 under a request_id already used, other content) and then Y (book_id
        n5, no request_id) in one batch. X's INSERT row is skipped on the request_id conflict and
        Y's goes in. 363d47a credited the returned name to the first create that asked for it:
        X OK (with a book that is not stored) and Y ALREADY_EXISTS for its own row. Now: X
        FAILED_PRECONDITION REQUEST_ID_REUSED, Y OK."""
        srv = self.start_server(env={"BOOKS_STORE": self.fresh() + "?cache_mb=0"})
        stub = srv.stub()
        r1 = rid()
        taken = stub.CreateBook(request("taken-id", "First", r1), timeout=30)
        lk = self.lock("EXCLUSIVE")
        gate = stub.CreateBook.future(request("f5-gate", "Gate"), timeout=CALL_BOUND_S)
        self.wait_waiting("the gate's INSERT to wait on the lock")
        x = stub.CreateBook.future(request("n5", "Other content", r1), timeout=CALL_BOUND_S)
        time.sleep(ORDER_GAP_S)
        y = stub.CreateBook.future(request("n5", "Y's own"), timeout=CALL_BOUND_S)
        time.sleep(ORDER_GAP_S)
        lk.release()
        got, res = {}, {}
        for key, fut in (("gate", gate), ("X", x), ("Y", y)):
            got[key], res[key] = outcome(fut)
        self.assertEqual(got, {"gate": "OK", "X": "FAILED_PRECONDITION", "Y": "OK"})
        self.check_error(res["X"], grpc.StatusCode.FAILED_PRECONDITION,
                         reason="REQUEST_ID_REUSED", metadata={"request_id": r1})
        self.assertEqual((res["Y"].name, res["Y"].display_name), ("books/n5", "Y's own"))
        stored = stub.GetBook(GetBookRequest(name="books/n5"), timeout=30)
        self.assertEqual(stored.display_name, "Y's own")
        self.assertEqual(self.rows(), ["books/f5-gate", "books/n5", "books/taken-id"])
        self.assertEqual(self.sql("SELECT request_id IS NULL FROM books WHERE name = 'books/n5'"),
                         "t")
        self.assertEqual(stub.CreateBook(request("taken-id", "First", r1), timeout=30), taken)


class LostReplyTest(OutcomesBase):
    """F2 and F8: the COMMIT reached PostgreSQL; all or part of its answer did not come back."""

    def test_f2_commit_complete_then_a_break_is_committed(self):
        """F2: the COMMIT's CommandComplete arrives, then the connection breaks before
        ReadyForQuery (pgproxy cut_after_commit). The transaction committed: a create without
        request_id is OK and its row is there once. 363d47a answered UNAVAILABLE ("nothing
        committed"), so a client's retry would make a second book or meet ALREADY_EXISTS."""
        px, srv = self.proxied_server()
        stub = srv.stub()
        self.assertEqual(call(lambda: stub.CreateBook(request("warm", "Warm"),
                                                      timeout=30))[0], "OK")
        px.cut_after_commit()
        code, res = call(lambda: stub.CreateBook(request("f2", "Committed"), timeout=30))
        self.assertEqual(px.fired("cut_after_commit"), 1)
        self.assertEqual(code, "OK", res)
        self.assertEqual((res.name, res.display_name), ("books/f2", "Committed"))
        self.assertEqual(self.sql("SELECT count(*) FROM books WHERE name = 'books/f2'"), "1")
        # The writer reconnects for a later create. (One that arrives within the reconnection
        # backoff after the break is answered UNAVAILABLE at once, nothing written: retryable.)
        after = []
        harness.wait_for(lambda: after.append(call(lambda: stub.CreateBook(
            request("after", "After"), timeout=30))[0]) or after[-1] != "UNAVAILABLE",
            timeout=30, what="a create after the break")
        self.assertEqual(after[-1], "OK", after)
        self.assertEqual(self.rows(), ["books/after", "books/f2", "books/warm"])

    def test_f8_lost_commit_compares_the_fingerprint(self):
        """F8 (a): book_id "same" was made under request id R (content c1); the same book_id and R
        with content c2 then loses its COMMIT's result (pgproxy cut_before_commit). The writer
        looks R up on a new connection: another request's row, so FAILED_PRECONDITION
        REQUEST_ID_REUSED. 363d47a found a row of that name with that id and answered OK,
        without comparing request_hash (the client was told c2 was stored; c1 is)."""
        px, srv = self.proxied_server("?cache_mb=0")
        stub = srv.stub()
        r = rid()
        first = stub.CreateBook(request("same", "c1", r), timeout=30)
        px.cut_before_commit()
        code, res = call(lambda: stub.CreateBook(request("same", "c2", r), timeout=30))
        self.assertEqual(px.fired("cut_before_commit"), 1)
        self.assertEqual(code, "FAILED_PRECONDITION", res)
        self.check_error(res, grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                         metadata={"request_id": r})
        self.assertEqual(stub.GetBook(GetBookRequest(name="books/same"), timeout=30), first)
        self.assertEqual(self.rows_of_request(r), 1)
        self.assertEqual(self.rows(), ["books/same"])

    def test_f8_lost_commit_is_resolved_within_each_deadline(self):
        """F8 (b): A (request id, 2.5 s deadline) and B (request id, 60 s) share a round whose
        COMMIT's result is lost, and the proxy refuses new connections until after A's deadline.
        A can only be UNKNOWN (or its own DEADLINE_EXCEEDED); B, whose deadline is far, is looked
        up once the writer reconnects and is OK with its book. 363d47a gave up on the whole batch
        at its earliest deadline: A and B both UNKNOWN."""
        A_S, REFUSE_S = 2.5, 5.0
        px, srv = self.proxied_server()
        stub = srv.stub()
        self.assertEqual(call(lambda: stub.CreateBook(request("warm", "Warm"),
                                                      timeout=30))[0], "OK")
        lk = self.lock("EXCLUSIVE")
        gate = stub.CreateBook.future(request("f8b-gate", "Gate", rid()), timeout=CALL_BOUND_S)
        self.wait_waiting("the gate's INSERT to wait on the lock")
        ra, rb = rid(), rid()
        a_deadline = time.monotonic() + A_S
        a = stub.CreateBook.future(request("f8b-a", "A", ra), timeout=A_S)
        time.sleep(ORDER_GAP_S)
        b = stub.CreateBook.future(request("f8b-b", "B", rb), timeout=CALL_BOUND_S)
        time.sleep(ORDER_GAP_S)
        # Cut just before the CommandComplete COMMIT of the transaction that binds A's name (not
        # the gate's): it commits, the writer never learns it.
        marked = set()

        def lost_commit(msg):
            if msg.direction == pgproxy.C2S and msg.type == "B" and b"f8b-a" in msg.body:
                marked.add(msg.conn)
                return False
            return pgproxy.is_commit_complete(msg) and msg.conn in marked
        px.cut_on(lost_commit, when="before", name="lost_commit")
        refused_from = time.monotonic()
        px.refuse_new_connections(REFUSE_S)
        lk.release()
        got, res = {}, {}
        for key, fut in (("gate", gate), ("A", a), ("B", b)):
            got[key], res[key] = outcome(fut)
        cuts = px.events("lost_commit")
        self.assertEqual(len(cuts), 1, "the round of A and B lost no COMMIT: %s" % got)
        # The construction held: A was written before its deadline, which passed while the
        # writer could not connect.
        self.assertLess(cuts[0]["t"], a_deadline)
        self.assertLess(a_deadline, refused_from + REFUSE_S)
        self.assertIn(got["A"], ("UNKNOWN", "DEADLINE_EXCEEDED"), res["A"])
        got["A"] = "UNKNOWN or DEADLINE_EXCEEDED"
        self.assertEqual(got, {"gate": "OK", "A": "UNKNOWN or DEADLINE_EXCEEDED", "B": "OK"})
        self.assertEqual((res["B"].name, res["B"].display_name), ("books/f8b-b", "B"))
        self.assertGreaterEqual(px.stats()["refused"], 1)
        self.assertEqual((self.rows_of_request(ra), self.rows_of_request(rb)), (1, 1))
        self.assertEqual(stub.CreateBook(request("f8b-b", "B", rb), timeout=30), res["B"])
        # The server's own answers (its per-call lines are complete once it has stopped): A's
        # never a definite error.
        srv.stop_and_check()
        codes = sorted(l["code"] for l in srv.rpc_lines("/books.v1.BooksService/CreateBook"))
        sys.stderr.write("[f8b] the server answered the creates: %s\n" % codes)
        self.assertEqual([c for c in codes if c not in ("OK", "UNKNOWN", "DEADLINE_EXCEEDED")],
                         [])


class StatementTimeoutTest(OutcomesBase):

    def test_f6_a_thirty_day_deadline_with_statement_timeout_0(self):
        """F6: statement_timeout_ms=0 (documented: no timeout of the store's own) and a create
        with a 30-day deadline: the round's statement_timeout is clamped to INT_MAX ms, and the
        create is OK. 363d47a wrote SET LOCAL statement_timeout = 2592000000, which PostgreSQL
        refuses: every such create, and every retry, UNAVAILABLE."""
        srv = self.start_server(env={"BOOKS_STORE": self.fresh() + "?statement_timeout_ms=0"})
        stub = srv.stub()
        code, res = call(lambda: stub.CreateBook(request("f6", "Thirty days"),
                                                 timeout=30 * 86400))
        self.assertEqual(code, "OK", res)
        self.assertEqual(res.name, "books/f6")
        r = rid()
        code, res = call(lambda: stub.CreateBook(request("f6-id", "Thirty days", r),
                                                 timeout=30 * 86400))
        self.assertEqual(code, "OK", res)
        self.assertEqual(self.rows(), ["books/f6", "books/f6-id"])


class LateCancelTest(OutcomesBase):

    def test_f3_a_late_cancel_does_not_hit_the_next_read(self):
        """F3: one reader, no record cache, through a proxy that delays NEW connections by 1.5 s
        (a cancel request is one). GetBook #1 waits on a lock past its deadline: DEADLINE_EXCEEDED,
        and its reader sends a cancel, which the proxy holds. The lock goes, #1's query ends; the
        lock is taken again and GetBook #2 (long deadline) is sent before the cancel has arrived.
        Now the reader sends nothing until its cancel has returned, so the cancel finds the
        backend idle and #2 is OK. 363d47a sent #2 at once and the late cancel cancelled it:
        DEADLINE_EXCEEDED (57014) or UNAVAILABLE."""
        DELAY_MS = 1500
        px, srv = self.proxied_server("?pool=1&cache_mb=0")
        stub = srv.stub()
        made = stub.CreateBook(request("f3", "Read me"), timeout=30)
        self.assertEqual(stub.GetBook(GetBookRequest(name="books/f3"), timeout=30), made)
        # The server's connections (a writer, one reader) exist; only later ones are delayed.
        self.assertTrue(all(c["kind"] == "session" and c["state"] == "open"
                            for c in px.connections()), px.connections())
        px.delay_new_connections(DELAY_MS)
        lk = self.lock("ACCESS EXCLUSIVE")
        code1, res1 = call(lambda: stub.GetBook(GetBookRequest(name="books/f3"), timeout=0.5))
        self.assertEqual(code1, "DEADLINE_EXCEEDED", res1)
        harness.wait_for(lambda: px.stats()["delayed"] >= 1, timeout=10,
                         what="the reader's cancel to connect (and be delayed)")
        delayed_at = time.monotonic()
        lk.release()
        harness.wait_for(lambda: self.waiting() == 0, timeout=10,
                         what="#1's query to end once the lock is gone")
        lk2 = self.lock("ACCESS EXCLUSIVE")
        # The construction: #2 goes out while the cancel is still held by the proxy.
        self.assertEqual(px.stats()["cancel_requests"], 0,
                         "the cancel arrived before #2 was sent: the machine was too slow for "
                         "this construction")
        second = stub.GetBook.future(GetBookRequest(name="books/f3"), timeout=CALL_BOUND_S)
        sys.stderr.write("[f3] #2 sent %.2f s after the cancel's connection was accepted (it is "
                         "held %.1f s)\n" % (time.monotonic() - delayed_at, DELAY_MS / 1000.0))
        harness.wait_for(lambda: px.stats()["cancel_requests"] >= 1 and all(
            c["kind"] == "session" for c in px.connections()),
            timeout=15, what="the cancel to reach PostgreSQL and be done")
        lk2.release()
        code2, res2 = outcome(second)
        self.assertEqual(code2, "OK", res2)
        self.assertEqual(res2, made)


if __name__ == "__main__":
    unittest.main()
