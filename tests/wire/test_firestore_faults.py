"""The firestore: store as production Firestore behaves (issue 23): books-server through the fault
front (tests/support/fsfront.py) in front of Google's emulator, one emulator for the module, a
front and a collection for each test.

  1. start-up waits out PERMISSION_DENIED / UNAUTHENTICATED (one WARNING line per attempt naming
     roles/datastore.user), exits 1 naming the role when the refusal outlasts startup_timeout_s;
     after start-up a refusal is FAILED_PRECONDITION STORE_REFUSED, not retried;
  2. throttling (RESOURCE_EXHAUSTED) is retried within the caller's deadline: 40% of writes
     throttled for 10 s under 8 writers, every create OK and made once; throttling that outlasts
     the deadline is UNAVAILABLE STORE_THROTTLED with RetryInfo, before the deadline, for writes
     and reads; never STORE_FULL;
  3. reads are retried: every first attempt failing UNAVAILABLE, INTERNAL or RESOURCE_EXHAUSTED,
     GetBook and ListBooks (two pages) are OK within 5 s; failures that outlast a short deadline
     are UNAVAILABLE before it;
  4. the byte bound max_request_bytes: 300 maximal creates at once in BatchWrites of at most
     9 MiB (more than the emulator's 4 MiB: the front splits them), in Commits of at most
     4 MiB - 64 KiB by default against the emulator; a bad value refuses to start;
  5. a create whose reply was lost is OK or UNKNOWN (COMMIT_OUTCOME_UNKNOWN), never a definite
     error, and its book exists once;
  6. health follows reachability (the front stopped and started again on its port) and SIGTERM
     with calls held in the front ends every call and exits 0;
  10. a document another tool wrote that is not a book is named (its path and the field) in
     GetBook's and ListBooks's DATA_LOSS, its ErrorInfo metadata `record` and an ERROR log line.

Against another binary (e.g. the one before issue 23):
  cd tests/wire && BOOKS_SERVER=/work/base/build/books-server /usr/bin/python3 -m unittest -v \\
      test_firestore_faults
The measured numbers are printed to stderr, one "[measure] ..." line each.
"""

import json
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
import fsdocs  # noqa: E402
import fsemulator  # noqa: E402
import fsfront  # noqa: E402

SC = grpc.StatusCode
health_pb2 = harness.health_pb2
error_details_pb2 = harness.error_details_pb2
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

PROJECT = "books-faults"
ROLE = "roles/datastore.user"
DEFAULT_STARTUP_TIMEOUT_S = 600          # store.c and README: covers IAM propagation (about 2, sometimes 7+ minutes)
DEFAULT_MAX_REQUEST_BYTES = 9437184      # 9 MiB
EMULATOR_MAX_REQUEST_BYTES = 4128768     # 4 MiB - 64 KiB: the default with FIRESTORE_EMULATOR_HOST
EMULATOR = None
_counter = [0]


def setUpModule():
    global EMULATOR
    EMULATOR = fsemulator.Emulator.start()


def tearDownModule():
    if EMULATOR:
        EMULATOR.stop()


def fresh_collection():
    _counter[0] += 1
    return "x%d_%d" % (os.getpid(), _counter[0])


def measure(text, *args):
    sys.stderr.write("[measure] %s\n" % (text % args))
    sys.stderr.flush()


def rid():
    return str(uuid.uuid4())


def maximal_book(tag):
    """The largest book the server accepts (README "API rules": display_name 1-1024 bytes, 1-100
    authors of 1-512 bytes, publisher 1-512 bytes), told apart by `tag` at the start of each."""
    def fill(n, c):
        head = "%s " % tag
        return (head + c * n)[:n]
    return make_book(fill(1024, "t"), [fill(512, chr(ord("a") + k % 26)) for k in range(100)],
                     fill(512, "p"))


def retry_infos(d):
    """The google.rpc.RetryInfo details of an ErrorDetails."""
    out = []
    if d.status is not None:
        for a in d.status.details:
            if a.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                m = error_details_pb2.RetryInfo()
                a.Unpack(m)
                out.append(m)
    return out


def code_of(fn):
    try:
        fn()
        return SC.OK, None
    except grpc.RpcError as e:
        return e.code(), e


class DropThenDenyFront(fsfront.Front):
    """apply_then_drop() whose drop opens deny(None) before the client hears of it, so the
    store's retry of that write meets PERMISSION_DENIED whatever its backoff."""

    deny_after_drop = False

    def _drop(self, method, drop, context):
        if self.deny_after_drop:
            self.deny(None)
        return super()._drop(method, drop, context)


