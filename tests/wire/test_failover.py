"""Wire tests: the postgresql: store through a real failover manager. A three-node Patroni 3.0
cluster on etcd 3.4 (tests/support/patroni.py: PostgreSQL 15, loopback, free ports,
synchronous_mode on, ttl 6 / loop_wait 1 / retry_timeout 2), one for the whole module, and
books-server on the multi-host URI naming every node, under load: 8 writers (CreateBook with a
request_id and no book_id, each retried with the same request on UNAVAILABLE, UNKNOWN and
DEADLINE_EXCEEDED, 50 ms apart) and 2 readers (GetBook of acknowledged books, ListBooks), with the
record cache off so every read reaches PostgreSQL.

  * failover: kill -9 of the leader node (Patroni and PostgreSQL): the synchronous standby is
    promoted; the first acknowledged create after the promotion comes within a generous bound
    (FIRST_ACK_BOUND_S; the measured value is printed), no create waits for its deadline;
  * the killed node comes back as a standby: nothing is written to it (no create fails INTERNAL,
    no session of books-server stays on it), and a server whose URI names it first and sets no
    target_session_attrs asks for read-write itself (its "session settings" line says so) and
    writes to the leader;
  * switchover: a planned one, under the same load, with the same checks;
  after each: every acknowledged book is on the new leader (psql there), no request was made
  twice (every row decoded, counted per request), no acknowledged book was ever NOT_FOUND;
  * a database frozen behind pgproxy (sockets open, nothing forwarded): first only the existing
    connections (new ones pass): the connections caught are dropped and the calls on them fail
    fast, and the server goes on through new connections while the freeze lasts; then only the
    writer's connection, as a round's COMMIT goes by: the watchdog drops it, the creates are
    looked up and written again, each once, within the bound; then new connections too: calls fail fast (UNAVAILABLE with RetryInfo, UNKNOWN for a create that may
    have committed) and health says NOT_SERVING within silence_timeout_ms; after thaw() it serves
    again.
Time: about a minute (the cluster's start and one rejoin are most of it).

Missing patroni or etcd fails the module with the Debian package to install (never a skip).

Measurements (not run by ctest): /usr/bin/python3 test_failover.py measure [--failovers 5]
[--switchovers 5] [--freezes 3] prints, for each unplanned failover and switchover, Patroni's
promotion (from its log, and as seen), the first acknowledged create after it, the creates that
waited for their deadline, acknowledged creates lost and made twice; for each freeze, the time
until calls fail fast, until health says NOT_SERVING, and until the server serves again after
thaw. Run from tests/wire with BOOKS_SERVER pointing at the binary (default build/books-server).

Run by hand:  cd tests/wire && /usr/bin/python3 -m unittest -v test_failover
"""

import os
import random
import re
import sys
import threading
import time
import unittest
import uuid

import grpc

import harness
from harness import CreateBookRequest, GetBookRequest, ListBooksRequest, make_book

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "support"))
import patroni  # noqa: E402
import pgproxy  # noqa: E402

health_pb2 = harness.health_pb2
SERVICE = "books.v1.BooksService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

WRITERS, READERS = 8, 2
CREATE_TIMEOUT_S = 10.0       # each CreateBook call's deadline
READ_TIMEOUT_S = 10.0        # above silence_timeout_ms: a read ends by the bound
RETRY_PAUSE_S = 0.05          # a test client that retries fast, to see when the server is back
WRITE_PAUSE_S = 0.01          # between one writer's creates: creates are always in flight
FIRST_ACK_BOUND_S = 3.0       # promotion -> first acknowledged create: generous (goal: 1 s)
SILENCE_MS = 2000             # silence_timeout_ms of the frozen-database test
FAIL_FAST_MARGIN_S = 1.5      # what a loaded machine may add to the bound
PHASE_TIMEOUT_S = 60.0        # any wait for load to make progress: a bound, not an expectation
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.DEADLINE_EXCEEDED}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"

CLUSTER = None


