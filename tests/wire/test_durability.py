"""Wire tests: the durable store (BOOKS_STORE=sqlite:PATH) through the real binary.

  * crash: eight clients create books while the server is killed with SIGKILL three times (after
    about 500, 1500 and 3000 acknowledged creates, restarting in between); afterwards every
    acknowledged book is there with exactly the content sent, and every book there is one some
    client sent, whole (the promise: OK means on disk; anything else means all or nothing);
  * restart: SIGTERM exits 0, and after a restart ListBooks returns the same books in the same
    order, and page tokens issued before the restart still work (the data set key is stored);
  * start-up faults: a file that is not a SQLite database, another application's database, one
    written by a newer books-server, a read-only directory, a database another running server
    holds: exit code 1, stderr names the path and the cause, the file is byte-for-byte unchanged;
  * a full database (max_size_mb): CreateBook fails with RESOURCE_EXHAUSTED and a message while
    GetBook and ListBooks keep working;
  * a real full disk (a 4 MiB tmpfs): RESOURCE_EXHAUSTED, reads go on, and creates work again as
    soon as space returns, without a restart.
"""

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import harness
from harness import CreateBookRequest, GetBookRequest, ListBooksRequest, make_book

CLIENTS = 8
KILL_AFTER_ACKED = (500, 1500, 3000)   # cumulative acknowledged creates at each SIGKILL
PHASE_TIMEOUT_S = 120.0                # a bound on waiting, not an assertion about speed
# Codes a call may end with when the server is killed under it: its outcome is unknown.
DIED_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL}
NOBODY = 65534


content = harness.content


def crash_book(book_id, k):
    """Distinct, checkable content per id, with separators and multi-byte UTF-8 in every field and
    1 to 4 authors."""
    authors = ["Author, %s" % book_id, "tab\tpipe|semi;colon %d" % k, "\u6751\u4e0a %s" % book_id,
               "\"q\" [%d] {x}" % k][:1 + k % 4]
    return make_book("Title %s \u00e9\U0001F4DA \u00ab%d\u00bb" % (book_id, k), authors,
                     "Publisher %s\nline 2" % book_id)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class DurableCase(harness.WireTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="books-durability-")
        self.addCleanup(self._remove_dir)
        self.db = os.path.join(self.dir, "books.db")

    def _remove_dir(self):
        os.chmod(self.dir, 0o700)
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self, query=""):
        return {"BOOKS_STORE": "sqlite:" + self.db + query}

    def run_to_exit(self, env):
        """Starts a server expected to refuse to start; returns (code, stderr)."""
        s = self.start_server(env=env, wait=False, label="refused")
        s.expect_clean_exit = False
        rc = s.wait(harness.STARTUP_TIMEOUT_S)
        if rc is None:
            s.stop()
            self.fail("server did not exit by itself\n%s" % s.output_tail())
        s.stop()
        s.check_clean()
        return rc, s.stderr_text()

    def assert_refused(self, env, path, cause):
        before = sha256(path) if os.path.exists(path) else None
        rc, err = self.run_to_exit(env)
        self.assertEqual(rc, 1, err)
        self.assertIn(path, err)
        self.assertIn(cause, err)
        after = sha256(path) if os.path.exists(path) else None
        self.assertEqual(before, after, "the rejected file was modified")
        return err