class FaultsTestCase(harness.WireTestCase):
    front_class = fsfront.Front

    def setUp(self):
        self.front = self.front_class()
        self.addCleanup(self.front.stop)
        self.front.start(EMULATOR.host)
        self.collection = fresh_collection()

    def store_uri(self, extra=""):
        return "firestore://%s?collection=%s%s" % (PROJECT, self.collection, extra)

    def serve(self, extra="", wait=True, label="fs", args=(), front_host=None):
        env = {"BOOKS_STORE": self.store_uri(extra),
               "FIRESTORE_EMULATOR_HOST": front_host or self.front.host}
        return self.start_server(*args, env=env, wait=wait, label=label)

    def doc(self, doc_id):
        return fsdocs.get_document(EMULATOR.host, PROJECT, self.collection, doc_id)

    def doc_path(self, doc_id):
        return fsdocs.document_name(PROJECT, self.collection, doc_id)

    def request_book(self, request_id):
        """The name the request document of `request_id` maps to (None: no such document)."""
        doc = fsdocs.get_document(EMULATOR.host, PROJECT, self.collection + "_requests",
                                  request_id)
        return None if doc is None else doc["fields"]["book"]["stringValue"]

    def all_books(self, srv):
        return harness.list_all(srv.stub(), page_size=1000, timeout=60)[0]

    def wait_serving_service(self, srv, timeout):
        """Polls until the server logged "listening" and Check("books.v1.BooksService") says
        SERVING; returns the monotonic time it did. Fails when the server exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if srv.port is None:
                for line in srv.log_lines(strict=False):
                    if line.get("message") == "listening" and isinstance(line.get("port"), int):
                        srv.port = line["port"]
            if srv.port is not None and harness.health_status(srv, timeout=2) == SERVING:
                return time.monotonic()
            if not srv.running():
                self.fail("the server exited with %s before SERVING\n%s" %
                          (srv.returncode, srv.output_tail()))
            time.sleep(0.02)
        self.fail("not SERVING within %.0f s\n%s" % (timeout, srv.output_tail()))

    def ok(self, call, what):
        """call()'s result; a failure fails the test naming `what` and the error's details."""
        try:
            return call()
        except grpc.RpcError as e:
            self.fail("%s: %s" % (what, harness.ErrorDetails(e).describe()))

    def check_retry_info(self, d, seconds=1):
        infos = retry_infos(d)
        self.assertEqual(len(infos), 1, "want one RetryInfo: " + d.describe())
        self.assertEqual((infos[0].retry_delay.seconds, infos[0].retry_delay.nanos),
                         (seconds, 0), d.describe())

    def expect_store_throttled(self, call, deadline_s, what):
        """call(timeout) must fail UNAVAILABLE STORE_THROTTLED with RetryInfo(1 s) before the
        caller's deadline; returns how long it took."""
        t0 = time.monotonic()
        code, err = code_of(lambda: call(deadline_s))
        took = time.monotonic() - t0
        self.assertIsNotNone(err, "%s: answered OK while throttled" % what)
        d = self.check_error(err, SC.UNAVAILABLE, reason="STORE_THROTTLED")
        self.check_retry_info(d)
        self.assertLess(took, deadline_s, "%s: answered after the caller's deadline" % what)
        return took


# ---------------------------------------------------------------------------------------------
# 1. Start-up waits out IAM.

class StartupTest(FaultsTestCase):

    def refusal_lines(self, srv):
        return [line for line in srv.log_lines(strict=False)
                if line.get("severity") == "WARNING" and ROLE in str(line.get("message", ""))
                and "attempt" in line]

    def check_attempt_lines(self, srv, code, window_s):
        lines = self.refusal_lines(srv)
        ctx = "\n".join(json.dumps(line) for line in lines) + "\n" + srv.output_tail()
        self.assertGreaterEqual(len(lines), 2, "want a WARNING line per refused attempt: " + ctx)
        self.assertEqual([line["attempt"] for line in lines], list(range(1, len(lines) + 1)),
                         ctx)
        for line in lines:
            self.assertEqual(line.get("code"), code, ctx)
            self.assertEqual(line.get("startup_timeout_s"), lines[0].get("startup_timeout_s"),
                             ctx)
            self.assertIsInstance(line.get("startup_timeout_s"), int, ctx)
            self.assertIsInstance(line.get("waited_ms"), int, ctx)
        waited = [line["waited_ms"] for line in lines]
        self.assertEqual(waited, sorted(waited), ctx)
        self.assertLessEqual(waited[-1], window_s * 1000 + 1000, ctx)
        # Every refused attempt was a call the front refused (one line per attempt, at most).
        self.assertLessEqual(len(lines), self.front.faults()["denied"], ctx)
        # Backoff, not a tight loop: 0.5 s first, x1.5, at most 5 s between attempts.
        stamps = [_parse_time(line["time"]) for line in lines]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        for g in gaps:
            self.assertGreaterEqual(g, 0.4, "attempts %.3f s apart: %s" % (g, ctx))
            self.assertLessEqual(g, 6.0, "attempts %.3f s apart: %s" % (g, ctx))
        return lines, gaps

    def window_then_serving(self, code, window_s):
        self.front.deny(window_s, code=code)
        window_end = time.monotonic() + window_s
        srv = self.serve(wait=False, label="fs-iam")
        serving_at = self.wait_serving_service(srv, window_s + 30)
        after = serving_at - window_end
        lines, gaps = self.check_attempt_lines(srv, code.name, window_s)
        measure("%s window of %.0f s: SERVING %.2f s after its end; %d refused attempts, "
                "%d calls denied, gaps %s s", code.name, window_s, after, len(lines),
                self.front.faults()["denied"], ", ".join("%.2f" % g for g in gaps))
        self.assertGreater(serving_at, window_end - 0.2, "SERVING while still denied")
        self.assertLessEqual(after, 6.0, "SERVING %.2f s after the window's end (max backoff "
                             "5 s)" % after)
        return srv, lines

    def test_permission_denied_window_then_serving_then_store_refused(self):
        srv, _ = self.window_then_serving(SC.PERMISSION_DENIED, 5.0)
        stub = srv.stub()
        made = stub.CreateBook(CreateBookRequest(book_id="after-iam", book=make_book()),
                               timeout=20)
        self.assertEqual(made.name, "books/after-iam")
        # After start-up a refusal is the caller's to fix: FAILED_PRECONDITION, not retried.
        self.front.deny(None)
        denied = self.front.faults()["denied"]
        t0 = time.monotonic()
        self.expect_error(lambda: stub.CreateBook(CreateBookRequest(
            book_id="refused", book=make_book()), timeout=10), SC.FAILED_PRECONDITION,
            reason="STORE_REFUSED")
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(self.front.faults()["denied"] - denied, 1, "a refusal was retried")
        self.front.clear()

    def test_unauthenticated_window_then_serving(self):
        srv, lines = self.window_then_serving(SC.UNAUTHENTICATED, 3.0)
        self.assertEqual(srv.stub().CreateBook(CreateBookRequest(book_id="u", book=make_book()),
                                               timeout=20).name, "books/u")
        # No startup_timeout_s in the URI: the default, which covers IAM propagation.
        self.assertEqual(lines[0]["startup_timeout_s"], DEFAULT_STARTUP_TIMEOUT_S,
                         "the default startup_timeout_s")

    def test_refusal_outlasting_startup_timeout_exits_1_naming_the_role(self):
        self.front.deny(None)
        t0 = time.monotonic()
        srv = self.serve("&startup_timeout_s=3", wait=False, label="fs-iam-timeout")
        srv.expect_clean_exit = False
        rc = srv.wait(20)
        took = time.monotonic() - t0
        measure("PERMISSION_DENIED throughout, startup_timeout_s=3: exit %s after %.2f s", rc,
                took)
        self.assertEqual(rc, 1, srv.output_tail())
        self.assertGreaterEqual(took, 2.8, "gave up before startup_timeout_s: " +
                                srv.output_tail())
        self.assertLessEqual(took, 8.0, srv.output_tail())
        # The final word (stderr, or a log line that is not an attempt's) names role and code.
        texts = [srv.stderr_text()] + [str(line.get("message", "")) for line in
                                       srv.log_lines(strict=False) if "attempt" not in line]
        self.assertTrue(any(ROLE in t and "PERMISSION_DENIED" in t for t in texts),
                        srv.output_tail())
        self.assertGreaterEqual(len(self.refusal_lines(srv)), 2, srv.output_tail())