def setUpModule():
    global CLUSTER
    patroni.require()  # fails naming the Debian packages to install; never a skip
    t = time.monotonic()
    CLUSTER = patroni.PatroniCluster.start(n=3, ttl=6, loop_wait=1, retry_timeout=2)
    print("\n[failover] cluster up in %.1f s, leader %s, sync standby %s" %
          (time.monotonic() - t, CLUSTER.leader(), CLUSTER.sync_standby()), file=sys.stderr)


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


def server_uri(cluster, **params):
    """The multi-host URI (every node, target_session_attrs=read-write, connect_timeout=2) with the
    store's parameters for these tests: the record cache off, so every read reaches PostgreSQL."""
    return cluster.uri(cache_mb="0", **params)


class Load:
    """WRITERS writers and READERS readers on their own channels until stop(). Every call is
    recorded; acknowledged creates keep their request id, name, title and time."""

    def __init__(self, port, tag, writers=WRITERS, readers=READERS):
        self.port, self.tag = port, tag
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.sent = {}          # request id -> title, before the first attempt
        self.acked = {}         # request id -> (name, title, time.time() of the answer)
        self.calls = []         # (kind, started, ended, code name)
        self.not_found = []     # acknowledged books answered NOT_FOUND
        self.bad = []           # answers no caller should see
        self.no_retry_info = [] # UNAVAILABLE without a RetryInfo
        self.threads = [threading.Thread(target=self._writer, args=(k,), daemon=True)
                        for k in range(writers)]
        self.threads += [threading.Thread(target=self._reader, args=(k,), daemon=True)
                         for k in range(readers)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(CREATE_TIMEOUT_S + 10)
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError("%d load threads still running after stop" % len(alive))

    def _record(self, kind, t0, code):
        with self.lock:
            self.calls.append((kind, t0, time.time(), code))

    def _writer(self, k):
        ch = harness.insecure_channel(self.port)
        stub = harness.books_pb2_grpc.BooksServiceStub(ch)
        i = 0
        try:
            while not self.stop_ev.is_set():
                rid = str(uuid.uuid4())
                title = "fo-%s-w%d-%05d" % (self.tag, k, i)
                i += 1
                book = make_book(title, ["Writer %d" % k], "Failover Press")
                with self.lock:
                    self.sent[rid] = title
                while not self.stop_ev.is_set():
                    t0 = time.time()
                    try:
                        got = stub.CreateBook(CreateBookRequest(book=book, request_id=rid),
                                              timeout=CREATE_TIMEOUT_S)
                    except grpc.RpcError as e:
                        self._record("create", t0, e.code().name)
                        if e.code() not in RETRYABLE:
                            with self.lock:
                                self.bad.append("create %s: %s %s" % (rid, e.code().name,
                                                                      e.details()))
                            return
                        if e.code() == grpc.StatusCode.UNAVAILABLE and \
                                RETRY_INFO not in harness.error_details(e).type_urls:
                            with self.lock:
                                self.no_retry_info.append(e.details())
                        self.stop_ev.wait(RETRY_PAUSE_S)
                        continue
                    self._record("create", t0, "OK")
                    with self.lock:
                        if got.display_name != title:
                            self.bad.append("create %s answered with %r" % (rid, got))
                        self.acked[rid] = (got.name, title, time.time())
                    break
                self.stop_ev.wait(WRITE_PAUSE_S)
        finally:
            ch.close()

    def _reader(self, k):
        ch = harness.insecure_channel(self.port)
        stub = harness.books_pb2_grpc.BooksServiceStub(ch)
        rng = random.Random(k)
        n = 0
        try:
            while not self.stop_ev.is_set():
                n += 1
                with self.lock:
                    known = list(self.acked.values())[-500:]
                t0 = time.time()
                try:
                    if n % 8 == 0 or not known:
                        stub.ListBooks(ListBooksRequest(page_size=20), timeout=READ_TIMEOUT_S)
                        self._record("list", t0, "OK")
                    else:
                        name, title, _ = rng.choice(known)
                        got = stub.GetBook(GetBookRequest(name=name), timeout=READ_TIMEOUT_S)
                        self._record("get", t0, "OK")
                        if got.display_name != title:
                            with self.lock:
                                self.bad.append("get %s answered with %r" % (name, got))
                except grpc.RpcError as e:
                    self._record("read", t0, e.code().name)
                    if e.code() == grpc.StatusCode.NOT_FOUND:
                        with self.lock:
                            self.not_found.append(name)
                    elif e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.DEADLINE_EXCEEDED):
                        with self.lock:
                            self.bad.append("read: %s %s" % (e.code().name, e.details()))
                self.stop_ev.wait(0.005)
        finally:
            ch.close()

    # -- what happened ---------------------------------------------------------------------------
    def acks(self):
        with self.lock:
            return len(self.acked)

    def wait_acks(self, more, timeout=PHASE_TIMEOUT_S):
        want = self.acks() + more
        harness.wait_for(lambda: self.acks() >= want or self.bad, timeout=timeout,
                         what="%d more acknowledged creates" % more)

    def first_ack_after(self, t, timeout=PHASE_TIMEOUT_S):
        """time.time() of the first create acknowledged after t (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                after = [at for _, _, at in self.acked.values() if at > t]
            if after:
                return min(after)
            if self.bad:
                break
            time.sleep(0.02)
        raise AssertionError("no create acknowledged after %.1f s; bad answers: %r" %
                             (timeout, self.bad[:5]))

    def waited_for_deadline(self, since=0.0):
        """Creates that ended DEADLINE_EXCEEDED, or at their deadline, after `since`."""
        with self.lock:
            return [c for c in self.calls if c[0] == "create" and c[1] >= since and
                    (c[3] == "DEADLINE_EXCEEDED" or c[2] - c[1] >= CREATE_TIMEOUT_S - 0.2)]

    def codes(self, since=0.0, until=None):
        out = {}
        with self.lock:
            for kind, t0, t1, code in self.calls:
                if t0 >= since and (until is None or t0 <= until):
                    out[code] = out.get(code, 0) + 1
        return out


def rows_on(cluster, member):
    """{request_id: [(name, title), ...]} of every row on that node, the Book decoded."""
    out = cluster.psql(member, "SELECT name, coalesce(request_id::text, ''), encode(book, 'hex') "
                               "FROM books", timeout=120)
    rows = {}
    for line in out.splitlines():
        name, rid, hexbook = line.split("|")
        title = harness.books_pb2.Book.FromString(bytes.fromhex(hexbook)).display_name
        rows.setdefault(rid, []).append((name, title))
    return rows


def check_books(case, cluster, loads):
    """Every acknowledged create is on the leader, as acknowledged; no request was made twice;
    every row is one some writer sent."""
    # What was acknowledged before the rows are read (the load may still run).
    acked = []
    for load in loads:
        with load.lock:
            acked += list(load.acked.items())
    leader = cluster.leader()
    rows = rows_on(cluster, leader)
    titles = {}
    for made in rows.values():
        for _, title in made:
            titles[title] = titles.get(title, 0) + 1
    lost, twice = [], [t for t, n in titles.items() if n > 1]
    for rid, (name, title, _) in acked:
        if rows.get(rid) != [(name, title)]:
            lost.append((rid, name, title, rows.get(rid)))
    sent = {title for load in loads for title in load.sent.values()}
    foreign = [t for t in titles if t.startswith("fo-") and t not in sent]
    if lost:
        # Where are they? Every node, and who leads (for the report).
        where = {}
        for m in cluster.members():
            try:
                where[m] = cluster.psql(m, "SELECT count(*) FROM books WHERE request_id IN (%s)" %
                                        ",".join("'%s'" % x[0] for x in lost[:20]))
            except Exception as e:  # noqa: BLE001 (a node may be down)
                where[m] = repr(e)
        say("acknowledged creates missing on %s: %r; on each node: %r; members: %r; acked at %r"
            % (leader, lost[:5], where, cluster.members_view(),
               [at for rid, (_, _, at) in acked for x in lost[:5] if x[0] == rid]))
    case.assertEqual(lost, [], "acknowledged creates missing or changed on %s" % leader)
    case.assertEqual(twice, [], "requests made twice")
    case.assertEqual(foreign, [], "rows nobody sent")
    return {"rows": sum(len(v) for v in rows.values()), "lost": len(lost), "twice": len(twice)}


def health_of(port, service=SERVICE):
    ch = harness.insecure_channel(port)
    try:
        return harness.health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2).status
    except grpc.RpcError:
        return None
    finally:
        ch.close()


class HealthWatch:
    """Polls the server's health every 20 ms in a thread: the first time.time() it was seen
    NOT_SERVING / SERVING after mark()."""

    def __init__(self, port):
        self.port = port
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.seen = []  # (time, status)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        ch = harness.insecure_channel(self.port)
        stub = harness.health_pb2_grpc.HealthStub(ch)
        try:
            while not self.stop_ev.is_set():
                try:
                    s = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE),
                                   timeout=1).status
                except grpc.RpcError:
                    s = None
                with self.lock:
                    self.seen.append((time.time(), s))
                self.stop_ev.wait(0.02)
        finally:
            ch.close()

    def first(self, status, after):
        with self.lock:
            for t, s in self.seen:
                if t > after and s == status:
                    return t
        return None

    def wait(self, status, after, timeout=PHASE_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.first(status, after)
            if t is not None:
                return t
            time.sleep(0.02)
        raise AssertionError("health never %s within %.0f s" % (status, timeout))

    def stop(self):
        self.stop_ev.set()
        self.thread.join(10)


def standby_sessions(cluster, member):
    """Client sessions of books-server on that node."""
    return int(cluster.psql(member, "SELECT count(*) FROM pg_stat_activity WHERE "
                                    "application_name = 'books-server' AND "
                                    "backend_type = 'client backend'", db="postgres"))


def settings_line(srv):
    for l in srv.log_lines(strict=False):
        if l.get("message", "").endswith("session settings"):
            return l
    raise AssertionError("no session settings line:\n%s" % srv.output_tail())


def say(*args):
    print("[failover]", *args, file=sys.stderr, flush=True)


# ---- the scenarios, shared by the tests and `measure` ----------------------------------------------

def numbers(c, load, old, new, t_event, promoted):
    """What a failover or switchover begun at t_event (time.time()) did: Patroni's times from the
    new leader's log and as seen, the first create acknowledged after the promotion, the creates
    that waited for their deadline, and the calls' codes until that first acknowledgement."""
    first = load.first_ack_after(promoted)
    lt = c.log_times(new, since=t_event)
    load.wait_acks(100)
    return {"old": old, "new": new, "event": t_event, "promoted": promoted,
            "promotion_s": promoted - t_event,
            "lock_log_s": lt["lock"] - t_event if lt["lock"] else None,
            "ready_log_s": lt["ready"] - t_event if lt["ready"] else None,
            "first_ack_s": first - promoted,
            "first_ack_after_ready_s": first - lt["ready"] if lt["ready"] else None,
            "deadline": len(load.waited_for_deadline(t_event)),
            "codes": load.codes(since=t_event - 1, until=first)}


