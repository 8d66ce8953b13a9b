"""Wire tests: the process around the API. Health checks, JSON logs (one line per RPC, hostile
method names), graceful shutdown on SIGTERM/SIGINT with calls in flight, start-up configuration
errors and their exit codes, a busy port, and the PORT environment variable."""

import collections
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest
import uuid

import grpc

import harness


def assert_json_lines(test, text):
    """Every line the server wrote is one JSON object with a Cloud Logging severity (issue 18),
    start-up failures on stderr included."""
    for line in text.splitlines():
        obj = json.loads(line)
        test.assertIn(obj.get("severity"), ("DEBUG", "INFO", "WARNING", "ERROR"), line)
from harness import CreateBookRequest, GetBookRequest, ListBooksRequest, make_book

SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT",
              "EMERGENCY"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z")
CODE_NAMES = {c.name for c in grpc.StatusCode}
ALLOWED_DURING_SHUTDOWN = {"OK", "UNAVAILABLE", "CANCELLED"}
HealthCheckRequest = harness.health_pb2.HealthCheckRequest
SERVING = harness.health_pb2.HealthCheckResponse.SERVING


def uid(prefix="l"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


class HealthTest(harness.SharedServerTestCase):

    def test_serving(self):
        health = self.server.health(self.channel)
        for service in ("", "books.v1.BooksService"):
            with self.subTest(service=service):
                resp = health.Check(HealthCheckRequest(service=service), timeout=10)
                self.assertEqual(resp.status, SERVING)

    def test_unknown_service_is_not_found(self):
        health = self.server.health(self.channel)
        for service in ("no.such.Service", "books.v1.booksservice", "books.v1.BooksService ",
                        "books.v1", " ", "\u00e9", "x" * 5000):
            with self.subTest(service=service[:40]):
                self.expect_error(lambda: health.Check(HealthCheckRequest(service=service),
                                                       timeout=10),
                                  grpc.StatusCode.NOT_FOUND, details=False)


class LogTest(harness.WireTestCase):

    def check_line_shape(self, line):
        self.assertIsInstance(line.get("severity"), str, line)
        self.assertIn(line["severity"], SEVERITIES, line)
        self.assertIsInstance(line.get("message"), str, line)
        self.assertIsInstance(line.get("time"), str, line)
        self.assertRegex(line["time"], RFC3339)

    def check_rpc_line(self, line):
        self.check_line_shape(line)
        self.assertIsInstance(line["method"], str, line)
        self.assertIn(line.get("code"), CODE_NAMES, line)
        lat = line.get("latency_us")
        self.assertTrue(isinstance(lat, int) and not isinstance(lat, bool) and lat >= 0, line)
        self.assertIsInstance(line.get("peer"), str, line)
        self.assertTrue(line["peer"], line)

    def test_one_json_line_per_rpc(self):
        s = self.start_server()
        stub = s.stub()
        expected = collections.Counter()
        get, create = "/books.v1.BooksService/GetBook", "/books.v1.BooksService/CreateBook"
        lst = "/books.v1.BooksService/ListBooks"
        for _ in range(3):
            self.expect_code(lambda: stub.GetBook(GetBookRequest(name="books/" + uid()),
                                                  timeout=10), grpc.StatusCode.NOT_FOUND)
            expected[(get, "NOT_FOUND")] += 1
        names = [stub.CreateBook(CreateBookRequest(book=make_book(), book_id=uid()),
                                 timeout=10).name for _ in range(2)]
        expected[(create, "OK")] += 2
        stub.GetBook(GetBookRequest(name=names[0]), timeout=10)
        expected[(get, "OK")] += 1
        stub.ListBooks(ListBooksRequest(), timeout=10)
        expected[(lst, "OK")] += 1
        self.expect_code(lambda: stub.GetBook(GetBookRequest(name="Bad"), timeout=10),
                         grpc.StatusCode.INVALID_ARGUMENT)
        expected[(get, "INVALID_ARGUMENT")] += 1
        self.expect_code(lambda: stub.CreateBook(CreateBookRequest(), timeout=10),
                         grpc.StatusCode.INVALID_ARGUMENT)
        expected[(create, "INVALID_ARGUMENT")] += 1
        self.expect_code(lambda: stub.ListBooks(ListBooksRequest(page_size=-1), timeout=10),
                         grpc.StatusCode.INVALID_ARGUMENT)
        expected[(lst, "INVALID_ARGUMENT")] += 1
        self.expect_code(lambda: stub.CreateBook(
            CreateBookRequest(book=make_book(), book_id=names[0][len("books/"):]), timeout=10),
            grpc.StatusCode.ALREADY_EXISTS)
        expected[(create, "ALREADY_EXISTS")] += 1
        ch = s.channel()
        self.expect_code(lambda: harness.raw_unary(ch, "/nope.Svc/X")(b"", timeout=5),
                         grpc.StatusCode.UNIMPLEMENTED)
        expected[("/nope.Svc/X", "UNIMPLEMENTED")] += 1

        s.stop_and_check()   # flushes every buffered line
        lines = s.log_lines(strict=True)
        self.assertTrue(lines)
        for line in lines:
            self.check_line_shape(line)
        listening = [l for l in lines if l["message"] == "listening"]
        self.assertEqual(len(listening), 1, listening)
        self.assertEqual(listening[0]["port"], s.port)
        rpc = [l for l in lines if "method" in l]
        for line in rpc:
            self.check_rpc_line(line)
            self.assertIn("127.0.0.1", line["peer"], line)
        got = collections.Counter((l["method"], l["code"]) for l in rpc
                                  if not l["method"].startswith("/grpc.health.v1.Health/"))
        self.assertEqual(got, expected)

    def test_rpc_lines_are_flushed_while_idle(self):
        # Per-RPC lines wait at most ~100 ms in a buffer: without any further traffic (and no
        # SIGTERM) the line must show up. Polled, with a very generous limit.
        s = self.start_server()
        name = "books/" + uid("idle")
        self.expect_code(lambda: s.stub().GetBook(GetBookRequest(name=name), timeout=10),
                         grpc.StatusCode.NOT_FOUND)
        deadline = time.monotonic() + 20
        while True:
            hits = [l for l in s.log_lines(strict=True)
                    if l.get("method") == "/books.v1.BooksService/GetBook"
                    and l.get("code") == "NOT_FOUND"]
            if hits:
                break
            self.assertLess(time.monotonic(), deadline,
                            "the GetBook line was not written while the server was idle\n" +
                            s.output_tail())
            time.sleep(harness.POLL_INTERVAL_S)
        self.assertEqual(len(hits), 1)
        self.check_rpc_line(hits[0])

    def test_hostile_method_names_log_valid_json(self):
        s = self.start_server()
        ch = s.channel()
        names = ['/a"b\\c/d', '/"},{"severity":"ERROR"}/x', "/x/\x01\x1f\x7f", "/\u00e9/\u00fc",
                 "/x\ny/z", "/x\r\n\r\ny", "/\u2028\u2029/x", "/x/\U0001F600",
                 "/x/" + "A" * 5000, "/x/\x00y", "/books.v1.BooksService/GetBook\x00",
                 b"/\xff\xfe/x", b"/\xc3/x", b"/\xed\xa0\x80/x", b"/\xf4\x90\x80\x80/x"]
        unimplemented = 0
        for name in names:
            with self.subTest(method=repr(name)[:40]):
                code = self.expect_code(lambda: harness.raw_unary(ch, name)(b"", timeout=5),
                                        grpc.StatusCode.UNIMPLEMENTED,
                                        grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    unimplemented += 1
        s.check_alive()
        stub = s.stub()
        self.expect_code(lambda: stub.GetBook(GetBookRequest(name="books/" + uid()), timeout=10),
                         grpc.StatusCode.NOT_FOUND)
        s.stop_and_check()
        lines = s.log_lines(strict=True)   # every line UTF-8 JSON
        for line in lines:
            self.check_line_shape(line)
        rpc = [l for l in lines if "method" in l]
        for line in rpc:
            self.check_rpc_line(line)
        logged = [l["method"] for l in rpc if l["code"] == "UNIMPLEMENTED"]
        self.assertEqual(len(logged), unimplemented, logged)
        for name in names:
            if isinstance(name, str) and len(name) < 200:
                with self.subTest(logged=repr(name)[:40]):
                    self.assertIn(name, logged)


class ShutdownTest(harness.WireTestCase):
    """SIGTERM/SIGINT with calls in flight: exit 0 within the grace period; every call ends OK,
    UNAVAILABLE or CANCELLED (never INTERNAL or UNKNOWN); every OK call was logged."""

    THREADS = 6

    def hammer_then_signal(self, sig, args=(), grace_ms=harness.DEFAULT_GRACE_MS):
        s = self.start_server(*args)
        stub = s.stub()
        preload = ["p%04d" % i for i in range(1500)]
        harness.create_many(stub, preload)
        s.close_channels()

        records = []   # (finished_after_signal, method, code name)
        lock = threading.Lock()
        warm = [threading.Event() for _ in range(self.THREADS)]
        signalled = threading.Event()

        def worker(k):
            ch = harness.insecure_channel(s.port)
            st = harness.books_pb2_grpc.BooksServiceStub(ch)
            oks, i = 0, 0
            try:
                while True:
                    i += 1
                    started_after = signalled.is_set()
                    kind = (k + i) % 3
                    try:
                        if kind == 0:
                            method = "CreateBook"
                            st.CreateBook(CreateBookRequest(book=make_book("t %d %d" % (k, i))),
                                          timeout=120)
                        elif kind == 1:
                            method = "ListBooks"
                            st.ListBooks(ListBooksRequest(page_size=1000), timeout=120)
                        else:
                            method = "GetBook"
                            st.GetBook(GetBookRequest(name="books/" + preload[i % 1500]),
                                       timeout=120)
                        code = "OK"
                    except grpc.RpcError as e:
                        code = e.code().name
                    with lock:
                        records.append((signalled.is_set(), method, code))
                    if code == "OK":
                        oks += 1
                        if oks >= 5:
                            warm[k].set()
                    elif not started_after and not signalled.is_set():
                        break   # an error before shutdown: reported below
                    if started_after and (code != "OK" or s.proc.poll() is not None):
                        break
            finally:
                warm[k].set()
                ch.close()

        threads = [threading.Thread(target=worker, args=(k,), daemon=True)
                   for k in range(self.THREADS)]
        for t in threads:
            t.start()
        for e in warm:
            self.assertTrue(e.wait(120), "workers never got going")
        signalled.set()
        s.send_signal(sig)
        rc = s.wait(grace_ms / 1000.0 + harness.STOP_MARGIN_S)
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads hung after exit")
        s.check_clean()
        self.assertIsNotNone(rc, "server still running %.0f s after %s\n%s" % (
            grace_ms / 1000.0 + harness.STOP_MARGIN_S, signal.Signals(sig).name,
            s.output_tail()))
        self.assertEqual(rc, 0, s.output_tail())

        before = [r for r in records if not r[0]]
        after = [r for r in records if r[0]]
        if os.environ.get("BOOKS_WIRE_VERBOSE"):
            sys.stderr.write("\n[%s] before the signal: %s\n  after: %s\n" % (
                signal.Signals(sig).name, collections.Counter(r[1] + " " + r[2] for r in before),
                collections.Counter(r[1] + " " + r[2] for r in after)))
        self.assertTrue(before)
        self.assertEqual({r for r in before if r[2] != "OK"}, set(),
                         "errors before the signal")
        bad = collections.Counter(r[1] + " " + r[2] for r in after
                                  if r[2] not in ALLOWED_DURING_SHUTDOWN)
        self.assertEqual(bad, collections.Counter(), "calls ended badly during shutdown")

        # Every call the clients saw succeed was logged, flushed before exit.
        lines = s.log_lines(strict=True)
        logged_ok = collections.Counter(l["method"] for l in lines
                                        if "method" in l and l.get("code") == "OK")
        client_ok = collections.Counter("/books.v1.BooksService/" + r[1] for r in records
                                        if r[2] == "OK")
        for method, n in client_ok.items():
            self.assertGreaterEqual(logged_ok[method], n, "%s: %d OK calls, %d logged" % (
                method, n, logged_ok[method]))
        return s

    def test_sigterm_with_calls_in_flight(self):
        self.hammer_then_signal(signal.SIGTERM)

    def test_sigint_with_calls_in_flight(self):
        self.hammer_then_signal(signal.SIGINT, ("--shutdown-grace-ms", "500"), 500)

    def test_sigterm_with_zero_grace(self):
        self.hammer_then_signal(signal.SIGTERM, ("--shutdown-grace-ms", "0"), 0)

    def test_sigterm_when_idle(self):
        s = self.start_server()
        s.stub().ListBooks(ListBooksRequest(), timeout=10)
        s.stop_and_check(signal.SIGTERM)

    def test_sigint_when_idle_with_open_connection(self):
        s = self.start_server()
        ch = harness.insecure_channel(s.port)
        self.addCleanup(ch.close)
        harness.books_pb2_grpc.BooksServiceStub(ch).ListBooks(ListBooksRequest(), timeout=10)
        s.stop_and_check(signal.SIGINT)   # the client keeps its connection open


class ConfigTest(harness.WireTestCase):

    def run_to_exit(self, args=(), env=None, port=None):
        """Starts the server expecting it to exit by itself; returns (code, stdout, stderr). Fails
        at once if it starts listening instead."""
        s = self.start_server(*args, env=env, port=port, wait=False)
        s.expect_clean_exit = False
        deadline = time.monotonic() + harness.STARTUP_TIMEOUT_S
        while s.running():
            if any(l.get("message") == "listening" for l in s.log_lines(strict=False)):
                s.stop()
                self.fail("server started listening with %s %s\n%s" % (args, env,
                                                                        s.output_tail()))
            self.assertLess(time.monotonic(), deadline, "server neither exited nor listened")
            time.sleep(harness.POLL_INTERVAL_S)
        s.stop()
        s.check_clean()
        return s.returncode, s.stdout_bytes().decode("utf-8", "replace"), s.stderr_text()

    def test_bad_settings_exit_2(self):
        cases = [
            # (args, env, port flag, text the message must name)
            ((), {"PORT": "notaport"}, None, "PORT"),
            ((), {"PORT": "70000"}, None, "PORT"),
            ((), {"PORT": "65536"}, None, "PORT"),
            ((), {"PORT": "-1"}, None, "PORT"),
            ((), {"PORT": "8080x"}, None, "PORT"),
            ((), {"PORT": "99999999999999999999"}, None, "PORT"),
            ((), {}, 70000, "port"),
            (("--port=-1",), {}, None, "port"),
            (("--port",), {}, None, "port"),
            ((), {"BOOKS_THREADS": "-1"}, 0, "THREADS"),
            ((), {"BOOKS_THREADS": "many"}, 0, "THREADS"),
            (("--no-such-flag",), {}, 0, "no-such-flag"),
            ((), {"BOOKS_LOG_LEVEL": "loud"}, 0, "LOG_LEVEL"),
            ((), {"BOOKS_MAX_RECV_BYTES": "abc"}, 0, "MAX_RECV_BYTES"),
            (("--shutdown-grace-ms", "soon"), {}, 0, "shutdown-grace-ms"),
        ]
        for args, env, port, named in cases:
            with self.subTest(args=args, env=env, port=port):
                rc, out, err = self.run_to_exit(args, env, port)
                self.assertEqual(rc, 2, "stdout:\n%s\nstderr:\n%s" % (out, err))
                self.assertTrue(err.strip(), "nothing on stderr")
                self.assertIn(named.lower(), err.lower(), err)
                assert_json_lines(self, err)

    def test_busy_port_exits_1_and_names_the_port(self):
        # Occupy the port on every address the server binds: a dual-stack IPv6 socket covers
        # 0.0.0.0 and [::]; without IPv6, an IPv4 socket on 0.0.0.0.
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", 0))
        except OSError:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("0.0.0.0", 0))
        self.addCleanup(sock.close)
        sock.listen(8)
        port = sock.getsockname()[1]
        rc, out, err = self.run_to_exit(port=port)
        self.assertEqual(rc, 1, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn(str(port), err)
        assert_json_lines(self, err)
        assert_json_lines(self, out)

    def test_help(self):
        rc, out, err = self.run_to_exit(("--help",))
        self.assertEqual(rc, 0, err)
        self.assertIn("PORT", out)
        self.assertIn("BOOKS_STORE", out)

    def test_version(self):
        rc, out, err = self.run_to_exit(("--version",))
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\d+\.\d+\.\d+")


class PortTest(harness.WireTestCase):

    def test_env_port(self):
        port = harness.free_port()
        s = self.start_server(env={"PORT": str(port)}, port=None)
        self.assertEqual(s.port, port)
        self.expect_code(lambda: s.stub().GetBook(GetBookRequest(name="books/x"), timeout=10),
                         grpc.StatusCode.NOT_FOUND)

    def test_env_port_zero(self):
        s = self.start_server(env={"PORT": "0"}, port=None)
        self.assertGreater(s.port, 0)
        s.stub().ListBooks(ListBooksRequest(), timeout=10)

    def test_flag_overrides_env(self):
        # PORT names a port that is busy: the server only starts if --port wins (STYLE §8:
        # default < environment < flag).
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(busy.close)
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        busy_port = busy.getsockname()[1]
        s = self.start_server(env={"PORT": str(busy_port)}, port=0)
        self.assertNotEqual(s.port, busy_port)
        s.stub().ListBooks(ListBooksRequest(), timeout=10)


if __name__ == "__main__":
    unittest.main()
