"""The self-test of tests/support/pgproxy.py, the PostgreSQL-protocol-aware fault proxy: a real
PostgreSQL 15 (pgcluster), Debian's psql and a tiny raw protocol client of this file's own through
the proxy, each fault proven on the wire and, where it matters, in the database:

  pass-through   psql with libpq's defaults (sslmode=prefer: an SSLRequest the server answers
                 'N'), the proxy answering 'N' itself (ssl="refuse"; sslmode=require then fails),
                 a GSSENCRequest, 40 connections at once, messages longer than the proxy's peek
                 window both ways, the extended protocol as books-server pipelines it;
  cuts           cut_after_commit: psql gets COMMIT's result then a broken connection, the row is
                 committed; the same on a BEGIN/INSERT/COMMIT pipeline + Sync (the last message is
                 CommandComplete COMMIT, then EOF, no ReadyForQuery); cut_before_commit: psql never
                 sees COMMIT, the row is committed; N shots; a reset instead of a FIN;
  connections    delay_new_connections delays psql's connect and a CancelRequest's connection by
                 about that long; refuse_new_connections; a black hole (psql's connect_timeout
                 ends it); set_upstream;
  freeze         a query hangs until thaw (psql and the raw client); new connections frozen
                 before any upstream connect; freeze_after: the server ran the statement (its
                 session is idle after it) while its answer is held, on every connection or one;
                 drop mode;
  cut_all        an idle psql session finds its connection gone;
  bounds         a startup packet or message length from the wire outside its bounds closes the
                 connection; stop() joins the thread and closes everything.

Threads only (never a fork: tests/check_no_fork.py); loopback only; every wait bounded. Run by hand:
cd tests/wire && /usr/bin/python3 -m unittest -v test_pgproxy
"""