def unplanned_failover(c, load):
    """kill -9 of the leader node under `load`; returns numbers() (times in seconds)."""
    old = c.leader()
    load.wait_acks(200)
    t_kill = c.kill9_leader()
    new, promoted = c.wait_leader(not_=old)
    return numbers(c, load, old, new, t_kill, promoted)


def planned_switchover(c, load):
    """A switchover through Patroni's REST API under `load`; numbers() from its request."""
    old = c.leader()
    load.wait_acks(200)
    new, promoted = c.switchover()
    return numbers(c, load, old, new, c.last_promotion["requested_at"], promoted)


def frozen(c, px, load, watch, bound_s, new_connections):
    """Freezes the proxy under load; returns the times (from the freeze) until calls failed fast,
    until health said NOT_SERVING (None when it never did), and until a create was acknowledged
    again (while frozen when new connections pass, else after thaw)."""
    load.wait_acks(50)
    t0 = time.time()
    px.freeze(new_connections=new_connections)
    out = {"new_connections": new_connections}
    if new_connections:
        t_ns = watch.wait(NOT_SERVING, t0, timeout=bound_s + 30)
        out["not_serving_s"] = t_ns - t0
        time.sleep(1.0)
        # The calls begun while it said NOT_SERVING: each answered at once.
        with load.lock:
            during = [(t1 - s, code) for k, s, t1, code in load.calls if s > t_ns + 0.05]
        out["calls_during"] = sorted({code for _, code in during})
        out["calls_during_n"] = len(during)
        out["calls_during_slowest_s"] = max([d for d, _ in during], default=0.0)
        t_thaw = time.time()
        px.thaw()
        t_ok = load.first_ack_after(t_thaw)
        out["serving_after_thaw_s"] = watch.wait(SERVING, t_thaw) - t_thaw
        out["first_ack_after_thaw_s"] = t_ok - t_thaw
    else:
        t_ok = load.first_ack_after(t0 + 0.05)
        out["first_ack_while_frozen_s"] = t_ok - t0
        t_ns = watch.first(NOT_SERVING, t0)
        out["not_serving_s"] = t_ns - t0 if t_ns else None
        px.thaw()
    # The calls caught: in flight at the freeze, or begun while it was being noticed. How long
    # each waited once the freeze had begun: none longer than the bound (plus a margin), none
    # until its deadline.
    with load.lock:
        caught = [(k, t1 - max(s, t0), code) for k, s, t1, code in load.calls
                  if t1 > t0 and s < t0 + bound_s]
    out["caught"] = len(caught)
    out["fail_fast_s"] = max([t for _, t, _ in caught], default=0.0)
    out["caught_codes"] = sorted({code for _, _, code in caught})
    out["deadline"] = len(load.waited_for_deadline(t0))
    load.wait_acks(20)
    return out


