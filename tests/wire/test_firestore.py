"""The firestore: store through the wire, against Google's Firestore emulator (issue 19).

One emulator serves the module (tests/support/fsemulator.py: its own process group, killed whole);
each test uses a collection of its own, so tests never see each other's books. The outage and
deadline tests start an emulator of their own, which they stop, freeze and restart.

  - three instances on one collection: read-your-writes across instances, 60 ids raced four ways
    (exactly one OK, three ALREADY_EXISTS each), page tokens across instances, a request_id retried
    on another instance;
  - kill -9 of an instance under 8 writers: every acknowledged create is there;
  - the emulator stopped and started under load: health NOT_SERVING and calls UNAVAILABLE
    meanwhile, served again without restarting books-server;
  - deadlines reach Firestore: with the emulator frozen (SIGSTOP), a 50 ms call ends by 2 s;
  - `firestore:` alone takes its project from GOOGLE_CLOUD_PROJECT, else the metadata server.
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
import fsemulator  # noqa: E402

health_pb2 = harness.health_pb2
content, health_status, wait_for = harness.content, harness.health_status, harness.wait_for
run_creates = harness.run_creates

PROJECT = "books-wire"
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
    return "w%d_%d" % (os.getpid(), _counter[0])


def server(host, collection, label="fs", extra=""):
    return harness.ServerProcess(
        env={"BOOKS_STORE": "firestore://%s?collection=%s%s" % (PROJECT, collection, extra),
             "FIRESTORE_EMULATOR_HOST": host}, label=label)


class ThreeInstancesTest(harness.WireTestCase):

    def setUp(self):
        self.collection = fresh_collection()
        self.servers = [server(EMULATOR.host, self.collection, "fs-%d" % i).start_and_wait()
                        for i in range(3)]

    def tearDown(self):
        for s in self.servers:
            self.assertEqual(s.stop(), 0)

    def test_read_your_writes_across_instances(self):
        a, b, c = (s.stub() for s in self.servers)
        for i in range(20):
            made = a.CreateBook(CreateBookRequest(book_id="ryw-%02d" % i,
                                                  book=make_book("T %d" % i, ["A"], "P")),
                                timeout=30)
            # Acknowledged on one instance: the next read on any other finds it.
            self.assertEqual(b.GetBook(GetBookRequest(name=made.name), timeout=30), made)
            listed = c.ListBooks(ListBooksRequest(page_size=50), timeout=30)
            self.assertIn(made.name, [x.name for x in listed.books])

    def test_sixty_ids_raced_four_ways(self):
        ids = ["race-%02d" % i for i in range(60)]
        stubs = [s.stub(s.channel()) for s in self.servers] + [self.servers[0].stub(
            self.servers[0].channel())]
        outcomes = {i: [] for i in ids}
        lock = threading.Lock()
        start = threading.Barrier(len(stubs))

        def racer(k, stub):
            start.wait()
            for book_id in ids:
                try:
                    stub.CreateBook(CreateBookRequest(book_id=book_id,
                                                      book=make_book("by %d" % k, ["A"], "P")),
                                    timeout=30)
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                with lock:
                    outcomes[book_id].append(code)

        threads = [threading.Thread(target=racer, args=(k, s)) for k, s in enumerate(stubs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for book_id in ids:
            self.assertEqual(sorted(outcomes[book_id]), ["ALREADY_EXISTS"] * 3 + ["OK"],
                             book_id)
        self.assertEqual(len(harness.list_all(self.servers[1].stub(), page_size=25)[0]), 60)

    def test_page_tokens_work_across_instances(self):
        a = self.servers[0].stub()
        names = sorted(a.CreateBook(CreateBookRequest(book_id="tok-%02d" % i,
                                                      book=make_book("T", ["A"], "P")),
                                    timeout=30).name for i in range(25))
        seen, token, k = [], "", 0
        while True:
            stub = self.servers[k % 3].stub()
            page = stub.ListBooks(ListBooksRequest(page_size=7, page_token=token), timeout=30)
            seen += [b.name for b in page.books]
            token = page.next_page_token
            k += 1
            if not token:
                break
        self.assertEqual(seen, names)
        self.assertEqual(k, 4)

    def test_request_id_retried_on_another_instance(self):
        rid = str(uuid.uuid4())
        req = CreateBookRequest(book=make_book("Once", ["A"], "P"), request_id=rid)
        first = self.servers[0].stub().CreateBook(req, timeout=30)
        again = self.servers[1].stub().CreateBook(req, timeout=30)
        self.assertEqual(again, first)
        other = CreateBookRequest(book=make_book("Another", ["A"], "P"), request_id=rid)
        with self.assertRaises(grpc.RpcError) as cm:
            self.servers[2].stub().CreateBook(other, timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(len(harness.list_all(self.servers[2].stub())[0]), 1)


class ProjectTest(harness.WireTestCase):
    """`firestore:` alone: the project from GOOGLE_CLOUD_PROJECT, else from the metadata server
    (here a fake one on loopback, named by GCE_METADATA_HOST as Google's libraries read it)."""

    def serve(self, env):
        env = dict(env, BOOKS_STORE="firestore:?collection=%s" % fresh_collection(),
                   FIRESTORE_EMULATOR_HOST=EMULATOR.host)
        srv = harness.ServerProcess(env=env, label="fs-project").start_and_wait()
        try:
            made = srv.stub().CreateBook(CreateBookRequest(book_id="p1",
                                                           book=make_book("T", ["A"], "P")),
                                         timeout=30)
            self.assertEqual(made.name, "books/p1")
        finally:
            self.assertEqual(srv.stop(), 0)
        listening = [line for line in srv.log_lines() if line.get("message") == "listening"]
        return listening[0]["store"]

    def test_project_from_the_environment(self):
        self.assertTrue(self.serve({"GOOGLE_CLOUD_PROJECT": "env-project"})
                        .startswith("firestore://env-project/(default)"))

    def test_project_from_the_metadata_server(self):
        import http.server
        seen = []

        class Metadata(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("Metadata-Flavor")))
                ok = self.path == "/computeMetadata/v1/project/project-id"
                self.send_response(200 if ok else 404)
                self.end_headers()
                if ok:
                    self.wfile.write(b"meta-project")

            def log_message(self, *args):
                pass

        httpd = http.server.HTTPServer(("127.0.0.1", 0), Metadata)
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        try:
            store = self.serve({"GCE_METADATA_HOST": "127.0.0.1:%d" % httpd.server_port,
                                "GOOGLE_CLOUD_PROJECT": ""})
        finally:
            httpd.shutdown()
            httpd.server_close()
        self.assertTrue(store.startswith("firestore://meta-project/(default)"), store)
        self.assertEqual(seen, [("/computeMetadata/v1/project/project-id", "Google")])

    def test_no_project_anywhere_exits_1_saying_what_to_do(self):
        srv = harness.ServerProcess(env={"BOOKS_STORE": "firestore:",
                                         "GCE_METADATA_HOST": "127.0.0.1:9",
                                         "GOOGLE_CLOUD_PROJECT": "",
                                         "FIRESTORE_EMULATOR_HOST": EMULATOR.host}, label="fs-none")
        srv.start()
        self.assertEqual(srv.wait(30), 1)
        err = srv.stderr_text()
        srv.stop()
        self.assertIn("GOOGLE_CLOUD_PROJECT", err)


