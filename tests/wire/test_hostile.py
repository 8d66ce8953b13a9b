"""Wire tests: hostile input. Every attack of hostile.py runs against ONE server (started through
harness.py); after each, the server must answer health Check SERVING and return a seeded book
unchanged, and at the end every seeded book must be intact and SIGTERM must give exit 0 (the
harness checks that, and that stderr holds no sanitizer report).

What a fixed server must do, per attack:
  page tokens          INVALID_ARGUMENT for every non-empty token it did not issue (OK for empty)
  violation floods     INVALID_ARGUMENT; the google.rpc.BadRequest holds at most 32 violations,
                       and when problems were left out the message says how many ("N more");
                       1.3 M empty authors: INVALID_ARGUMENT naming book.authors
  compression bomb     RESOURCE_EXHAUSTED (gzip and deflate); a small compressed CreateBook is OK
  random bytes         never INTERNAL / UNKNOWN / UNAVAILABLE (nor a hang: DEADLINE_EXCEEDED)
  oversized metadata   the call fails (RESOURCE_EXHAUSTED or INTERNAL, or a reset), server alive
  odd :path values     UNIMPLEMENTED or a stream/connection error, within 5 s
  floods               (idle connections, bodiless streams, rapid reset, CONTINUATION, PING)
                       server alive, and a well-behaved client beside the flood is served: no
                       errors (30 s deadline), and some answer arrives while the flood is going
No timing assertions beyond hang detection; memory is measured by tests/hostile/measure.py.

Sizes: BOOKS_HOSTILE_SCALE multiplies the attacks' counts (default 1.0; when unset, 0.2 for a
binary built with AddressSanitizer and 0.05 under BOOKS_SERVER_WRAPPER, e.g. valgrind).

Run by hand:  cd tests/wire && BOOKS_SERVER=/path/books-server /usr/bin/python3 -m unittest -v \
    test_hostile"""

import os
import re
import time
import unittest

import grpc

import harness
import hostile
import proxy
from harness import CreateBookRequest, GetBookRequest

HOST = "127.0.0.1"
MiB = 1 << 20
MAX_VIOLATIONS = 32
# A well-behaved call that has not finished in this long is hung, not slow.
GOOD_DEADLINE_S = 30.0
# Floods shorter than this are not judged on whether the good client was answered during them.
MIN_JUDGED_S = 5.0
MORE_RE = re.compile(r"(\d[\d,]*)\s+more\b", re.IGNORECASE)


def _default_scale():
    env = os.environ.get("BOOKS_HOSTILE_SCALE")
    if env:
        return float(env)
    if harness.SERVER_WRAPPER:
        return 0.05
    try:
        with open(harness.SERVER_PATH, "rb") as f:
            if b"__asan_init" in f.read():
                return 0.2
    except OSError:
        pass
    return 1.0


SCALE = _default_scale()


def n(x, minimum=1):
    return max(minimum, int(x * SCALE))