class CrashTest(DurableCase):

    def test_sigkill_under_load_loses_no_acknowledged_book(self):
        sent = {}        # id -> content, recorded before the call is made
        acked = {}       # id -> content, for calls that returned OK
        errors = []
        cond = threading.Condition()
        state = {"count": 0, "killed": False}

        for phase, target in enumerate(KILL_AFTER_ACKED):
            server = self.start_server(env=self.env(), label="phase%d" % phase)
            server.expect_clean_exit = False
            with cond:
                state["killed"] = False

            def client(c, phase=phase, server=server):
                stub = server.stub(server.channel())
                k = 0
                while True:
                    book_id = "c%d-p%d-%05d" % (c, phase, k)
                    book = crash_book(book_id, k)
                    k += 1
                    with cond:
                        if state["killed"]:
                            return
                        sent[book_id] = content(book)
                    try:
                        got = stub.CreateBook(CreateBookRequest(book=book, book_id=book_id),
                                              timeout=60)
                    except grpc.RpcError as e:
                        with cond:
                            if not (state["killed"] and e.code() in DIED_CODES):
                                errors.append("%s: %s %s" % (book_id, e.code(), e.details()))
                            cond.notify_all()
                        return
                    with cond:
                        if got.name != "books/" + book_id or content(got) != content(book):
                            errors.append("%s: answered with %r" % (book_id, got))
                        acked[book_id] = content(book)
                        state["count"] += 1
                        cond.notify_all()

            threads = [threading.Thread(target=client, args=(c,), daemon=True)
                       for c in range(CLIENTS)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            with cond:
                while state["count"] < target and not errors:
                    self.assertLess(time.monotonic(), deadline,
                                    "phase %d: only %d creates acknowledged" % (phase,
                                                                                state["count"]))
                    cond.wait(1.0)
                state["killed"] = True
            # Calls are in flight right now: kill -9 mid-load.
            server.send_signal(signal.SIGKILL)
            self.assertEqual(server.wait(30), -signal.SIGKILL)
            for t in threads:
                t.join(60)
            self.assertFalse(any(t.is_alive() for t in threads), "clients hung after the kill")
            server.check_clean()
            self.assertEqual(errors, [])
            print("phase %d: SIGKILL at %d acknowledged, %d sent" % (phase, state["count"],
                                                                    len(sent)))

        # The last restart: everything acknowledged is there, exactly; nothing else but whole
        # books some client sent.
        server = self.start_server(env=self.env(), label="final")
        stub = server.stub()
        books, _ = harness.list_all(stub, page_size=1000)
        names = [b.name for b in books]
        self.assertEqual(names, sorted(set(names)), "ListBooks not strictly ascending")
        present = {}
        for b in books:
            self.assertTrue(b.name.startswith("books/"), b.name)
            present[b.name[len("books/"):]] = content(b)
        for book_id, want in acked.items():
            self.assertIn(book_id, present, "acknowledged book lost")
            self.assertEqual(present[book_id], want, "acknowledged book changed")
        for book_id, got in present.items():
            self.assertIn(book_id, sent, "a book nobody sent")
            self.assertEqual(got, sent[book_id], "a partial or altered book")
        # GetBook agrees with ListBooks for every acknowledged book.
        ids = sorted(acked)
        for start in range(0, len(ids), 200):
            futs = [(i, stub.GetBook.future(GetBookRequest(name="books/" + i), timeout=60))
                    for i in ids[start:start + 200]]
            for i, f in futs:
                self.assertEqual(content(f.result()), acked[i])
        print("crash test: %d acknowledged, %d sent, %d present after 3 kills" % (
            len(acked), len(sent), len(present)))
        self.assertGreaterEqual(len(acked), KILL_AFTER_ACKED[-1])


class RestartTest(DurableCase):

    def test_sigterm_restart_keeps_books_order_and_page_tokens(self):
        server = self.start_server(env=self.env(), label="first")
        stub = server.stub()
        ids = ["r%03d-%s" % (i, "x" * (1 + i % 5)) for i in range(120)]
        harness.create_many(stub, ids, book_for=lambda i: make_book(
            "Title " + i, ["A, " + i, "B|" + i], "Pub " + i))
        before, _ = harness.list_all(stub, page_size=50)
        page1 = stub.ListBooks(ListBooksRequest(page_size=50), timeout=30)
        page2 = stub.ListBooks(ListBooksRequest(page_size=50, page_token=page1.next_page_token),
                               timeout=30)
        self.assertTrue(page2.next_page_token)
        self.assertEqual(server.stop_and_check(signal.SIGTERM), 0)
        for side in ("-wal", "-lock"):
            self.assertFalse(os.path.exists(self.db + side), side + " left after a clean stop")

        server = self.start_server(env=self.env(), label="second")
        stub = server.stub()
        after, _ = harness.list_all(stub, page_size=50)
        self.assertEqual([(b.name, content(b)) for b in after],
                         [(b.name, content(b)) for b in before])
        self.assertEqual(len(after), 120)
        # Tokens issued before the restart resume where they pointed.
        again2 = stub.ListBooks(ListBooksRequest(page_size=50, page_token=page1.next_page_token),
                                timeout=30)
        self.assertEqual(list(again2.books), list(page2.books))
        self.assertEqual(again2.next_page_token, page2.next_page_token)
        again3 = stub.ListBooks(ListBooksRequest(page_size=50, page_token=page2.next_page_token),
                                timeout=30)
        self.assertEqual([b.name for b in again3.books], [b.name for b in before[100:]])
        self.assertEqual(again3.next_page_token, "")


class StartupFaultTest(DurableCase):

    def test_file_that_is_not_a_sqlite_database(self):
        cases = [
            ("random bytes", bytes((i * 7919 + 13) % 251 for i in range(8192))),
            ("text", b"# books\nthis is a text file, not a database\n"),
            ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
                    b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" + b"\x00" * 100),
        ]
        for what, data in cases:
            with self.subTest(what=what):
                with open(self.db, "wb") as f:
                    f.write(data)
                self.assert_refused(self.env(), self.db, "not a SQLite database")

    def test_database_of_another_application(self):
        db = sqlite3.connect(self.db)
        db.execute("PRAGMA application_id = 1196444237")
        db.execute("CREATE TABLE t(x)")
        db.commit()
        db.close()
        self.assert_refused(self.env(), self.db, "not a books database")

    def test_database_written_by_a_newer_server(self):
        server = self.start_server(env=self.env(), label="creator")
        harness.create_many(server.stub(), ["newer-1"])
        server.stop_and_check()
        db = sqlite3.connect(self.db)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
        err = self.assert_refused(self.env(), self.db, "newer books-server")
        self.assertIn("upgrade", err)

    def test_read_only_directory(self):
        server = self.start_server(env=self.env(), label="creator")
        harness.create_many(server.stub(), ["ro-1"])
        server.stop_and_check()
        os.chmod(self.dir, 0o555)
        before = sha256(self.db)
        if os.geteuid() != 0:
            err = self.assert_refused(self.env(), self.db, "not writable")
        else:
            # Root writes anywhere: run the server as nobody, to whom the directory is read-only.
            # Through setpriv, not subprocess's user=/group= (which fork: see harness.py).
            os.chmod(self.db, 0o644)
            res = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                                  "--clear-groups", "--", harness.SERVER_PATH, "--port", "0"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=harness._clean_env(self.env()),
                                 timeout=harness.STARTUP_TIMEOUT_S)
            err = res.stderr.decode("utf-8", "replace")
            self.assertEqual(res.returncode, 1, err)
            self.assertIn(self.db, err)
            self.assertIn("not writable", err)
        self.assertEqual(sha256(self.db), before)

    def test_database_in_use_by_another_server(self):
        first = self.start_server(env=self.env(), label="holder")
        harness.create_many(first.stub(), ["held-1"])
        err = self.assert_refused(self.env(), self.db, "in use by another books-server")
        self.assertIn("pid %d" % first.pid, err)
        first.check_alive()
        # The holder is unaffected and still serves.
        got = first.stub().GetBook(GetBookRequest(name="books/held-1"), timeout=30)
        self.assertEqual(got.name, "books/held-1")