def _parse_time(text):
    """Seconds of an RFC 3339 UTC time of the log ("2026-12-08T00:52:14.384979Z")."""
    import datetime
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


# ---------------------------------------------------------------------------------------------
# 2. Throttling.

class ThrottleTest(FaultsTestCase):

    def test_forty_percent_of_writes_throttled_for_ten_seconds(self):
        srv = self.serve(label="fs-throttle")
        clients, window_s = 8, 10.0
        channels = [srv.channel() for _ in range(clients)]
        lock = threading.Lock()
        answers = {}         # code name -> count, every answer a client got
        made = []            # (display_name, request_id or None, name) of each acknowledged
        finals = {}          # code name -> count, each create's last answer
        stop_at = time.monotonic() + window_s
        self.front.throttle(0.4, window_s, methods=fsfront.WRITES)

        def count(d, code):
            d[code.name] = d.get(code.name, 0) + 1

        def writer(k):
            stub = srv.stub(channels[k])
            with_rid = k % 2 == 0
            i = 0
            while time.monotonic() < stop_at and i < 5000:
                title = "w%d-%d" % (k, i)
                req = CreateBookRequest(book=make_book(title, ["A %d" % k], "P"),
                                        request_id=rid() if with_rid else "")
                got = []
                for attempt in range(4 if with_rid else 1):
                    code, err = code_of(lambda: got.append(stub.CreateBook(req, timeout=20)))
                    with lock:
                        count(answers, code)
                    if code != SC.UNAVAILABLE:
                        break
                with lock:
                    count(finals, code)
                    if code == SC.OK:
                        made.append((title, req.request_id or None, got[0].name))
                i += 1

        t0 = time.monotonic()
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(window_s + 60)
        took = time.monotonic() - t0
        self.assertFalse(any(t.is_alive() for t in threads))
        faults = self.front.faults()
        measure("40%% of writes throttled for %.0f s, %d writers (half with request_id): "
                "%d creates in %.1f s = %.0f creates/s; answers %s; final %s; front throttled "
                "%d calls, Commit %s, BatchWrite %s", window_s, clients, len(made), took,
                len(made) / took, answers, finals, faults["throttled"],
                self.front.codes("Commit"), self.front.codes("BatchWrite"))
        self.assertGreater(faults["throttled"], 0)
        self.assertNotIn("RESOURCE_EXHAUSTED", answers, "STORE_FULL for throttling")
        self.assertEqual(set(finals), {"OK"}, "every create OK: %s" % finals)
        # Each acknowledged create made exactly one book; each request_id one.
        books = self.all_books(srv)
        by_title = {}
        for b in books:
            by_title.setdefault(b.display_name, []).append(b.name)
        self.assertEqual(len(books), len(made),
                         "documents %d, acknowledged creates %d" % (len(books), len(made)))
        for title, request_id, name in made:
            self.assertEqual(by_title.get(title), [name], title)
            if request_id:
                self.assertEqual(self.request_book(request_id), name, request_id)

    def test_writes_throttled_past_the_deadline_are_store_throttled(self):
        srv = self.serve(label="fs-throttle-all")
        stub = srv.stub()
        self.front.throttle(1.0, None, methods=fsfront.WRITES)
        for what, req in (("without request_id", CreateBookRequest(book_id="t1",
                                                                   book=make_book())),
                          ("with request_id", CreateBookRequest(book_id="t2", book=make_book(),
                                                                request_id=rid()))):
            before = self.front.faults()["throttled"]
            took = self.expect_store_throttled(
                lambda timeout: stub.CreateBook(req, timeout=timeout), 3.0, what)
            tries = self.front.faults()["throttled"] - before
            measure("create %s, every write throttled, 3 s deadline: UNAVAILABLE "
                    "STORE_THROTTLED after %.2f s, %d attempts", what, took, tries)
            self.assertGreaterEqual(tries, 3, "RESOURCE_EXHAUSTED not retried (%s)" % what)
        self.front.clear()
        self.assertIsNone(self.doc("t1"))
        self.assertIsNone(self.doc("t2"))

    def test_reads_throttled_past_the_deadline_are_store_throttled(self):
        srv = self.serve("&cache_mb=0", label="fs-throttle-reads")
        stub = srv.stub()
        made = stub.CreateBook(CreateBookRequest(book_id="r1", book=make_book()), timeout=20)
        self.front.throttle(1.0, None, methods=fsfront.READS)
        for what, call in (
                ("GetBook", lambda timeout: stub.GetBook(GetBookRequest(name=made.name),
                                                         timeout=timeout)),
                ("ListBooks", lambda timeout: stub.ListBooks(ListBooksRequest(page_size=5),
                                                             timeout=timeout))):
            before = self.front.faults()["throttled"]
            took = self.expect_store_throttled(call, 3.0, what)
            tries = self.front.faults()["throttled"] - before
            measure("%s, every read throttled, 3 s deadline: UNAVAILABLE STORE_THROTTLED after "
                    "%.2f s, %d attempts", what, took, tries)
            self.assertGreaterEqual(tries, 3, "%s: RESOURCE_EXHAUSTED not retried" % what)
        self.front.clear()
        self.assertEqual(stub.GetBook(GetBookRequest(name=made.name), timeout=20), made)