def held_commit(px, load, bound_s):
    """The proxy stops forwarding on the writer's connection (both ways, sockets open) as the
    Parse of a round's COMMIT passes: the round's messages go no further, the store hears nothing.
    Returns how long the creates caught waited once it fired, their codes, and how many waited
    for their deadline."""
    load.wait_acks(50)
    px.freeze_after(pgproxy.query_matches(re.compile(r"^COMMIT$")), direction="both",
                    scope="connection")
    harness.wait_for(lambda: px.fired("freeze_after") >= 1, timeout=PHASE_TIMEOUT_S,
                     what="a COMMIT through the proxy")
    t0 = px.events("freeze_after")[-1]["wall"]
    load.first_ack_after(t0)
    load.wait_acks(50)
    px.thaw()
    with load.lock:
        caught = [(k, t1 - max(s, t0), code) for k, s, t1, code in load.calls
                  if k == "create" and t1 > t0 and s < t0 + bound_s]
    return {"caught": len(caught), "waited_s": max([t for _, t, _ in caught], default=0.0),
            "codes": sorted({code for _, _, code in caught}),
            "deadline": len(load.waited_for_deadline(t0))}


def fmt(x):
    return "n/a" if x is None else "%.2f" % x


# ---- the tests ----------------------------------------------------------------------------------