class FullDatabaseTest(DurableCase):

    def test_full_database_refuses_creates_and_keeps_serving_reads(self):
        server = self.start_server(env=self.env("?max_size_mb=1"), label="full")
        stub = server.stub()
        big_authors = [("%03d" % i) + "a" * 509 for i in range(100)]   # ~51 KB per book
        created = []
        err = None
        for i in range(200):
            book_id = "big-%03d" % i
            try:
                stub.CreateBook(CreateBookRequest(book=make_book("T" * 1024, big_authors, "P"),
                                                  book_id=book_id), timeout=60)
            except grpc.RpcError as e:
                err = e
                break
            created.append(book_id)
        self.assertIsNotNone(err, "a 1 MiB database took 200 books of 51 KB")
        self.assertGreater(len(created), 3)
        d = self.check_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, reason="STORE_FULL")
        self.assertIn("space", d.message)
        # Reads go on.
        got = stub.GetBook(GetBookRequest(name="books/" + created[0]), timeout=30)
        self.assertEqual(list(got.authors), big_authors)
        page = stub.ListBooks(ListBooksRequest(page_size=10), timeout=30)
        self.assertEqual([b.name for b in page.books], ["books/" + i for i in created[:10]])
        server.check_alive()


class DiskFullTest(DurableCase):
    """A real full file system (a 4 MiB tmpfs mounted for the test): CreateBook is
    RESOURCE_EXHAUSTED while the disk is full, reads go on, and once space returns creates work
    again without a restart; after a restart the failed book is absent, the others whole."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root (CI runs as root)")
        self.mnt = os.path.join(self.dir, "fs")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", self.mnt],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], check=False)
        self.db = os.path.join(self.mnt, "books.db")

    def fill(self, path):
        """Writes `path` until the file system is full."""
        with open(path, "wb", buffering=0) as f:
            chunk = b"\0" * 65536
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
            chunk = b"\0" * 512
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass

    def test_disk_full_then_space_returns(self):
        server = self.start_server(env=self.env(), label="diskfull")
        stub = server.stub()
        authors = [("%03d" % i) + "b" * 500 for i in range(40)]   # ~20 KB per book
        stub.CreateBook(CreateBookRequest(book=make_book("Before", authors, "P"),
                                          book_id="before"), timeout=30)
        filler = os.path.join(self.mnt, "filler")
        self.fill(filler)
        err = None
        for i in range(20):   # the log may still have a little room: go on until it is used up
            try:
                stub.CreateBook(CreateBookRequest(book=make_book("Full", authors, "P"),
                                                  book_id="full-%02d" % i), timeout=30)
            except grpc.RpcError as e:
                err = e
                failed_id = "full-%02d" % i
                break
        self.assertIsNotNone(err, "20 books of 20 KB fitted on a full file system")
        d = self.check_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, reason="STORE_FULL")
        self.assertIn("space", d.message)
        # Reads go on while the disk is full.
        got = stub.GetBook(GetBookRequest(name="books/before"), timeout=30)
        self.assertEqual(list(got.authors), authors)
        self.assertIn("books/before",
                      [b.name for b in stub.ListBooks(ListBooksRequest(), timeout=30).books])
        with self.assertRaises(grpc.RpcError) as again:
            stub.GetBook(GetBookRequest(name="books/" + failed_id), timeout=30)
        self.assertEqual(again.exception.code(), grpc.StatusCode.NOT_FOUND)
        # Space returns: the same create now works, without a restart.
        os.unlink(filler)
        got = stub.CreateBook(CreateBookRequest(book=make_book("After", authors, "P"),
                                                book_id=failed_id), timeout=30)
        self.assertEqual(got.display_name, "After")
        server.stop_and_check()
        server = self.start_server(env=self.env(), label="after")
        stub = server.stub()
        names = [b.name for b in stub.ListBooks(ListBooksRequest(page_size=100), timeout=30).books]
        self.assertIn("books/before", names)
        self.assertIn("books/" + failed_id, names)
        got = stub.GetBook(GetBookRequest(name="books/" + failed_id), timeout=30)
        self.assertEqual((got.display_name, list(got.authors)), ("After", authors))


class ShutdownWhileCommittingTest(DurableCase):
    """SIGTERM with no grace period while eight clients create books one fsync at a time: calls
    still waiting for their commit are cancelled, yet their answers arrive after the cancel; the
    server must wait for them and exit 0 (it used to abort), and every acknowledged book must be
    there after a restart."""

    def test_sigterm_with_creates_queued_exits_zero(self):
        env = self.env("?group_commit=off")
        env["BOOKS_SHUTDOWN_GRACE_MS"] = "0"
        server = self.start_server(env=env, label="committing")
        acked, lock, stop = [], threading.Lock(), threading.Event()
        started = threading.Barrier(CLIENTS + 1)

        def settle(book_id, f):
            try:
                f.result()
            except grpc.RpcError:
                return   # cancelled at shutdown: its outcome is unknown
            with lock:
                acked.append(book_id)

        def client(c):
            stub = server.stub(server.channel())
            futures = []
            started.wait()
            k = 0
            while not stop.is_set() and k < 100000:
                book_id = "q%d-%05d" % (c, k)
                futures.append((book_id, stub.CreateBook.future(
                    CreateBookRequest(book=make_book("T " + book_id), book_id=book_id),
                    timeout=30)))
                k += 1
                if len(futures) >= 20:   # keep 20 calls in flight per client
                    settle(*futures.pop(0))
            for book_id, f in futures:
                settle(book_id, f)

        threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        started.wait()
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while len(acked) < 300:
            self.assertLess(time.monotonic(), deadline, "only %d creates acknowledged" % len(acked))
            time.sleep(0.05)
        # SIGTERM while the clients keep their channels open (stop() would close them first).
        server.send_signal(signal.SIGTERM)
        rc = server.wait(30)
        stop.set()
        for t in threads:
            t.join(60)
        server.check_clean()   # no sanitizer report
        self.assertEqual(rc, 0, server.output_tail())
        # The path under test ran: calls were still in flight when the grace period (0) ended.
        messages = [line.get("message", "") for line in server.log_lines()]
        self.assertTrue(any("cancelling" in m for m in messages), messages[-5:])
        server = self.start_server(env=self.env(), label="after")
        stub = server.stub()
        names = {b.name for b in harness.list_all(stub, page_size=1000)[0]}
        missing = [i for i in acked if "books/" + i not in names]
        self.assertEqual(missing, [], "acknowledged books lost at shutdown")


if __name__ == "__main__":
    unittest.main()