# ---------------------------------------------------------------------------------------------
# 3. Reads retried.

class ReadRetryTest(FaultsTestCase):

    def test_every_first_read_failing(self):
        srv = self.serve("&cache_mb=0", label="fs-reads")
        stub = srv.stub()
        ids = ["b%d" % i for i in range(5)]
        harness.create_many(stub, ids, batch=5, timeout=20)
        for code in (SC.UNAVAILABLE, SC.INTERNAL, SC.RESOURCE_EXHAUSTED):
            failed = self.front.faults()["failed_reads"]
            self.front.fail_first_reads(code)
            times = {}
            t0 = time.monotonic()
            got = self.ok(lambda: stub.GetBook(GetBookRequest(name="books/b3"), timeout=5),
                          "GetBook, first reads %s" % code.name)
            times["GetBook"] = time.monotonic() - t0
            self.assertEqual(got.name, "books/b3")
            t0 = time.monotonic()
            page = self.ok(lambda: stub.ListBooks(ListBooksRequest(page_size=2), timeout=5),
                           "ListBooks page 1, first reads %s" % code.name)
            times["ListBooks page 1"] = time.monotonic() - t0
            self.assertEqual([b.name for b in page.books], ["books/b0", "books/b1"])
            t0 = time.monotonic()
            token = page.next_page_token
            page = self.ok(lambda: stub.ListBooks(ListBooksRequest(page_size=2, page_token=token),
                                                  timeout=5),
                           "ListBooks page 2, first reads %s" % code.name)
            times["ListBooks page 2"] = time.monotonic() - t0
            self.assertEqual([b.name for b in page.books], ["books/b2", "books/b3"])
            self.front.clear("fail_first_reads")
            n = self.front.faults()["failed_reads"] - failed
            measure("every first read %s (cache_mb=0, 5 s deadline): %s; %d reads failed first",
                    code.name, ", ".join("%s %.3f s" % kv for kv in times.items()), n)
            self.assertGreaterEqual(n, 3, "the reads' first attempts did not fail")

    def test_a_firestore_deadline_exceeded_is_retried_while_time_remains(self):
        # Firestore's own DEADLINE_EXCEEDED ("A deadline was exceeded on the server."), answered
        # at once with 5 s of the caller's left: the read goes again.
        srv = self.serve("&cache_mb=0", label="fs-reads-deadline")
        stub = srv.stub()
        stub.CreateBook(CreateBookRequest(book_id="e1", book=make_book()), timeout=20)
        self.front.fail_first_reads(SC.DEADLINE_EXCEEDED)
        times = {}
        for what, call in (
                ("GetBook", lambda: stub.GetBook(GetBookRequest(name="books/e1"), timeout=5)),
                ("ListBooks", lambda: stub.ListBooks(ListBooksRequest(page_size=5),
                                                     timeout=5))):
            failed = self.front.faults()["failed_reads"]
            t0 = time.monotonic()
            self.ok(call, "%s after Firestore's DEADLINE_EXCEEDED with 5 s left" % what)
            times[what] = time.monotonic() - t0
            self.assertEqual(self.front.faults()["failed_reads"], failed + 1)
        self.front.clear()
        measure("every first read DEADLINE_EXCEEDED (Firestore's), 5 s deadline: %s",
                ", ".join("%s OK after %.3f s" % kv for kv in times.items()))

    def test_failures_outlasting_a_short_deadline_are_unavailable_before_it(self):
        srv = self.serve("&cache_mb=0", label="fs-reads-down")
        stub = srv.stub()
        stub.CreateBook(CreateBookRequest(book_id="d1", book=make_book()), timeout=20)
        self.front.fail_reads(100000)
        for what, call in (
                ("GetBook", lambda: stub.GetBook(GetBookRequest(name="books/d1"), timeout=1.0)),
                ("ListBooks", lambda: stub.ListBooks(ListBooksRequest(page_size=5),
                                                     timeout=1.0))):
            before = self.front.faults()["failed_reads"]
            t0 = time.monotonic()
            code, err = code_of(call)
            took = time.monotonic() - t0
            tries = self.front.faults()["failed_reads"] - before
            d = harness.ErrorDetails(err) if err else None
            measure("%s, every read UNAVAILABLE, 1 s deadline: %s %s after %.2f s, %d attempts",
                    what, code.name, d.error_info.reason if d and d.error_info else "-", took,
                    tries)
            self.assertEqual(code, SC.UNAVAILABLE, d.describe() if d else "")
            self.assertLess(took, 1.0)
            self.assertGreaterEqual(tries, 2, "%s: UNAVAILABLE not retried" % what)
        self.front.clear()