class FailoverTest(harness.WireTestCase):

    def setUp(self):
        super().setUp()
        CLUSTER.wait_replicas()
        self.db_reset()

    def db_reset(self):
        CLUSTER.psql_primary("DROP TABLE IF EXISTS books, books_schema")

    def check_load(self, load):
        self.assertEqual(load.bad, [], "answers no caller should see (INTERNAL, ...)")
        self.assertEqual(load.not_found, [], "acknowledged books answered NOT_FOUND")
        self.assertEqual(load.no_retry_info[:3], [], "UNAVAILABLE without RetryInfo")

    def test_failover_rejoin_and_switchover(self):
        c = CLUSTER
        srv = self.start_server(env={"BOOKS_STORE": server_uri(c)}, label="multi-host")
        line = settings_line(srv)
        self.assertTrue(line["target_session_attrs"].startswith("read-write (the URI's)"), line)
        self.assertEqual(line["hosts"], 3, line)
        load = Load(srv.port, "a").start()
        load2 = None
        try:
            # (a) kill -9 of the leader node.
            fo = unplanned_failover(c, load)
            say("kill -9 %s -> %s promoted %.2f s after the kill (log: ready %s s); first "
                "acknowledged create %.2f s after the promotion; calls meanwhile %s" % (
                    fo["old"], fo["new"], fo["promotion_s"], fmt(fo["ready_log_s"]),
                    fo["first_ack_s"], fo["codes"]))
            self.check_load(load)
            self.assertLess(fo["first_ack_s"], FIRST_ACK_BOUND_S)
            self.assertEqual(fo["deadline"], 0, "creates waited for their deadline")
            check_books(self, c, [load])

            # (c) the killed node comes back as a standby: never written to.
            c.restart_member(fo["old"])
            c.wait_replicas()
            self.assertTrue(c.in_recovery(fo["old"]))
            load.wait_acks(200)
            for _ in range(5):
                self.assertEqual(standby_sessions(c, fo["old"]), 0,
                                 "books-server keeps a session on the standby %s" % fo["old"])
                time.sleep(0.2)
            # A URI that names the standby first and sets no target_session_attrs: the store asks
            # for read-write itself and writes to the leader, never to the standby.
            leader = c.leader()
            order = [fo["old"]] + [m for m in c.members() if m != fo["old"]]
            uri = "postgresql://postgres@%s/books?cache_mb=0" % ",".join(
                "127.0.0.1:%d" % c.nodes[m].pg_port for m in order)
            srv2 = self.start_server(env={"BOOKS_STORE": uri}, label="standby-first")
            line = settings_line(srv2)
            self.assertEqual(line["target_session_attrs"],
                             "read-write (the store's default: the URI sets none)", line)
            load2 = Load(srv2.port, "c", writers=2, readers=1).start()
            try:
                load2.wait_acks(50)
            finally:
                load2.stop()
            self.check_load(load2)
            self.assertEqual(load2.codes().get("INTERNAL", 0), 0)
            self.assertEqual(standby_sessions(c, fo["old"]), 0)
            self.assertEqual(c.leader(), leader)
            srv2.stop_and_check()
            # The standbys were only ever met as connections libpq refused ("session is
            # read-only"), never as a statement that failed (25006).
            self.assertFalse(any("read-only transaction" in l.get("message", "") or
                                 "25006" in l.get("message", "")
                                 for l in srv.log_lines(strict=False) + srv2.log_lines(strict=False)),
                             "the store sent a write to a read-only session")

            # (b) a planned switchover under the same load.
            sw = planned_switchover(c, load)
            say("switchover %s -> %s promoted %.2f s after the request (log: ready %s s); first "
                "acknowledged create %.2f s after the promotion; calls meanwhile %s" % (
                    sw["old"], sw["new"], sw["promotion_s"], fmt(sw["ready_log_s"]),
                    sw["first_ack_s"], sw["codes"]))
            self.assertLess(sw["first_ack_s"], FIRST_ACK_BOUND_S)
            self.assertEqual(sw["deadline"], 0, "creates waited for their deadline")
        finally:
            load.stop()
        self.check_load(load)
        counts = check_books(self, c, [load] + ([load2] if load2 else []))
        say("%d creates acknowledged, %d rows, none lost, none made twice; calls: %s" % (
            len(load.acked) + (len(load2.acked) if load2 else 0), counts["rows"], load.codes()))
        srv.stop_and_check()

    def test_frozen_database(self):
        c = CLUSTER
        leader = c.leader()
        px = pgproxy.PgProxy(("127.0.0.1", c.nodes[leader].pg_port))
        px.start()
        self.addCleanup(px.stop)
        uri = px.via(c.member_uri(leader)) + "?cache_mb=0&silence_timeout_ms=%d" % SILENCE_MS
        srv = self.start_server(env={"BOOKS_STORE": uri}, label="frozen")
        watch = HealthWatch(srv.port)
        self.addCleanup(watch.stop)
        load = Load(srv.port, "d", writers=4, readers=2).start()
        bound = SILENCE_MS / 1000.0
        try:
            # Only the connections open now freeze; new ones pass: the store drops those caught
            # and goes on through new ones, while the freeze lasts.
            f1 = frozen(c, px, load, watch, bound, new_connections=False)
            say("freeze of the open connections: %d calls caught, all ended within %.2f s (%s); "
                "a create acknowledged again %.2f s after the freeze, still frozen" % (
                    f1["caught"], f1["fail_fast_s"], f1["caught_codes"],
                    f1["first_ack_while_frozen_s"]))
            self.check_load(load)
            self.assertLess(f1["fail_fast_s"], bound + FAIL_FAST_MARGIN_S)
            self.assertEqual(f1["deadline"], 0)
            # Only the writer's connection stops, as a round's COMMIT goes by: its server process
            # works on nothing for it, so the watchdog drops it; the round's creates are looked
            # up on a new connection, not found, and written again, each once.
            o = held_commit(px, load, bound)
            say("a round held on the way: %d creates caught, the longest waited %.2f s (%s)" % (
                o["caught"], o["waited_s"], o["codes"]))
            self.check_load(load)
            self.assertLess(o["waited_s"], bound + FAIL_FAST_MARGIN_S)
            self.assertEqual(o["deadline"], 0)
            self.assertTrue(any("creates were found stored" in l.get("message", "")
                                for l in srv.log_lines(strict=False)), "no lookup after the loss")
            # Everything frozen, new connections too: the database is unreachable.
            f2 = frozen(c, px, load, watch, bound, new_connections=True)
            say("freeze of everything: %d calls caught, all ended within %.2f s (%s); "
                "NOT_SERVING after %.2f s; then %d calls %s, the slowest %.3f s; after thaw(): "
                "SERVING in %.2f s, a create acknowledged in %.2f s" % (
                    f2["caught"], f2["fail_fast_s"], f2["caught_codes"], f2["not_serving_s"],
                    f2["calls_during_n"], f2["calls_during"], f2["calls_during_slowest_s"],
                    f2["serving_after_thaw_s"], f2["first_ack_after_thaw_s"]))
            self.check_load(load)
            self.assertLess(f2["fail_fast_s"], bound + FAIL_FAST_MARGIN_S)
            self.assertLess(f2["not_serving_s"], bound + FAIL_FAST_MARGIN_S)
            self.assertEqual(f2["deadline"], 0)
            self.assertTrue(set(f2["caught_codes"]) <= {"OK", "UNAVAILABLE", "UNKNOWN"},
                            f2["caught_codes"])
            # While it is unreachable every call fails at once: UNAVAILABLE (with RetryInfo).
            self.assertGreater(f2["calls_during_n"], 0)
            self.assertEqual(f2["calls_during"], ["UNAVAILABLE"])
            self.assertLess(f2["calls_during_slowest_s"], 0.5)
        finally:
            load.stop()
        self.check_load(load)
        rows = rows_on(c, c.leader())
        for rid, (name, title, _) in load.acked.items():
            self.assertEqual(rows.get(rid), [(name, title)], "acknowledged create lost")
        self.assertTrue(any("no primary answered within silence_timeout_ms" in
                            l.get("message", "") for l in srv.log_lines(strict=False)),
                        srv.output_tail())
        srv.stop_and_check()