class HostileTest(harness.SharedServerTestCase):
    """The attacks straight at books-server's port.

    Two transport floods are not bounded by anything Debian's gRPC core 1.51.1 offers (README,
    "Security"): a CONTINUATION flood stalls the connections' pollers, and an HTTP/2 rapid reset
    makes the transport create calls faster than any server can retire them. Against the bare
    port they must leave the server alive, healthy afterwards and its data intact; that a
    well-behaved client is served *during* them is asserted through nghttpx
    (HostileThroughNghttpxTest), the front the README recommends for self-hosting. On Cloud Run,
    Google's front end plays that part."""

    # Whether a well-behaved client must be served during the floods 1.51 cannot bound.
    TRANSPORT_FLOODS_BOUNDED = False
    # Whether an HTTP front (nghttpx) stands before the server: it refuses oversized header
    # blocks itself (HTTP 431, which gRPC clients report as UNKNOWN) and resolves dot segments
    # in :path before forwarding (RFC 3986 section 5.2.4), so those requests reach another method.
    BEHIND_PROXY = False

    def front_refusal(self, out):
        """True when the front, not books-server, refused the request with an HTTP error."""
        oc, msg = out.get("outcome") or "", out.get("grpc_message") or ""
        return self.BEHIND_PROXY and (oc.startswith("HTTP 4") or
                                      (oc == "UNKNOWN" and "status: 4" in msg))

    @classmethod
    def setUpClass(cls):
        # The attacker needs thousands of sockets; the server inherits the same limit.
        hostile.raise_nofile()
        super().setUpClass()
        cls.port = cls.front_port()
        if cls.port != cls.server.port:
            cls.channel = harness.insecure_channel(cls.port)
            cls.stub = harness.books_pb2_grpc.BooksServiceStub(cls.channel)
            cls.addClassCleanup(cls.channel.close)
        cls.books = hostile.seed_books(HOST, cls.port, n=5, prefix="hostile-seed")
        cls._turn = 0

    @classmethod
    def front_port(cls):
        """Where the attacker and the clients connect."""
        return cls.server.port

    # -- checks -------------------------------------------------------------------------------
    def assertServerHealthy(self, after):
        """Alive, health SERVING (waiting up to ~30 s for a server still digesting a flood), and a
        seeded book (a different one each time) comes back unchanged."""
        self.server.check_alive()
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = hostile.health_status(HOST, self.port, timeout=10)
            if status == "SERVING":
                break
            self.server.check_alive()
            time.sleep(0.2)
        self.assertEqual(status, "SERVING", "health Check after %s" % after)
        names = sorted(self.books)
        name = names[type(self)._turn % len(names)]
        type(self)._turn += 1
        got = self.stub.GetBook(GetBookRequest(name=name), timeout=GOOD_DEADLINE_S)
        self.assertEqual(got, self.books[name], "seeded book %s after %s" % (name, after))

    def with_good_client(self, attack, **bounds):
        """Runs attack(HOST, port, **bounds) while a well-behaved client calls GetBook in a loop;
        returns (result, good client). The client runs on until 1 s after the attack."""
        good = hostile.GoodClient(HOST, self.port, self.books, timeout=GOOD_DEADLINE_S).start()
        good.t0 = time.monotonic()
        try:
            result = attack(HOST, self.port, **bounds)
        finally:
            good.t1 = time.monotonic()
            time.sleep(1.0)
            good.stop()
        return result, good

    def assertGoodClientServed(self, good, attack):
        """No errors and no wrong answers; answers at all; and, for a flood that lasted at least
        MIN_JUDGED_S, at least one answer that arrived while the flood was still going (a server
        that serves nobody until the attacker gives up fails, however long the deadline)."""
        lat, errs = good.window(good.t0)
        ok = len(lat) - sum(errs.values())
        self.assertEqual(dict(errs), {}, "%s: the well-behaved client got errors" % attack)
        self.assertEqual(good.mismatches, [], "%s: the well-behaved client got wrong books" %
                         attack)
        self.assertGreater(ok, 0, "%s: the well-behaved client was never served" % attack)
        lasted = good.t1 - good.t0
        if lasted >= MIN_JUDGED_S:
            during = [t for t, ms, code in list(good.samples)
                      if code == "OK" and good.t0 <= t + ms / 1000.0 <= good.t1]
            self.assertGreater(len(during), 0, "%s: during the %.1f s flood the well-behaved "
                               "client got no answer at all (served only after it ended)" %
                               (attack, lasted))

    def assertBoundedViolations(self, info, what, min_problems=None):
        """info: hostile.error_summary of the call."""
        self.assertEqual(info["code"], "INVALID_ARGUMENT", "%s: %r" % (what, info))
        self.assertEqual(info["bad_requests"], 1, "%s: want one BadRequest: %r" % (what, info))
        shown = info["violations"]
        self.assertGreaterEqual(shown, 1, "%s: %r" % (what, info))
        self.assertLessEqual(shown, MAX_VIOLATIONS,
                             "%s: %d field violations in the BadRequest" % (what, shown))
        m = MORE_RE.search(info["full_message"])
        if min_problems is not None and min_problems > shown:
            self.assertIsNotNone(m, "%s: %d problems at least, %d shown, and the message does not "
                                 "say how many more: %r" % (what, min_problems, shown,
                                                            info["full_message"][:400]))
            more = int(m.group(1).replace(",", ""))
            self.assertGreaterEqual(shown + more, min_problems,
                                    "%s: %d shown + %d more < %d problems: %r" % (
                                        what, shown, more, min_problems,
                                        info["full_message"][:400]))
        elif shown == MAX_VIOLATIONS:
            self.assertIsNotNone(m, "%s: the BadRequest is full (%d) and the message does not say "
                                 "whether more were left out: %r" % (what, shown,
                                                                     info["full_message"][:400]))

    # -- attacks ------------------------------------------------------------------------------
    def test_01_page_tokens(self):
        res = hostile.attack_page_tokens(HOST, self.port, max_len=420, timeout=30,
                                         max_seconds=120)
        self.assertTrue(res["details"].get("genuine_token"), "no genuine page token to alter")
        self.assertEqual(res["notes"], [], res["notes"])
        bad = res["details"]["unexpected"]
        self.assertEqual(bad, [], "%d of %d page-token cases answered wrongly, e.g. %r" % (
            len(bad), res["details"]["cases"], bad[:5]))
        self.assertServerHealthy("page tokens")

    def test_02_continuation_flood(self):
        # Four connections, so that every worker thread of a 2-CPU server meets one: with fewer,
        # whether the well-behaved client's connection shares a poller with a flooded one is luck.
        res, good = self.with_good_client(hostile.attack_continuation_flood,
                                          total_bytes=n(8 * MiB, 4 * MiB), connections=4, hold_s=5,
                                          timeout=10, max_seconds=30)
        self.assertEqual(sorted(res["details"]["per_variant"]), ["many_headers", "unterminated"])
        self.assertServerHealthy("CONTINUATION flood")
        if self.TRANSPORT_FLOODS_BOUNDED:
            self.assertGoodClientServed(good, "CONTINUATION flood")

    def test_03_violation_flood_alone(self):
        res = hostile.attack_violation_flood(HOST, self.port, authors=n(1_300_000),
                                             bad_fields=n(5000, 200), concurrency=0,
                                             timeout=120, max_seconds=300)
        alone = res["details"]["alone"]
        mins = res["details"]["min_problems"]
        with self.subTest(payload="%d empty authors" % n(1_300_000)):
            info = alone["empty_authors"]
            self.assertBoundedViolations(info, "empty authors")
            self.assertTrue(any(f == "book.authors" or f.startswith("book.authors[")
                                for f in info["violation_fields"]),
                            "no violation names book.authors: %r" % info)
            self.assertIn("authors", info["full_message"], info)
        with self.subTest(payload="%d bad authors + bad fields" % n(5000, 200)):
            self.assertBoundedViolations(alone["bad_fields"], "bad fields",
                                         min_problems=mins["bad_fields"])
        with self.subTest(payload="100 bad authors + bad fields"):
            self.assertBoundedViolations(alone["bad_fields_100"], "100 bad authors",
                                         min_problems=mins["bad_fields_100"])
        self.assertServerHealthy("violation floods, alone")

    def test_04_violation_flood_concurrent(self):
        k = n(48, 4)
        res, good = self.with_good_client(
            hostile.attack_violation_flood, authors=n(1_300_000), bad_fields=n(5000, 200),
            concurrency=k, alone=False, timeout=180, max_seconds=300)
        for label, conc in res["details"]["concurrent"].items():
            with self.subTest(payload=label):
                self.assertEqual(conc["codes"], {"INVALID_ARGUMENT": k}, conc["codes"])
                for info in conc["all"]:
                    self.assertBoundedViolations(info, "%s (one of %d at once)" % (label, k))
        self.assertServerHealthy("violation floods, %d at once" % k)
        self.assertGoodClientServed(good, "violation floods")

    def test_05_compression_bomb(self):
        inflated = max(16 * MiB, n(256 * MiB))
        res = hostile.attack_compression_bomb(HOST, self.port, inflated=inflated, timeout=60,
                                              max_seconds=180)
        per = res["details"]["per_encoding"]
        self.assertEqual(sorted(per), ["deflate", "gzip"])
        for enc, info in per.items():
            with self.subTest(encoding=enc, inflated=inflated):
                outs = [r.get("outcome") for r in info["results"]]
                self.assertEqual(outs, ["RESOURCE_EXHAUSTED"], info)
        self.assertServerHealthy("compression bomb")

    def test_06_small_compressed_create_is_ok(self):
        for comp in (grpc.Compression.Gzip, grpc.Compression.Deflate):
            with self.subTest(compression=comp.name):
                book_id = "hostile-%s-%d" % (comp.name.lower(), int(time.time() * 1000) % 10**9)
                book = harness.make_book("Compressed " + comp.name, ["Zip Author"], "Deflate Press")
                created = self.stub.CreateBook(CreateBookRequest(book=book, book_id=book_id),
                                               compression=comp, timeout=30)
                self.assertEqual(created.name, "books/" + book_id)
                self.assertEqual(self.stub.GetBook(GetBookRequest(name=created.name),
                                                   compression=comp, timeout=30), created)
        self.assertServerHealthy("compressed CreateBook")

    def test_07_random_bytes(self):
        res = hostile.attack_random_bytes(HOST, self.port, per_method=n(100, 10), timeout=30,
                                          max_seconds=300)
        self.assertEqual(sorted(res["details"]["per_method"]),
                         sorted(hostile.RANDOM_BYTES_METHODS))
        bad = res["details"]["bad"]
        self.assertEqual(bad, [], "%d random payloads answered %s, e.g. %r" % (
            len(bad), sorted({b["code"] for b in bad}), bad[:5]))
        self.assertServerHealthy("random bytes")

    def test_08_oversized_metadata(self):
        res = hostile.attack_oversized_metadata(
            HOST, self.port, big_value=MiB, many=10000, held_connections=n(2),
            held_streams=n(50, 5), held_value=256 * 1024, hold_s=2, timeout=30, max_seconds=180)
        cases = res["details"]["cases"]
        for label, out in cases.items():
            if label.startswith("grpcio "):
                with self.subTest(case=label):
                    if not self.front_refusal(out):
                        self.assertIn(out["outcome"], ("RESOURCE_EXHAUSTED", "INTERNAL",
                                                       "UNAVAILABLE"), out)
            elif label.startswith("h2 ") and "SETTINGS acked" in label:
                # A client that acknowledged the server's SETTINGS knows the limit.
                with self.subTest(case=label):
                    oc = out["outcome"]
                    self.assertTrue(oc in ("RESOURCE_EXHAUSTED", "INTERNAL") or
                                    oc.startswith(("RST_STREAM:", "GOAWAY:", "CLOSED:")),
                                    out)
            # "SETTINGS never acked" and "held": gRPC core 1.51 applies its
            # SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged it, so those
            # calls may succeed; they must only not hurt the server (checked below).
        self.assertServerHealthy("oversized metadata")

    def test_09_odd_paths(self):
        res = hostile.attack_odd_paths(HOST, self.port, timeout=5.0, max_seconds=300)
        per = res["details"]["per_path"]
        self.assertEqual(len(per), len(hostile.ODD_PATHS))
        for label, out in per.items():
            with self.subTest(path=label):
                oc = out["outcome"]
                ok = oc == "UNIMPLEMENTED" or oc.startswith(("RST_STREAM:", "GOAWAY:", "CLOSED:"))
                ok = ok or self.front_refusal(out)
                if label == "16 KiB":
                    # Under the default header list limits (64 KiB per call, 128 KiB in core)
                    # it is UNIMPLEMENTED; with a smaller BOOKS_MAX_METADATA_BYTES, refusing it
                    # is right too.
                    ok = ok or oc in ("RESOURCE_EXHAUSTED", "INTERNAL")
                if label == "dot segments" and self.BEHIND_PROXY:
                    # Normalised to /grpc.health.v1.Health/Check, which reads the GetBook body
                    # as a HealthCheckRequest for a service nobody hosts.
                    ok = ok or oc == "NOT_FOUND"
                self.assertTrue(ok, "%s -> %r" % (label, out))
        self.assertServerHealthy("odd paths")

    def test_10_idle_connections(self):
        res, good = self.with_good_client(hostile.attack_idle_connections, count=n(3000, 100),
                                          hold_s=3, timeout=10, max_seconds=120)
        self.assertGreater(res["details"]["opened"], 0, res)
        self.assertServerHealthy("idle connections")
        self.assertGoodClientServed(good, "idle connections")

    def test_11_bodiless_streams(self):
        res, good = self.with_good_client(hostile.attack_bodiless_streams, connections=n(20, 2),
                                          hold_s=3, timeout=10, max_seconds=120)
        self.assertGreater(res["details"]["streams_opened"], 0, res)
        self.assertServerHealthy("bodiless streams")
        self.assertGoodClientServed(good, "bodiless streams")

    def test_12_rapid_reset(self):
        res, good = self.with_good_client(hostile.attack_rapid_reset, connections=4,
                                          streams_per_conn=n(10000, 500), timeout=10,
                                          max_seconds=30)
        self.assertGreater(res["details"]["streams_total"], 0, res)
        self.assertServerHealthy("rapid reset")
        if self.TRANSPORT_FLOODS_BOUNDED:
            self.assertGoodClientServed(good, "rapid reset")

    def test_13_ping_flood(self):
        res, good = self.with_good_client(hostile.attack_ping_flood, pings=n(20000, 1000),
                                          timeout=10, max_seconds=30)
        self.assertEqual(sorted(res["details"]["per_variant"]), ["alone", "interleaved"])
        self.assertServerHealthy("PING flood")
        self.assertGoodClientServed(good, "PING flood")

    def test_99_every_seeded_book_intact(self):
        self.assertEqual(hostile.check_books(HOST, self.port, self.books, timeout=30), [])


@unittest.skipUnless(proxy.available(), "nghttpx (Debian's nghttp2-proxy) is not installed")
class HostileThroughNghttpxTest(HostileTest):
    """The same attacks through nghttpx configured from docs/nghttpx.conf: here every flood must
    also leave the well-behaved client served while it goes on."""

    TRANSPORT_FLOODS_BOUNDED = True
    BEHIND_PROXY = True

    @classmethod
    def front_port(cls):
        cls.proxy = proxy.Nghttpx(cls.server.port).start()
        cls.addClassCleanup(cls.proxy.stop)
        return cls.proxy.port


if __name__ == "__main__":
    unittest.main()