import faulthandler
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("BOOKS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))
import pgcluster  # noqa: E402
import pgproxy  # noqa: E402
from pgproxy import C2S, S2C  # noqa: E402

# The module's time budget (as harness.py does for the others): every thread's Python stack, then
# exit 1, before ctest would kill the process silently.
faulthandler.enable()
faulthandler.dump_traceback_later(float(os.environ.get("BOOKS_WIRE_TIMEOUT_S") or 240), exit=True)

PSQL = os.path.join(pgcluster.PG_BIN, "psql")
IO_TIMEOUT_S = 10.0


def psql_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(dict({"PGCONNECT_TIMEOUT": "10"}, **extra))
    return env


def psql_cmd(port, sql):
    return [PSQL, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d",
            "books", "-v", "ON_ERROR_STOP=1", "-c", sql]


def psql(port, sql, timeout=20, **env):
    """psql -c sql through port: (exit code, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    r = subprocess.run(psql_cmd(port, sql), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=timeout, env=psql_env(**env))
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def lost(stderr):
    return ("server closed the connection unexpectedly" in stderr or
            "connection to server was lost" in stderr or "Connection reset" in stderr)


class MiniPg:
    """A raw protocol 3.0 client (trust authentication): what psql cannot do, exactly."""

    def __init__(self, port, ssl=False, gss=False, startup=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        self.answers = []
        if gss:
            self.answers.append(self.request(pgproxy.GSSENC_REQUEST_CODE))
        if ssl:
            self.answers.append(self.request(pgproxy.SSL_REQUEST_CODE))
        if startup:
            params = b"user\0postgres\0database\0books\0application_name\0minipg\0\0"
            self.sock.sendall(struct.pack("!ii", 8 + len(params), pgproxy.PROTOCOL_3_0) + params)
            self.pid, self.key = struct.unpack("!ii", [b for t, b in self.until_ready()
                                                       if t == "K"][0])

    def request(self, code):
        self.sock.sendall(struct.pack("!ii", 8, code))
        return self.recv_exact(1)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def read_msg(self):
        head = self.recv_exact(5)
        (n,) = struct.unpack("!i", head[1:])
        return chr(head[0]), self.recv_exact(n - 4)

    def until_ready(self):
        msgs = []
        while True:
            msgs.append(self.read_msg())
            if msgs[-1][0] == "Z":
                return msgs

    def send(self, type_, body):
        self.sock.sendall(type_.encode() + struct.pack("!i", len(body) + 4) + body)

    def query(self, sql):
        self.send("Q", sql.encode() + b"\0")
        return self.until_ready()

    def close(self):
        try:
            self.send("X", b"")
        except OSError:
            pass
        self.sock.close()


def extended(sql):
    """Parse, Bind, Execute of sql (unnamed statement and portal): what PQsendQueryParams sends
    in pipeline mode, before PQpipelineSync's Sync."""
    def msg(t, body):
        return t.encode() + struct.pack("!i", len(body) + 4) + body
    return (msg("P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0)) +
            msg("B", b"\0\0" + struct.pack("!hhh", 0, 0, 0)) +
            msg("E", b"\0" + struct.pack("!i", 0)))


SYNC = b"S\0\0\0\4"


def values(msgs):
    """The first column of every DataRow, as text."""
    out = []
    for t, body in msgs:
        if t == "D":
            (n,) = struct.unpack("!i", body[2:6])
            out.append(body[6:6 + n].decode())
    return out


def tags(msgs):
    return [b[:-1].decode() for t, b in msgs if t == "C"]


def sqlstate(msgs):
    for t, body in msgs:
        if t == "E":
            for f in body.split(b"\0"):
                if f[:1] == b"C":
                    return f[1:].decode()
    return None


class PgProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = pgcluster.PgCluster.start()
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.psql("CREATE TABLE t (id int PRIMARY KEY)")

    def setUp(self):
        self.px = pgproxy.PgProxy(("127.0.0.1", self.cluster.port))
        self.port = self.px.start()
        self.addCleanup(self.px.stop)

    def proxy(self, **kw):
        px = pgproxy.PgProxy(("127.0.0.1", self.cluster.port), **kw)
        px.start()
        self.addCleanup(px.stop)
        return px

    def mini(self, port=None, **kw):
        m = MiniPg(port or self.port, **kw)
        self.addCleanup(m.sock.close)
        return m

    def committed(self, id_):
        return self.cluster.psql("SELECT count(*) FROM t WHERE id = %d" % id_) == "1"

    def assertHangs(self, fn, seconds=0.4):
        """fn() (a recv) gets nothing within `seconds`."""
        with self.assertRaises(socket.timeout):
            fn(seconds)

    # -- pass-through ----------------------------------------------------------------------------

    def test_passthrough_psql_defaults_sslrequest(self):
        rc, out, err, _ = psql(self.port, "SELECT 1")
        self.assertEqual((rc, out.strip()), (0, "1"), err)
        counts = self.px.message_counts()
        # libpq's sslmode=prefer: an SSLRequest, answered by the server ('N': no SSL in the
        # cluster), then the startup in plain text on the same connection.
        self.assertEqual(counts[C2S].get("SSLRequest"), 1)
        self.assertEqual(counts[S2C].get("SSLResponse"), 1)
        self.assertEqual(counts[C2S].get("StartupMessage"), 1)
        self.assertEqual(counts[C2S].get("Q"), 1)
        self.assertEqual(counts[S2C].get("Z"), 2)
        self.assertEqual(self.px.statements(), ["SELECT 1"])
        self.assertEqual(self.px.startups()[0]["user"], "postgres")
        self.assertTrue(self.px.wait_for(lambda: self.px.stats()["active"] == 0, 5))
        self.assertEqual(self.px.count(C2S, "X"), 1)
        s = self.px.stats()
        self.assertEqual((s["accepted"], s["closed"], s["opaque"], s["protocol_errors"]),
                         (1, 1, 0, 0))
        # psql's Terminate, then its close: the proxy may see the server's close first.
        self.assertIn(s["close_reasons"], ({"client closed": 1}, {"server closed": 1}))

    def test_ssl_refused_by_the_proxy(self):
        px = self.proxy(ssl="refuse")
        rc, out, err, _ = psql(px.port, "SELECT 2")
        self.assertEqual((rc, out.strip()), (0, "2"), err)
        self.assertEqual(px.stats()["ssl_refused_by_proxy"], 1)
        self.assertNotIn("SSLRequest", px.message_counts()[C2S])  # the server never saw it
        rc, _, err, _ = psql(px.port, "SELECT 3", PGSSLMODE="require")
        self.assertNotEqual(rc, 0)
        self.assertIn("server does not support SSL", err)

    def test_gssenc_request(self):
        # Refused by the proxy (the default), then an SSLRequest answered by the server, as libpq
        # does with a Kerberos credential cache; the session works.
        m = self.mini(gss=True, ssl=True)
        self.assertEqual(m.answers, [b"N", b"N"])
        self.assertEqual(values(m.query("SELECT 4")), ["4"])
        self.assertEqual(self.px.stats()["gssenc_refused_by_proxy"], 1)
        # Passed through: PostgreSQL built with GSSAPI says 'G' on TCP (the connection is then
        # opaque: encrypted), else 'N'.
        px = self.proxy(gssenc="pass")
        g = self.mini(port=px.port, gss=True, startup=False)
        self.assertIn(g.answers[0], (b"G", b"N"))
        self.assertEqual(px.message_counts()[S2C].get("GSSENCResponse"), 1)
        self.assertEqual(px.stats()["opaque"], 1 if g.answers[0] == b"G" else 0)

    def test_many_connections_at_once(self):
        n, pids, errors = 40, [], []
        opened = threading.Barrier(n + 1, timeout=30)

        def one():
            try:
                m = MiniPg(self.port)
                opened.wait()          # all open at once
                pids.append(values(m.query("SELECT pg_backend_pid()"))[0])
                opened.wait()
                m.close()
            except Exception as e:  # noqa: BLE001: reported below
                errors.append(repr(e))
                opened.abort()
        threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        opened.wait()
        self.assertEqual(self.px.stats()["active"], n)
        opened.wait()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(set(pids)), n)
        self.assertTrue(self.px.wait_for(lambda: self.px.stats()["active"] == 0, 10))
        self.assertEqual(self.px.count(C2S, "Q"), n)

    def test_long_messages_both_ways(self):
        m = self.mini()
        big = "x" * 300000   # a Query far longer than the proxy's peek window
        self.assertEqual(values(m.query("SELECT length('%s')" % big)), ["300000"])
        self.assertEqual(values(m.query("SELECT repeat('y', 500000)")), ["y" * 500000])
        self.assertEqual(len(self.px.statements()[0]), pgproxy.PEEK)  # its first 16 KiB

    def test_extended_protocol_pipeline(self):
        m = self.mini()
        m.sock.sendall(extended("BEGIN") + extended("INSERT INTO t VALUES (101)") +
                       extended("COMMIT") + SYNC)
        msgs = m.until_ready()
        self.assertEqual(tags(msgs), ["BEGIN", "INSERT 0 1", "COMMIT"])
        self.assertEqual(self.px.statements(), ["BEGIN", "INSERT INTO t VALUES (101)", "COMMIT"])
        c = self.px.message_counts()[C2S]
        self.assertEqual((c["P"], c["B"], c["E"], c["S"]), (3, 3, 3, 1))

    # -- cuts ------------------------------------------------------------------------------------

    def test_cut_after_commit_psql(self):
        self.px.cut_after_commit()
        rc, out, err, _ = psql(self.port, "BEGIN; INSERT INTO t VALUES (1); COMMIT")
        self.assertEqual(rc, 2, (out, err))
        self.assertTrue(lost(err), err)
        self.assertEqual(out.split(), ["BEGIN", "INSERT", "0", "1", "COMMIT"])  # it got COMMIT's
        self.assertTrue(self.committed(1))
        self.assertEqual(self.px.fired("cut_after_commit"), 1)
        self.assertEqual(self.px.count(S2C, "Z"), 1)   # the startup's; never the COMMIT's
        self.assertEqual(len(self.px.events("cut_after_commit")), 1)
        # One shot: the next commit goes through.
        rc, _, err, _ = psql(self.port, "BEGIN; INSERT INTO t VALUES (2); COMMIT")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.px.fired("cut_after_commit"), 1)

    def test_cut_after_commit_pipeline(self):
        self.px.cut_after_commit()
        m = self.mini()
        m.sock.sendall(extended("BEGIN") + extended("INSERT INTO t VALUES (102)") +
                       extended("COMMIT") + SYNC)
        msgs = []
        with self.assertRaises(EOFError):
            while True:
                msgs.append(m.read_msg())
        self.assertEqual(msgs[-1], ("C", b"COMMIT\0"))
        self.assertNotIn("Z", [t for t, _ in msgs])
        self.assertTrue(self.committed(102))
        # With a reset instead of a FIN: the COMMIT's result still arrives, then ECONNRESET.
        self.px.cut_after_commit(rst=True)
        m = self.mini()
        m.sock.sendall(extended("BEGIN") + extended("INSERT INTO t VALUES (103)") +
                       extended("COMMIT") + SYNC)
        self.assertTrue(self.px.wait_for(lambda: self.px.fired("cut_after_commit") == 2, 5))
        msgs = []
        with self.assertRaises(ConnectionResetError):
            while True:
                msgs.append(m.read_msg())
        self.assertEqual(msgs[-1], ("C", b"COMMIT\0"))
        self.assertTrue(self.committed(103))

    def test_cut_before_commit_psql(self):
        self.px.cut_before_commit()
        rc, out, err, _ = psql(self.port, "BEGIN; INSERT INTO t VALUES (3); COMMIT")
        self.assertEqual(rc, 2, (out, err))
        self.assertTrue(lost(err), err)
        self.assertEqual(out.split(), ["BEGIN", "INSERT", "0", "1"])   # never learns the outcome
        self.assertTrue(self.committed(3))
        self.assertEqual(self.px.fired("cut_before_commit"), 1)
        self.assertEqual(self.px.stats()["close_reasons"].get("cut:cut_before_commit"), 1)

    def test_cut_n_shots_and_rollback_does_not_match(self):
        self.px.cut_after_commit(times=2)
        # A failed transaction's COMMIT answers ROLLBACK: no cut.
        rc, out, _, _ = psql(self.port, "BEGIN; SELECT 1/0; COMMIT")
        self.assertEqual(rc, 1)
        self.assertEqual(self.px.fired("cut_after_commit"), 0)
        for i in (4, 5):
            rc, _, err, _ = psql(self.port, "BEGIN; INSERT INTO t VALUES (%d); COMMIT" % i)
            self.assertEqual(rc, 2, err)
        rc, _, err, _ = psql(self.port, "BEGIN; INSERT INTO t VALUES (6); COMMIT")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.px.fired("cut_after_commit"), 2)
        self.assertTrue(all(self.committed(i) for i in (4, 5, 6)))

    def test_cut_with_reset(self):
        self.px.cut_on(pgproxy.query_matches("SELECT 7"), when="after", rst=True, name="q7")
        m = self.mini()
        m.send("Q", b"SELECT 7\0")
        with self.assertRaises((ConnectionResetError, EOFError)) as cm:
            m.until_ready()
        self.assertIsInstance(cm.exception, ConnectionResetError)
        self.assertEqual(self.px.fired("q7"), 1)

    # -- new connections -------------------------------------------------------------------------

    def test_delay_new_connections_psql_and_cancel(self):
        rc, _, err, base = psql(self.port, "SELECT 1")
        self.assertEqual(rc, 0, err)
        self.px.delay_new_connections(700)
        rc, _, err, delayed = psql(self.port, "SELECT 1")
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(delayed, 0.7)
        self.assertLess(delayed, 0.7 + base + 3.0)
        self.assertEqual(self.px.stats()["delayed"], 1)
        # A cancel is a new connection: it reaches the server ~0.7 s after it was sent.
        self.px.delay_new_connections(0)
        m = self.mini()
        self.px.delay_new_connections(700)
        m.send("Q", b"SELECT pg_sleep(20)\0")
        time.sleep(0.2)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S) as c:
            c.sendall(struct.pack("!iiii", 16, pgproxy.CANCEL_REQUEST_CODE, m.pid, m.key))
            self.assertEqual(c.recv(1), b"")   # the server closes a cancel's connection
        msgs = m.until_ready()
        took = time.monotonic() - t0
        self.assertEqual(sqlstate(msgs), "57014")   # query_canceled
        self.assertGreaterEqual(took, 0.7)
        self.assertLess(took, 5.0)
        self.assertEqual(self.px.stats()["cancel_requests"], 1)
        self.assertEqual(self.px.count(C2S, "CancelRequest"), 1)

    def test_refuse_new_connections(self):
        t0 = time.monotonic()
        self.px.refuse_new_connections(1.5)
        rc, _, err, _ = psql(self.port, "SELECT 1")
        self.assertEqual(rc, 2)
        self.assertTrue(lost(err), err)
        with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S) as c:
            self.assertEqual(c.recv(1), b"")
        time.sleep(max(0.0, 1.55 - (time.monotonic() - t0)))
        rc, _, err, _ = psql(self.port, "SELECT 1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.px.stats()["refused"], 2)
        self.px.refuse_new_connections(5, rst=True)
        with self.assertRaises(ConnectionResetError):   # from connect() or the first recv()
            with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S) as c:
                c.recv(1)

    def test_black_hole(self):
        self.px.black_hole()
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S)
        self.addCleanup(raw.close)
        raw.sendall(struct.pack("!ii", 8, pgproxy.SSL_REQUEST_CODE))
        raw.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            raw.recv(1)
        rc, _, err, took = psql(self.port, "SELECT 1", PGCONNECT_TIMEOUT="2")
        self.assertEqual(rc, 2)
        self.assertIn("timeout expired", err)
        self.assertGreaterEqual(took, 1.9)
        conns = self.px.connections()
        self.assertEqual([c["state"] for c in conns], ["blackhole", "blackhole"])
        self.px.black_hole(False)
        self.assertEqual(psql(self.port, "SELECT 1")[0], 0)
        # Both black-holed ones stay: the proxy never reads them, so psql's close went unnoticed.
        self.assertTrue(self.px.wait_for(lambda: self.px.stats()["active"] == 2, 5))
        self.assertEqual(self.px.cut_all(), 2)
        raw.settimeout(IO_TIMEOUT_S)
        self.assertEqual(raw.recv(1), b"")

    def test_set_upstream(self):
        with socket.socket() as s:   # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        self.px.set_upstream(dead)
        self.assertEqual(psql(self.port, "SELECT 1")[0], 2)
        self.assertEqual(self.px.stats()["upstream_failures"], 1)
        self.px.set_upstream(("127.0.0.1", self.cluster.port))
        self.assertEqual(psql(self.port, "SELECT 1")[0], 0)

    # -- freeze ----------------------------------------------------------------------------------

    def test_freeze_thaw_session(self):
        m = self.mini()
        self.px.freeze()
        m.send("Q", b"SELECT 8\0")
        m.sock.settimeout(0.4)
        with self.assertRaises(socket.timeout):
            m.read_msg()
        self.assertEqual(self.px.count(C2S, "Q"), 0)   # held before the server
        self.assertEqual([c["c2s_frozen"] for c in self.px.connections()], ["hold"])
        self.px.thaw()
        m.sock.settimeout(IO_TIMEOUT_S)
        self.assertEqual(values(m.until_ready()), ["8"])
        self.assertEqual(self.px.fired("freeze"), 1)
        self.assertEqual(self.px.fired("thaw"), 1)

    def test_freeze_new_connections_psql(self):
        self.px.freeze(new_connections=True)
        p = subprocess.Popen(psql_cmd(self.port, "SELECT 9"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=psql_env())
        self.addCleanup(p.kill)
        with self.assertRaises(subprocess.TimeoutExpired):
            p.wait(0.5)
        self.assertEqual([c["state"] for c in self.px.connections()], ["held"])
        self.px.thaw()
        out, err = p.communicate(timeout=10)
        self.assertEqual((p.returncode, out.strip()), (0, "9"), err)

    def test_freeze_after_query_psql(self):
        # The server gets the statement and runs it; its answer is held: psql hangs.
        self.px.freeze_after(pgproxy.query_matches("SELECT 42"))
        p = subprocess.Popen(psql_cmd(self.port, "SELECT 42"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=psql_env())
        self.addCleanup(p.kill)
        done = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT 42' AND state = 'idle'"
        self.assertTrue(self.px.wait_for(lambda: self.cluster.psql(done) == "1", 10))
        self.assertIsNone(p.poll())
        self.assertEqual(self.px.fired("freeze_after"), 1)
        self.px.thaw()
        out, err = p.communicate(timeout=10)
        self.assertEqual((p.returncode, out.strip()), (0, "42"), err)

    def test_freeze_after_one_connection(self):
        a, b = self.mini(), self.mini()
        self.px.freeze_after(pgproxy.query_matches("SELECT 43"), scope="connection")
        a.send("Q", b"SELECT 43\0")
        self.assertTrue(self.px.wait_for(lambda: self.px.fired("freeze_after") == 1, 5))
        self.assertEqual(values(b.query("SELECT 44")), ["44"])   # the other one still flows
        a.sock.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            a.read_msg()
        self.px.thaw()
        a.sock.settimeout(IO_TIMEOUT_S)
        self.assertEqual(values(a.until_ready()), ["43"])

    def test_freeze_drop_mode(self):
        m = self.mini()
        self.px.freeze(direction=C2S, mode="drop")
        m.send("Q", b"SELECT 10\0")
        self.assertTrue(self.px.wait_for(lambda: self.px.stats()["dropped_messages"] == 1, 5))
        self.px.thaw()
        self.assertEqual(values(m.query("SELECT 11")), ["11"])   # 10 never reached the server
        self.assertEqual(self.px.statements(), ["SELECT 11"])

    # -- cut_all ---------------------------------------------------------------------------------

    def test_cut_all_idle_psql_session(self):
        p = subprocess.Popen([PSQL, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", "postgres", "-d", "books"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=psql_env())
        self.addCleanup(p.kill)
        p.stdin.write("SELECT 12;\n")
        p.stdin.flush()
        self.assertTrue(self.px.wait_for(lambda: self.px.count(S2C, "Z") == 2, 10))
        self.assertEqual(self.px.cut_all(), 1)
        p.stdin.write("SELECT 13;\n")
        out, err = p.communicate(timeout=10)
        self.assertEqual(out.split(), ["12"])
        self.assertEqual(p.returncode, 2)
        self.assertTrue(lost(err), err)
        self.assertEqual(self.px.fired("cut_all"), 1)
        self.assertEqual(self.px.stats()["close_reasons"].get("cut_all"), 1)

    def test_cut_all_frozen_and_with_reset(self):
        a, b = self.mini(), self.mini()
        self.px.freeze()
        self.assertEqual(self.px.cut_all(rst=True), 2)
        with self.assertRaises(ConnectionResetError):
            a.sock.recv(1)
        self.px.thaw()
        with self.assertRaises(ConnectionResetError):
            b.sock.recv(1)
        self.assertEqual(self.px.stats()["active"], 0)

    # -- bounds and stop -------------------------------------------------------------------------

    def test_lengths_from_the_wire_are_checked(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S) as c:
            c.sendall(struct.pack("!ii", 100000, pgproxy.PROTOCOL_3_0))
            self.assertEqual(c.recv(1), b"")
        with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S) as c:
            c.sendall(struct.pack("!ii", 12, pgproxy.SSL_REQUEST_CODE) + b"xxxx")
            self.assertEqual(c.recv(1), b"")
        m = self.mini()
        m.sock.sendall(b"Q" + struct.pack("!i", 3))
        self.assertEqual(m.sock.recv(1), b"")
        m = self.mini()
        m.sock.sendall(b"Q" + struct.pack("!i", -5))
        self.assertEqual(m.sock.recv(1), b"")
        s = self.px.stats()
        self.assertEqual(s["protocol_errors"], 4)
        self.assertEqual(s["close_reasons"].get("protocol error"), 4)
        self.assertEqual(len(self.px.events("protocol_error")), 4)

    def test_stop_closes_and_joins(self):
        px = pgproxy.PgProxy(self.cluster.port)
        with px:
            m = MiniPg(px.port)
            self.assertEqual(values(m.query("SELECT 14")), ["14"])
            thread = px._thread
        self.assertFalse(thread.is_alive())
        self.assertEqual(m.sock.recv(1), b"")
        m.sock.close()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", px.port), timeout=IO_TIMEOUT_S).close()
        self.assertEqual(px.stats()["close_reasons"], {"stop": 1})


if __name__ == "__main__":
    unittest.main()
