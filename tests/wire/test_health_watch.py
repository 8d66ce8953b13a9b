"""Wire tests: grpc.health.v1.Health/Watch (a server stream), driven by Debian's python3-grpcio.

The protocol (gRPC doc/health-checking.md): Watch sends the current status at once and then every
change; an unknown service gets SERVICE_UNKNOWN and the call stays open. This server also ends
every Watch at shutdown: each watcher is told NOT_SERVING and its stream ends with status OK, so
open watches never hold the graceful shutdown open.

Every Watch is read by a thread into a queue, so "nothing more arrives" is a queue.get() with a
timeout (a bound on the client's waiting, not an assertion about the server's speed)."""

import os
import queue
import signal
import socket
import sys
import threading
import time
import unittest

import grpc

import harness
from harness import GetBookRequest

HealthCheckRequest = harness.health_pb2.HealthCheckRequest
Status = harness.health_pb2.HealthCheckResponse
SERVING = Status.SERVING
NOT_SERVING = Status.NOT_SERVING
SERVICE_UNKNOWN = Status.SERVICE_UNKNOWN
WATCH = "/grpc.health.v1.Health/Watch"

# How long the client waits for something that should come promptly (generous: ASan, busy CI).
ARRIVAL_TIMEOUT_S = 30.0
# How long the client listens for something that must NOT come.
QUIET_WINDOW_S = 1.0
# A Watch's own deadline: only reached when a test is stuck.
WATCH_DEADLINE_S = 240.0


def status_name(value):
    return Status.ServingStatus.Name(value)


class Watcher:
    """One Watch call, read by a daemon thread: statuses go to a queue; when the stream ends,
    `code` and `details` are set and `ended` is set."""

    def __init__(self, channel, service, label=None):
        self.service = service
        self.label = label or repr(service)
        self.call = harness.health_pb2_grpc.HealthStub(channel).Watch(
            HealthCheckRequest(service=service), timeout=WATCH_DEADLINE_S)
        self.statuses = queue.Queue()
        self.received = []
        self.code = None
        self.details = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for resp in self.call:
                self.statuses.put(resp.status)
            self.code = self.call.code()
            self.details = self.call.details()
        except grpc.RpcError as e:
            self.code = e.code()
            self.details = e.details()
        except Exception as e:   # noqa: BLE001 - reported by the test, never swallowed
            self.code = "exception: %r" % (e,)
        finally:
            self.ended.set()

    def next_status(self, timeout=ARRIVAL_TIMEOUT_S):
        """The next status received; raises queue.Empty when none came within `timeout`."""
        s = self.statuses.get(timeout=timeout)
        self.received.append(s)
        return s

    def describe(self):
        return "watch(%s): received %s, ended=%s code=%s details=%r" % (
            self.label, [status_name(s) for s in self.received], self.ended.is_set(), self.code,
            self.details)