# ---------------------------------------------------------------------------------------------
# 4. The byte bound.

class ByteBoundTest(FaultsTestCase):

    def three_hundred_at_once(self, srv, with_rid):
        # Writes held 1.5 s in the front, so that the 300 (16 MB, which the client takes about a
        # second to send) are queued together behind the first batch: one round larger than the
        # bound, which goes out as several requests at once.
        self.front.delay(1500, methods=fsfront.WRITES)
        # Six connections of their own (grpcio shares one between channels to the same target
        # unless told not to; the server takes at most 100 calls a connection at once).
        channels = [srv.channel(options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(6)]
        stubs = [srv.stub(ch) for ch in channels]
        reqs = [CreateBookRequest(book=maximal_book("m%03d" % i),
                                  request_id=rid() if with_rid else "") for i in range(300)]
        t0 = time.monotonic()
        futs = [stubs[i % len(stubs)].CreateBook.future(r, timeout=90) for i, r in
                enumerate(reqs)]
        codes, made = {}, []
        for f in futs:
            code, err = code_of(lambda: made.append(f.result()))
            codes[code.name] = codes.get(code.name, 0) + 1
            if err is not None and len(codes) <= 3 and code != SC.OK:
                sys.stderr.write("[fault] %s\n" % harness.ErrorDetails(err).describe())
        took = time.monotonic() - t0
        self.front.clear("delay")
        return codes, made, took

    def check_books(self, srv, made):
        books = self.all_books(srv)
        self.assertEqual(sorted(b.name for b in books), sorted(b.name for b in made))
        self.assertEqual(sorted(b.display_name[:4] for b in books),
                         ["m%03d" % i for i in range(300)])

    def test_300_maximal_creates_in_batchwrites_up_to_9_mib(self):
        srv = self.serve("&max_request_bytes=%d" % DEFAULT_MAX_REQUEST_BYTES, label="fs-bytes")
        codes, made, took = self.three_hundred_at_once(srv, with_rid=False)
        st, faults = self.front.stats()["BatchWrite"], self.front.faults()
        largest = st["max_size"]
        measure("300 maximal creates without request_id, max_request_bytes=9437184: %s in %.1f "
                "s; %d BatchWrites, largest %d bytes, sizes in arrival order %s; front split %d of "
                "them into %d; too_large %d", codes, took, st["calls"], largest, st["sizes"],
                faults["split_calls"], faults["split_parts"], faults["too_large"])
        self.assertEqual(faults["too_large"], 0, "a request over production's 10 MiB")
        self.assertEqual(codes, {"OK": 300})
        self.assertLessEqual(largest, DEFAULT_MAX_REQUEST_BYTES)
        self.assertGreater(largest, fsfront.EMULATOR_MAX_MESSAGE_BYTES,
                           "no request over 4 MiB: the batches were not large")
        self.check_books(srv, made)

    def test_300_maximal_creates_with_request_ids_in_commits_within_the_emulator(self):
        srv = self.serve(label="fs-bytes-rid")
        codes, made, took = self.three_hundred_at_once(srv, with_rid=True)
        st, faults = self.front.stats()["Commit"], self.front.faults()
        largest = st["max_size"]
        measure("300 maximal creates with request_id, emulator default bound: %s in %.1f s; "
                "%d Commits, largest %d bytes, sizes in arrival order %s; too_large %d", codes, took,
                st["calls"], largest, st["sizes"], faults["too_large"])
        self.assertEqual(faults["too_large"], 0)
        self.assertEqual(codes, {"OK": 300})
        self.assertLessEqual(largest, EMULATOR_MAX_REQUEST_BYTES)
        self.check_books(srv, made)

    def test_max_request_bytes_bounds(self):
        for bad in (10485761, 65535):
            srv = self.serve("&max_request_bytes=%d" % bad, wait=False, label="fs-bytes-bad")
            srv.expect_clean_exit = False
            self.assertEqual(srv.wait(20), 1, srv.output_tail())
            said = srv.stderr_text() + srv.stdout_bytes().decode(errors="replace")
            for word in ("max_request_bytes", "65536", "10485760"):
                self.assertIn(word, said, "the refusal of %d does not name %s" % (bad, word))
        for good in (65536, 10485760):
            srv = self.serve("&max_request_bytes=%d" % good, label="fs-bytes-good")
            self.assertEqual(srv.stub().CreateBook(CreateBookRequest(
                book_id="g%d" % good, book=make_book()), timeout=20).name, "books/g%d" % good)
            srv.stop_and_check()


# ---------------------------------------------------------------------------------------------
# 5. Maybe-written creates.

class LostReplyTest(FaultsTestCase):
    front_class = DropThenDenyFront

    def count_titled(self, srv, title):
        return sum(1 for b in self.all_books(srv) if b.display_name == title)

    def test_lost_reply_then_retry(self):
        srv = self.serve(label="fs-lost")
        stub = srv.stub()
        # With a request_id: OK, one book.
        self.front.apply_then_drop(1, fsfront.WRITES)
        req = CreateBookRequest(book=make_book("lost-rid"), request_id=rid())
        got = self.ok(lambda: stub.CreateBook(req, timeout=20), "a lost reply with request_id")
        self.assertEqual(self.front.faults()["dropped"], 1)
        self.assertEqual(self.count_titled(srv, "lost-rid"), 1)
        self.assertIsNotNone(self.doc(got.name.split("/", 1)[1]))
        self.assertEqual(self.request_book(req.request_id), got.name)
        self.assertEqual(stub.CreateBook(req, timeout=20), got)
        # Without one, a chosen id: OK (its write_id recognised) or UNKNOWN, never ALREADY_EXISTS.
        outcomes = {}
        for what, req in (("chosen id", CreateBookRequest(book_id="lost-own",
                                                          book=make_book("lost-own"))),
                          ("assigned id", CreateBookRequest(book=make_book("lost-assigned")))):
            self.front.apply_then_drop(1, fsfront.WRITES)
            dropped = self.front.faults()["dropped"]
            code, err = code_of(lambda: stub.CreateBook(req, timeout=20))
            outcomes[what] = code.name
            self.assertEqual(self.front.faults()["dropped"], dropped + 1)
            self.assertIn(code, (SC.OK, SC.UNKNOWN),
                          harness.ErrorDetails(err).describe() if err else "")
            if code == SC.UNKNOWN:
                self.check_error(err, SC.UNKNOWN, reason="COMMIT_OUTCOME_UNKNOWN")
            self.assertEqual(self.count_titled(srv, req.book.display_name), 1, what)
        measure("a lost reply (applied, then UNAVAILABLE), retried: with request_id OK; "
                "without: %s", outcomes)
        self.assertEqual(self.doc("lost-own")["fields"]["display_name"]["stringValue"],
                         "lost-own")

    def test_lost_reply_then_refused_is_unknown(self):
        srv = self.serve(label="fs-lost-denied")
        stub = srv.stub()
        outcomes = {}
        first_req = CreateBookRequest(book_id="lr", book=make_book("lr"), request_id=rid())
        for what, req in (("with request_id", first_req),
                          ("without request_id", CreateBookRequest(book_id="ln",
                                                                   book=make_book("ln")))):
            self.front.deny_after_drop = True
            self.front.apply_then_drop(1, fsfront.WRITES)
            code, err = code_of(lambda: stub.CreateBook(req, timeout=10))
            denied = self.front.faults()["denied"]
            self.front.deny_after_drop = False
            self.front.clear()
            outcomes[what] = (code.name, denied)
            self.assertIsNotNone(err, "%s: OK though its retry was refused" % what)
            self.check_error(err, SC.UNKNOWN, reason="COMMIT_OUTCOME_UNKNOWN")
            doc = self.doc(req.book_id)
            self.assertIsNotNone(doc, "%s: the first attempt's book" % what)
            self.assertEqual(doc["fields"]["display_name"]["stringValue"], req.book.display_name)
        measure("a lost reply, then PERMISSION_DENIED on the retry: %s", outcomes)
        # Settled afterwards: the request_id finds the book its first attempt made.
        self.assertEqual(self.request_book(first_req.request_id), "books/lr")
        again = self.ok(lambda: stub.CreateBook(first_req, timeout=20), "the retry of lr")
        self.assertEqual(again.name, "books/lr")
        self.assertEqual(len([b for b in self.all_books(srv) if b.name in ("books/lr",
                                                                           "books/ln")]), 2)


# ---------------------------------------------------------------------------------------------
# 6. Health and shutdown.

class HealthAndShutdownTest(FaultsTestCase):

    def test_health_follows_the_front(self):
        srv = self.serve("&cache_mb=0", label="fs-health")
        stub = srv.stub()
        made = stub.CreateBook(CreateBookRequest(book_id="h1", book=make_book()), timeout=20)
        port = self.front.port
        self.front.stop()
        t0 = time.monotonic()
        harness.wait_for(lambda: harness.health_status(srv) == NOT_SERVING, timeout=15,
                         what="NOT_SERVING with the front's port closed")
        down = time.monotonic() - t0
        # A Watch started now reports the state current now.
        watch = srv.health().Watch(health_pb2.HealthCheckRequest(service=harness.SERVICE),
                                   timeout=60)
        first = next(watch)
        self.assertEqual(first.status, NOT_SERVING, "Watch began with a stale state")
        outcomes = {}
        for what, call in (
                ("GetBook", lambda: stub.GetBook(GetBookRequest(name=made.name), timeout=3)),
                ("ListBooks", lambda: stub.ListBooks(ListBooksRequest(page_size=5), timeout=3)),
                ("CreateBook", lambda: stub.CreateBook(CreateBookRequest(
                    book_id="h2", book=make_book(), request_id=rid()), timeout=3))):
            t1 = time.monotonic()
            code, err = code_of(call)
            outcomes[what] = "%s %.2f s" % (code.name, time.monotonic() - t1)
            self.assertIsNotNone(err, what)
            if what == "CreateBook" and code == SC.UNKNOWN:
                continue  # sent on a breaking channel: maybe written
            d = self.check_error(err, SC.UNAVAILABLE, reason="STORE_UNAVAILABLE")
            self.check_retry_info(d)
        self.front.start(EMULATOR.host, port=port)
        t1 = time.monotonic()
        harness.wait_for(lambda: harness.health_status(srv) == SERVING, timeout=30,
                         what="SERVING again with the front back on its port")
        up = time.monotonic() - t1
        statuses = [first.status]
        for msg in watch:
            statuses.append(msg.status)
            if msg.status == SERVING:
                break
        watch.cancel()
        measure("front stopped: NOT_SERVING after %.2f s; calls %s; front back: SERVING after "
                "%.2f s; Watch saw %s", down, outcomes, up, statuses)
        self.assertEqual(statuses[-1], SERVING)
        self.assertEqual(stub.GetBook(GetBookRequest(name=made.name), timeout=20), made)
        stub.CreateBook(CreateBookRequest(book_id="h3", book=make_book()), timeout=20)

    def sigterm_with_calls_held(self, grace_ms):
        srv = self.serve("&cache_mb=0", label="fs-sigterm", args=(
            "--shutdown-grace-ms", str(grace_ms)))
        stub = srv.stub()
        stub.CreateBook(CreateBookRequest(book_id="s0", book=make_book()), timeout=20)
        self.front.delay(2000)
        futs = []
        for i in range(6):
            futs.append(("CreateBook", "s%d" % (i + 1), stub.CreateBook.future(CreateBookRequest(
                book_id="s%d" % (i + 1), book=make_book(),
                request_id=rid() if i % 2 else ""), timeout=30)))
        for i in range(3):
            futs.append(("GetBook", None, stub.GetBook.future(GetBookRequest(name="books/s0"),
                                                             timeout=30)))
            futs.append(("ListBooks", None, stub.ListBooks.future(ListBooksRequest(page_size=5),
                                                                 timeout=30)))
        harness.wait_for(lambda: self.front.faults()["delayed"] >= 4, timeout=10,
                         what="calls held in the front")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(grace_ms / 1000.0 + 20)
        took = time.monotonic() - t0
        bound = time.monotonic() + 5
        for _, _, f in futs:
            f.exception(timeout=max(0.01, bound - time.monotonic())) if not f.done() else None
        hung = [what for what, _, f in futs if not f.done()]
        codes = {}
        for what, book_id, f in futs:
            if not f.done():
                continue
            code = f.code() if f.exception() else SC.OK
            codes.setdefault(what, {}).setdefault(code.name, 0)
            codes[what][code.name] += 1
            if what == "CreateBook":
                self.assertIn(code, (SC.OK, SC.UNKNOWN, SC.UNAVAILABLE, SC.CANCELLED),
                              "%s: a definite error for a create cut by shutdown" % book_id)
                if code == SC.OK:
                    self.assertIsNotNone(self.doc(book_id), book_id)
        measure("SIGTERM with %d calls held 2 s in the front, grace %d ms: exit %s after %.2f s; "
                "%s", len(futs), grace_ms, rc, took, codes)
        self.assertEqual(hung, [], "calls without a status after the server exited")
        self.assertEqual(rc, 0, srv.output_tail())
        self.assertLessEqual(took, grace_ms / 1000.0 + 3.0, "exit later than the drain bound")
        srv.check_clean()
        return codes

    def test_sigterm_while_creates_wait_out_throttling(self):
        # Every write throttled; timeout_ms=60000 lets a create keep trying, so its backoff grows
        # (100 ms x1.3: after the 15th attempt the wait is 2.0-3.9 s). SIGTERM right after that
        # attempt: the creates are in flight as much as calls held in the front, and the server
        # must end them and exit 0 within its grace, not sleep out the backoff first.
        grace_ms, attempts = 500, 15
        srv = self.serve("&timeout_ms=60000", label="fs-sigterm-throttled",
                         args=("--shutdown-grace-ms", str(grace_ms)))
        stub = srv.stub()
        self.front.throttle(1.0, None, methods=fsfront.WRITES)
        futs = [stub.CreateBook.future(CreateBookRequest(
            book_id="q%d" % i, book=make_book(), request_id=rid() if i % 2 else ""), timeout=120)
            for i in range(4)]
        bound = time.monotonic() + 45
        while (self.front.faults()["throttled"] < attempts and time.monotonic() < bound and
               not all(f.done() for f in futs)):
            time.sleep(0.002)
        n = self.front.faults()["throttled"]
        self.assertGreaterEqual(n, attempts, "throttled creates not retried %d times in 45 s "
                                "(answered: %s)" % (attempts, [f.code().name for f in futs
                                                               if f.done() and f.exception()]))
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(grace_ms / 1000.0 + 60)
        took = time.monotonic() - t0
        end = time.monotonic() + 5
        for f in futs:
            if not f.done():
                f.exception(timeout=max(0.01, end - time.monotonic()))
        hung = [i for i, f in enumerate(futs) if not f.done()]
        codes = [(f.code() if f.exception() else SC.OK).name for f in futs if f.done()]
        tail = [line.get("message") for line in srv.log_lines(strict=False)
                if line.get("severity") in ("WARNING", "ERROR")][-3:]
        measure("SIGTERM after the %dth throttled attempt, grace %d ms: exit %s after %.2f s; "
                "creates %s; last warnings %s", n, grace_ms, rc, took, codes, tail)
        self.assertEqual(hung, [], "creates without a status after the server exited")
        self.assertEqual(rc, 0, srv.output_tail())
        self.assertLessEqual(took, grace_ms / 1000.0 + 1.0,
                             "exit %.2f s after SIGTERM, grace %d ms: the backoff was slept out"
                             % (took, grace_ms))

    def test_sigterm_with_calls_held_in_the_front_cut_by_the_grace(self):
        self.sigterm_with_calls_held(1000)

    def test_sigterm_with_calls_held_in_the_front_within_the_grace(self):
        codes = self.sigterm_with_calls_held(8000)
        for what, by_code in codes.items():
            self.assertEqual(set(by_code), {"OK"}, "%s: %s" % (what, by_code))


# ---------------------------------------------------------------------------------------------
# 10. Foreign documents named.

class ForeignDocumentTest(FaultsTestCase):

    def check_named(self, err, doc_id, field, ctx=""):
        d = self.check_error(err, SC.DATA_LOSS, reason="STORE_CORRUPT")
        record = d.error_info.metadata.get("record", "")
        path = "documents/%s/%s" % (self.collection, doc_id)
        self.assertIn(path, record, "ErrorInfo metadata record: " + d.describe())
        self.assertIn(path, d.message, "the message does not name the document: " + d.describe())
        said = d.message + " " + " ".join(d.error_info.metadata.values())
        self.assertIn(field, said, "the error does not name the field %s: %s" % (field,
                                                                                  d.describe()))
        return d

    def check_logged(self, srv, doc_id):
        path = "documents/%s/%s" % (self.collection, doc_id)
        harness.wait_for(lambda: any(line.get("severity") == "ERROR" and path in json.dumps(line)
                                     for line in srv.log_lines(strict=False)), timeout=5,
                         what="an ERROR log line naming %s" % path)

    def test_documents_that_are_not_books(self):
        srv = self.serve("&cache_mb=0", label="fs-foreign")
        stub = srv.stub()
        harness.create_many(stub, ["a-1", "a-2", "a-3", "z-1"], batch=4, timeout=20)
        fsdocs.put_document(EMULATOR.host, PROJECT, self.collection, "m-int",
                            {"display_name": "T", "authors": 7, "publisher": "P"})
        fsdocs.put_document(EMULATOR.host, PROJECT, self.collection, "n-untitled",
                            {"authors": ["A"], "publisher": "P"})
        seen = {}
        for doc_id, field in (("m-int", "authors"), ("n-untitled", "display_name")):
            code, err = code_of(lambda: stub.GetBook(GetBookRequest(name="books/" + doc_id),
                                                     timeout=20))
            self.assertIsNotNone(err, "GetBook of %s answered OK" % doc_id)
            d = self.check_named(err, doc_id, field)
            seen[doc_id] = d.message
            self.check_logged(srv, doc_id)
        # A page before it is served; the page that holds it fails naming it.
        page = stub.ListBooks(ListBooksRequest(page_size=2), timeout=20)
        self.assertEqual([b.name for b in page.books], ["books/a-1", "books/a-2"])
        code, err = code_of(lambda: stub.ListBooks(ListBooksRequest(
            page_size=2, page_token=page.next_page_token), timeout=20))
        self.assertIsNotNone(err, "ListBooks over the foreign document answered OK")
        d = self.check_named(err, "m-int", "authors")
        seen["ListBooks page 2"] = d.message
        code, err = code_of(lambda: stub.ListBooks(ListBooksRequest(page_size=50), timeout=20))
        self.assertIsNotNone(err)
        self.check_named(err, "m-int", "authors")
        measure("foreign documents: %s", seen)


if __name__ == "__main__":
    unittest.main()