class CrashTest(harness.WireTestCase):

    def test_kill_9_under_eight_writers(self):
        collection = fresh_collection()
        srv = server(EMULATOR.host, collection).start_and_wait()
        acked, errors, stop, threads = run_creates(srv.port, clients=8)
        wait_for(lambda: len(acked) >= 200, what="200 acknowledged creates")
        os.kill(srv.pid, signal.SIGKILL)
        srv.wait(30)
        srv.stop()  # already gone: collects it and closes its files
        stop.set()
        for t in threads:
            t.join(60)
        acked = dict(acked)
        self.assertGreaterEqual(len(acked), 200)
        srv2 = server(EMULATOR.host, collection, extra="&cache_mb=0").start_and_wait()
        try:
            stub = srv2.stub()
            for name, want in acked.items():
                self.assertEqual(content(stub.GetBook(GetBookRequest(name=name), timeout=30)),
                                 want, name)
        finally:
            self.assertEqual(srv2.stop(), 0)


class OwnEmulatorTest(harness.WireTestCase):
    """An emulator of this test's own, to stop, restart and freeze."""

    def setUp(self):
        self.em = fsemulator.Emulator.start()

    def tearDown(self):
        try:
            os.killpg(self.em.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.em.stop()

    def test_emulator_stopped_and_started_under_load(self):
        port = self.em.port
        srv = server(self.em.host, fresh_collection()).start_and_wait()
        try:
            acked, errors, stop, threads = run_creates(srv.port, clients=4)
            wait_for(lambda: len(acked) >= 50, what="50 acknowledged creates")
            self.em.stop()
            wait_for(lambda: health_status(srv) == health_pb2.HealthCheckResponse.NOT_SERVING,
                     timeout=60, what="NOT_SERVING while the emulator is down")
            stub = srv.stub()
            codes = set()
            for _ in range(5):
                try:
                    stub.ListBooks(ListBooksRequest(page_size=5), timeout=10)
                    codes.add("OK")
                except grpc.RpcError as e:
                    codes.add(e.code().name)
            self.assertEqual(codes, {"UNAVAILABLE"})
            n = len(acked)
            self.em = fsemulator.Emulator.start(port=port)
            wait_for(lambda: health_status(srv) == health_pb2.HealthCheckResponse.SERVING,
                     timeout=60, what="SERVING again")
            wait_for(lambda: len(acked) >= n + 50, what="creates to succeed after the restart")
            stop.set()
            for t in threads:
                t.join(60)
            # Calls caught in the stop: UNAVAILABLE, or for a create on its way, UNKNOWN or
            # DEADLINE_EXCEEDED (a client retries those with a request_id).
            self.assertTrue(set(errors) <= {"UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED"},
                            set(errors))
            made = stub.CreateBook(CreateBookRequest(book_id="after-restart",
                                                     book=make_book("T", ["A"], "P")), timeout=30)
            self.assertEqual(stub.GetBook(GetBookRequest(name=made.name), timeout=30), made)
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_deadline_reaches_firestore(self):
        srv = server(self.em.host, fresh_collection(), extra="&cache_mb=0").start_and_wait()
        try:
            stub = srv.stub()
            stub.CreateBook(CreateBookRequest(book_id="frozen", book=make_book("T", ["A"], "P")),
                            timeout=30)
            os.killpg(self.em.proc.pid, signal.SIGSTOP)
            try:
                calls = {
                    "GetBook": lambda: stub.GetBook(GetBookRequest(name="books/frozen"),
                                                    timeout=0.05),
                    "ListBooks": lambda: stub.ListBooks(ListBooksRequest(page_size=5),
                                                        timeout=0.05),
                    "CreateBook": lambda: stub.CreateBook(CreateBookRequest(
                        book_id="late", book=make_book("T", ["A"], "P")), timeout=0.05)}
                for what, call in calls.items():
                    t0 = time.monotonic()
                    with self.assertRaises(grpc.RpcError, msg=what) as cm:
                        call()
                    self.assertLess(time.monotonic() - t0, 2.0)
                    self.assertIn(cm.exception.code(), (grpc.StatusCode.DEADLINE_EXCEEDED,))
                # The server is not stuck behind the frozen calls: health answers at once.
                self.assertIsNotNone(health_status(srv))
            finally:
                os.killpg(self.em.proc.pid, signal.SIGCONT)
            self.assertEqual(stub.GetBook(GetBookRequest(name="books/frozen"), timeout=30).name,
                             "books/frozen")
        finally:
            self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