class WatchTestCase(harness.WireTestCase):

    def watch(self, channel, service, label=None):
        w = Watcher(channel, service, label)
        # The call is cancelled when the test ends, whatever happened (a no-op once it ended).
        self.addCleanup(w.call.cancel)
        return w

    def expect_status(self, w, want):
        try:
            got = w.next_status()
        except queue.Empty:
            self.fail("no status within %.0f s: %s" % (ARRIVAL_TIMEOUT_S, w.describe()))
        self.assertEqual(status_name(got), status_name(want), w.describe())

    def expect_quiet_and_open(self, watchers, window=QUIET_WINDOW_S):
        """Nothing more arrives on any of `watchers` (one Watcher or a list) within one shared
        `window`, and each call is still open."""
        if isinstance(watchers, Watcher):
            watchers = [watchers]
        deadline = time.monotonic() + window
        for w in watchers:
            try:
                extra = w.next_status(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pass
            else:
                self.fail("unexpected status %s: %s" % (status_name(extra), w.describe()))
        for w in watchers:
            self.assertFalse(w.ended.is_set(), "the Watch ended: " + w.describe())
            self.assertFalse(w.call.done(), "the Watch is done: " + w.describe())

    def wait_for_lines(self, s, pred, n, what):
        """Polls the server's log until at least n per-RPC lines satisfy pred (lines wait at most
        ~100 ms in the server's buffer; the bound here is generous)."""
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while True:
            hits = [l for l in s.rpc_lines() if pred(l)]
            if len(hits) >= n:
                return hits
            if time.monotonic() > deadline:
                self.fail("%d of %d %s logged within %.0f s\n%s" % (
                    len(hits), n, what, ARRIVAL_TIMEOUT_S, s.output_tail()))
            time.sleep(harness.POLL_INTERVAL_S)


class WatchTest(WatchTestCase):

    def test_known_services_get_serving_at_once(self):
        s = self.start_server()
        ch = s.channel()
        for service in ("", harness.SERVICE, "grpc.health.v1.Health",
                        "grpc.reflection.v1.ServerReflection",
                        "grpc.reflection.v1alpha.ServerReflection"):
            with self.subTest(service=service):
                w = self.watch(ch, service)
                self.expect_status(w, SERVING)
                # The status does not change, so nothing more is sent and the call stays open.
                self.expect_quiet_and_open(w, window=0.3)

    def test_unknown_service_gets_service_unknown_and_stays_open(self):
        s = self.start_server()
        ch = s.channel()
        watchers = [self.watch(ch, name) for name in
                    ("no.such.Service", "books.v1.booksservice", "books.v1.BooksService ",
                     "books.v1", "\u00e9", "x" * 3000)]
        for w in watchers:
            with self.subTest(service=w.service[:40]):
                self.expect_status(w, SERVICE_UNKNOWN)
        self.expect_quiet_and_open(watchers)
        # Meanwhile the server answers as usual, on the same connection and on another.
        for channel in (ch, s.channel()):
            self.assertEqual(s.health(channel).Check(HealthCheckRequest(), timeout=10).status,
                             SERVING)
        self.expect_error(lambda: s.stub(ch).GetBook(GetBookRequest(name="books/w-none"),
                                                     timeout=10),
                          grpc.StatusCode.NOT_FOUND)
        for w in watchers:
            self.assertFalse(w.ended.is_set(), w.describe())

    def test_concurrent_watchers(self):
        s = self.start_server()
        channels = [s.channel() for _ in range(3)]
        services = ["", harness.SERVICE, "no.such.Service", "grpc.health.v1.Health"]
        watchers = [self.watch(channels[i % 3], services[i % 4], "%d:%r" % (i, services[i % 4]))
                    for i in range(24)]
        for w in watchers:
            with self.subTest(watcher=w.label):
                self.expect_status(w, SERVICE_UNKNOWN if w.service == "no.such.Service"
                                   else SERVING)
        # Unary calls in between are unaffected.
        stub = s.stub(channels[0])
        for i in range(5):
            self.expect_code(lambda: stub.GetBook(GetBookRequest(name="books/c-%d" % i),
                                                  timeout=10), grpc.StatusCode.NOT_FOUND)
            self.assertEqual(s.health(channels[i % 3]).Check(HealthCheckRequest(),
                                                              timeout=10).status, SERVING)
        self.expect_quiet_and_open(watchers, window=0.3)

    def test_cancelled_watchers_are_cleaned_up(self):
        s = self.start_server()
        ch = s.channel()
        keep = [self.watch(ch, ""), self.watch(ch, "no.such.Service")]
        cancel = [self.watch(ch, svc) for svc in ("", harness.SERVICE, "no.such.Service")]
        # One more on its own connection, which the client then closes (the connection goes away).
        own = harness.insecure_channel(s.port, [("grpc.use_local_subchannel_pool", 1)])
        self.addCleanup(own.close)
        dropped = self.watch(own, harness.SERVICE, "dropped connection")
        for w in keep + cancel + [dropped]:
            self.expect_status(w, SERVICE_UNKNOWN if w.service == "no.such.Service" else SERVING)

        for w in cancel:
            w.call.cancel()
        own.close()
        for w in cancel + [dropped]:
            self.assertTrue(w.ended.wait(ARRIVAL_TIMEOUT_S), w.describe())
            self.assertEqual(w.code, grpc.StatusCode.CANCELLED, w.describe())

        # The server logs each of them as CANCELLED ...
        self.wait_for_lines(s, lambda l: l["method"] == WATCH and l.get("code") == "CANCELLED",
                            len(cancel) + 1, "cancelled Watch calls")
        # ... keeps serving (Check, a new Watch, a unary call) ...
        s.check_alive()
        self.assertEqual(s.health(ch).Check(HealthCheckRequest(), timeout=10).status, SERVING)
        fresh = self.watch(s.channel(), harness.SERVICE)
        self.expect_status(fresh, SERVING)
        self.expect_code(lambda: s.stub(ch).GetBook(GetBookRequest(name="books/x"), timeout=10),
                         grpc.StatusCode.NOT_FOUND)
        # ... and the watchers still open are untouched.
        self.expect_quiet_and_open(keep, window=0.3)
        # Many more, cancelled at once: no crash, no leak (the ASan build checks), still serving.
        burst = [self.watch(ch, ("", "no.such.Service")[i % 2]) for i in range(20)]
        for w in burst:
            self.expect_status(w, SERVICE_UNKNOWN if w.service else SERVING)
        for w in burst:
            w.call.cancel()
        for w in burst:
            self.assertTrue(w.ended.wait(ARRIVAL_TIMEOUT_S), w.describe())
        self.assertEqual(s.health(ch).Check(HealthCheckRequest(), timeout=10).status, SERVING)
        self.wait_for_lines(s, lambda l: l["method"] == WATCH and l.get("code") == "CANCELLED",
                            len(cancel) + 1 + len(burst), "cancelled Watch calls")
        # The server stops cleanly afterwards (exit 0, no sanitizer report): checked at cleanup.


class WatchShutdownTest(WatchTestCase):
    """SIGTERM with watchers open: each gets NOT_SERVING, then its stream ends with OK, and the
    server exits 0 without waiting for the grace period."""

    GRACE_MS = 20000

    def test_sigterm_ends_every_watcher(self):
        s = self.start_server("--shutdown-grace-ms", str(self.GRACE_MS))
        channels = [s.channel(), s.channel()]
        specs = [("", SERVING), (harness.SERVICE, SERVING), ("grpc.health.v1.Health", SERVING),
                 ("no.such.Service", SERVICE_UNKNOWN), ("", SERVING),
                 ("also.not.Hosted", SERVICE_UNKNOWN)]
        watchers = []
        for i, (service, first) in enumerate(specs):
            w = self.watch(channels[i % 2], service, "%d:%r" % (i, service))
            watchers.append(w)
            self.expect_status(w, first)
        for w in watchers:
            self.assertFalse(w.ended.is_set(), w.describe())

        signalled_at = time.monotonic()
        s.send_signal(signal.SIGTERM)
        # Watches must not hold the shutdown open: every watcher is ended, and the server exits
        # well before the grace period would end (measured from the signal).
        limit = self.GRACE_MS / 2000.0

        # 1. Each watcher gets NOT_SERVING, then its stream ends with OK.
        for w in watchers:
            w.ended.wait(max(0.0, signalled_at + limit - time.monotonic()))
        for w in watchers:
            with self.subTest(watcher=w.label):
                self.assertTrue(w.ended.is_set(), "the Watch did not end within %.0f s of "
                                "SIGTERM: %s" % (limit, w.describe()))
                got = []
                while True:
                    try:
                        got.append(w.next_status(timeout=0))
                    except queue.Empty:
                        break
                self.assertEqual([status_name(x) for x in got], ["NOT_SERVING"],
                                 "want exactly one NOT_SERVING after SIGTERM: " + w.describe())
                self.assertEqual(w.code, grpc.StatusCode.OK,
                                 "want the stream to end with status OK: " + w.describe())

        # 2. The server exits 0 within the limit.
        rc = s.wait(max(0.1, signalled_at + limit - time.monotonic()))
        elapsed = time.monotonic() - signalled_at
        if os.environ.get("BOOKS_WIRE_VERBOSE"):
            sys.stderr.write("\n[watch shutdown] %s %.2f s after SIGTERM\n" % (
                "exited" if rc is not None else "still running", elapsed))
        self.assertIsNotNone(rc, "the server was still running %.0f s after SIGTERM with %d "
                             "watchers open (grace period %d ms): the Watch calls, or the "
                             "connection they were on, hold the shutdown open (watchers ended: "
                             "%d)\n%s" % (limit, len(watchers), self.GRACE_MS,
                                          sum(w.ended.is_set() for w in watchers),
                                          s.output_tail()))
        self.assertEqual(rc, 0, s.output_tail())
        s.check_clean()

        # 3. Every Watch was logged (OK) before exit.
        lines = s.log_lines(strict=True)
        watch_lines = [l for l in lines if l.get("method") == WATCH]
        self.assertEqual(sorted(l.get("code") for l in watch_lines), ["OK"] * len(watchers),
                         watch_lines)

    def test_sigterm_with_an_idle_connection_open(self):
        """SIGTERM with only an idle connection open: exit without waiting for the grace period.

        This is what a watcher's client leaves behind once its Watch has ended: an open HTTP/2
        connection with no calls, whose client does not read (grpcio, for one, does not always
        poll an idle channel). No call is in flight, so nothing should wait for the grace
        period."""
        s = self.start_server("--shutdown-grace-ms", str(self.GRACE_MS))
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        self.addCleanup(sock.close)
        # The client connection preface and an empty SETTINGS frame; then silence.
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
                     b"\x00\x00\x00" + b"\x04" + b"\x00" + b"\x00\x00\x00\x00")
        # A call on another connection proves the server has taken the connection in.
        self.assertEqual(s.health(s.channel()).Check(HealthCheckRequest(), timeout=10).status,
                         SERVING)
        s.close_channels()
        s.send_signal(signal.SIGTERM)
        limit = self.GRACE_MS / 2000.0
        rc = s.wait(limit)
        self.assertIsNotNone(rc, "the server was still running %.0f s after SIGTERM with no call "
                             "in flight and one idle connection open (grace period %d ms)\n%s"
                             % (limit, self.GRACE_MS, s.output_tail()))
        self.assertEqual(rc, 0, s.output_tail())
        s.check_clean()


if __name__ == "__main__":
    unittest.main()