# ---- measure ------------------------------------------------------------------------------------

def measure(failovers, switchovers, freezes):
    global CLUSTER
    patroni.require()
    CLUSTER = c = patroni.PatroniCluster.start(n=3, ttl=6, loop_wait=1, retry_timeout=2)
    try:
        say("cluster up: ttl 6, loop_wait 1, retry_timeout 2, synchronous_mode on")
        srv = harness.ServerProcess(env={"BOOKS_STORE": server_uri(c)}, label="measure")
        srv.start()
        srv.wait_listening()
        srv.wait_serving()
        load = Load(srv.port, "m").start()
        results = []
        try:
            for i in range(failovers):
                c.wait_replicas()
                time.sleep(0.4 * (i % 3))  # kills at different points of Patroni's loop
                r = unplanned_failover(c, load)
                r["kind"] = "kill -9"
                results.append(r)
                say("failover %d: %s -> %s, promoted %.2f s, first ack %.2f s after, deadline %d"
                    % (i + 1, r["old"], r["new"], r["promotion_s"], r["first_ack_s"],
                       r["deadline"]))
                c.restart_member(r["old"])
            for i in range(switchovers):
                c.wait_replicas()
                r = planned_switchover(c, load)
                r["kind"] = "switchover"
                results.append(r)
                say("switchover %d: %s -> %s, promoted %.2f s, first ack %.2f s after, deadline "
                    "%d" % (i + 1, r["old"], r["new"], r["promotion_s"], r["first_ack_s"],
                            r["deadline"]))
        finally:
            load.stop()
        c.wait_replicas()

        class Case(unittest.TestCase):
            def runTest(self):
                pass
        counts = check_books(Case(), c, [load])
        srv.stop()
        srv.cleanup()

        # Frozen database: a server through pgproxy to the leader.
        frz = []
        leader = c.leader()
        px = pgproxy.PgProxy(("127.0.0.1", c.nodes[leader].pg_port))
        px.start()
        uri = px.via(c.member_uri(leader)) + "?cache_mb=0"
        srv = harness.ServerProcess(env={"BOOKS_STORE": uri}, label="measure-frozen")
        srv.start()
        srv.wait_listening()
        srv.wait_serving()
        watch = HealthWatch(srv.port)
        load2 = Load(srv.port, "mf", writers=4, readers=2).start()
        try:
            for i in range(freezes):
                for new in (False, True):
                    r = frozen(c, px, load2, watch, 5.0, new_connections=new)
                    frz.append(r)
                    say("freeze %d (new connections %s): %r" % (i + 1, new, r))
        finally:
            load2.stop()
            watch.stop()
            srv.stop()
            srv.cleanup()
            px.stop()
        rows = rows_on(c, c.leader())
        lost2 = [rid for rid, (name, title, _) in load2.acked.items()
                 if rows.get(rid) != [(name, title)]]

        print("\n| # | event | leader key taken (log) s | promoted (log: ready) s | promoted "
              "(seen) s | first ack after promotion (seen) s | after ready (log) s | creates at "
              "their deadline | calls from the event to the first ack |")
        print("|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(results):
            print("| %d | %s %s->%s | %s | %s | %.2f | %.2f | %s | %d | %s |" % (
                i + 1, r["kind"], r["old"], r["new"], fmt(r["lock_log_s"]),
                fmt(r["ready_log_s"]), r["promotion_s"], r["first_ack_s"],
                fmt(r["first_ack_after_ready_s"]), r["deadline"],
                ", ".join("%s %d" % kv for kv in sorted(r["codes"].items()))))
        print("\nacknowledged %d creates over %d failovers and %d switchovers: lost %d, made "
              "twice %d (%d rows)" % (len(load.acked), failovers, switchovers, counts["lost"],
                                      counts["twice"], counts["rows"]))
        print("\n| # | freeze | calls caught | all ended within s | their codes | NOT_SERVING "
              "after s | create acknowledged again s |")
        print("|---|---|---|---|---|---|---|")
        for i, r in enumerate(frz):
            print("| %d | %s | %d | %.2f | %s | %s | %s |" % (
                i + 1, "everything" if r["new_connections"] else "open connections",
                r["caught"], r["fail_fast_s"], " ".join(r["caught_codes"]),
                fmt(r["not_serving_s"]),
                ("%.2f after thaw (SERVING %.2f)" % (r["first_ack_after_thaw_s"],
                                                   r["serving_after_thaw_s"]))
                if r["new_connections"] else "%.2f, still frozen" %
                r["first_ack_while_frozen_s"]))
        print("\nfrozen runs: %d creates acknowledged, lost %d; silence_timeout_ms 5000 "
              "(the default)" % (len(load2.acked), len(lost2)))
    finally:
        c.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        import argparse
        ap = argparse.ArgumentParser(prog="test_failover.py measure")
        ap.add_argument("--failovers", type=int, default=5)
        ap.add_argument("--switchovers", type=int, default=5)
        ap.add_argument("--freezes", type=int, default=3)
        a = ap.parse_args(sys.argv[2:])
        measure(a.failovers, a.switchovers, a.freezes)
    else:
        unittest.main()
