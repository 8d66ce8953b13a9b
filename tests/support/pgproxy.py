"""PgProxy: a PostgreSQL-protocol-aware TCP proxy for the tests, between a client (books-server,
psql, any libpq program) and a PostgreSQL server, that injects the faults real networks and
failovers produce, at exact points of the protocol. Loopback only, threads only (one selector
thread per proxy; the tests never fork: tests/wire/harness.py), every buffer bounded, every wait
bounded.

    import pgproxy
    with pgproxy.PgProxy(("127.0.0.1", CLUSTER.port)) as px:   # or px = PgProxy(...); px.start()
        uri = px.via(CLUSTER.uri("books"))      # the same URI, through the proxy
        px.cut_after_commit()                   # the next COMMIT's result arrives, then the break
        ...                                     # run books-server with `uri`, make it commit
        assert px.fired("cut_after_commit") == 1
    # leaving the block: px.stop(): every connection closed, the thread joined

What it parses (both directions, on every connection; the proxy forwards message by message):
  client -> server, first: untyped packets (int32 length including itself, int32 code):
      SSLRequest (code 80877103, length 8), GSSENCRequest (80877104, length 8), CancelRequest
      (80877102, length 16), StartupMessage (any other code; protocol 3.0 is 196608). A length
      outside 8..10000 (PostgreSQL's own MAX_STARTUP_PACKET_LENGTH), or an SSL/GSSENC/Cancel
      request of another length, is a protocol violation.
  server -> client, after a forwarded SSLRequest/GSSENCRequest: ONE byte, no length ('S' or 'N';
      'G' or 'N'). Anything else there (an old server's ErrorResponse) is parsed as a typed
      message.
  then, both directions: typed messages (1 type byte, int32 length including itself). The length
      is checked before use: below 4 or above max_message (default 0x3fffffff, PostgreSQL's
      PQ_LARGE_MESSAGE_LIMIT) is a protocol violation: the connection is closed, both sides, and
      stats()["protocol_errors"] counts it. A message is forwarded once its header and the first
      PEEK (16 KiB) bytes of its body are here (all of it if shorter): a fault decides before any
      byte of it is forwarded; the rest of a longer message streams through (memory stays
      bounded whatever the length).
  A CancelRequest's connection is relayed as raw bytes after the request (the server answers
  nothing and closes it). A connection whose server accepted SSL ('S') or GSS encryption ('G') is
  relayed as raw bytes from there on ("opaque": stats()["opaque"] counts them): the faults that
  look at messages do not fire on it; connection faults (delay, refuse, black hole, freeze,
  cut_all) still do.

SSL and GSS encryption requests (a decision, per proxy):
  ssl="pass" (default): the SSLRequest goes to the server and its one-byte answer back. A PgCluster
      runs with ssl = off, so it answers 'N' and libpq's default sslmode=prefer goes on in plain
      text, exactly as it would without the proxy; a server with ssl = on answers 'S' and the
      connection goes opaque (assert stats()["opaque"] == 0 if your test needs the faults).
  ssl="refuse": the proxy answers 'N' itself and the server never sees the request (sslmode=prefer
      goes on in plain text; sslmode=require fails, as against a server without SSL).
  gssenc="refuse" (default): the proxy answers a GSSENCRequest with 'N' itself. Why not pass: a
      PostgreSQL built with GSSAPI (Debian's is) answers 'G' on TCP whatever its configuration,
      and the stream would be encrypted; libpq sends a GSSENCRequest only when the process has a
      Kerberos credential cache, and falls back to plain text (then the SSLRequest) on 'N'.
  gssenc="pass": forwarded like ssl="pass".

Faults (all may be called from any thread; each is applied on the proxy's thread before the call
returns, so when freeze() returns nothing more is forwarded, when cut_all() returns the sockets
are closed):

  cut_after_commit(times=1, rst=False)
      Arms a cut: when the server->client stream of a connection carries a CommandComplete ('C')
      whose tag is exactly "COMMIT", everything up to and including that message is forwarded to
      the client, then both sockets of that connection are closed, before the ReadyForQuery ('Z')
      or anything else after the CommandComplete is forwarded (what the server sent after it is
      discarded). The client got the COMMIT's result and then the connection broke. A ROLLBACK
      (a COMMIT of a failed transaction answers "ROLLBACK") and "COMMIT PREPARED" do not match.
      times: how many COMMITs it fires on (each on the connection carrying it); None: every one
      until disarm(). fired("cut_after_commit") counts the firings.
  cut_before_commit(times=1, rst=False)
      The same, but the cut comes just BEFORE forwarding that CommandComplete: the client gets
      everything the server sent before it (BEGIN's and INSERT's results) and never learns the
      outcome, while the server did commit (PostgreSQL sends CommandComplete after the commit
      record is flushed: synchronous_commit = on). fired("cut_before_commit").
  cut_on(predicate, when="after", times=1, rst=False, name="cut")
      The general form: predicate(msg) is called for every message in both directions (a Message,
      below); when it returns true, the connection is cut right after (when="after") or right
      before (when="before") forwarding that message, in the message's direction; what was
      forwarded before it in that direction is still delivered, nothing more in either direction.
      A cut on a client->server message (e.g. query_matches("COMMIT")) gives the server that
      message and closes: PostgreSQL executes a message it has received before it notices the
      close. fired(name) counts the firings. Rules fire in the order they were armed; one message
      fires at most one cut.
  How a cut closes (cut_*, cut_all, refused connections): rst=False: FIN (shutdown(SHUT_WR),
      whatever the peer sent since is read and discarded, close()): the client reads EOF, libpq
      says "server closed the connection unexpectedly". rst=True: a reset (SO_LINGER 0): libpq
      says "Connection reset by peer". Linux keeps what had arrived before a reset readable (the
      self-test reads the COMMIT's CommandComplete, then ECONNRESET), so rst=True still delivers
      what the cut says it forwards.

  delay_new_connections(ms)
      Every connection accepted from now on (cancel-request connections included: they are new
      connections too) waits `ms` milliseconds before the proxy connects upstream and reads a
      byte from the client; its TCP connect has succeeded at once (the listen backlog accepts).
      0 turns it off. Connections already forwarding are not affected. stats()["delayed"].
  refuse_new_connections(seconds, rst=False)
      For `seconds` from now, each new connection is accepted and closed at once (FIN; a client
      whose first packet arrives after the close gets a reset. rst=True: a reset, which a client
      may see from connect() itself); 0 ends it early. Not a real ECONNREFUSED: the listening socket stays open, so no other
      process can take the port meanwhile. stats()["refused"].
  black_hole(on=True)
      While on, each new connection is accepted and then never read, never forwarded to, never
      closed: the client's connect succeeds and it waits for ever (libpq's connect_timeout is
      what ends it). Those connections stay in that state, even after black_hole(False) and even
      when their client has gone (the proxy never reads them, so it does not notice), until
      cut_all() or stop(). stats()["black_holed"].
  Precedence for a new connection: refuse, then black hole, then delay, then freeze.

  freeze(direction="both", new_connections=False, mode="hold")
      Every current connection stops forwarding in `direction` ("both", "c2s" client->server,
      "s2c" server->client), keeping every socket open: the database goes silent without closing
      anything, as behind a stuck TCP front. new_connections=True: connections accepted while
      frozen are frozen too (with c2s frozen, the proxy does not even connect upstream until
      thaw: a server's authentication_timeout cannot end them).
      mode="hold" (default): the proxy stops reading the frozen direction; what it had read is
      held (per direction, under 150 KiB read and not yet forwarded plus under 256 KiB forwarded
      and not yet written: neither is written while frozen), the rest waits in
      the kernels' socket buffers and then in the sender (TCP flow control: a sender eventually
      blocks, as it would); thaw() delivers everything in order, nothing lost; an EOF read
      before the freeze is delivered after the data.
      mode="drop": the proxy keeps reading the frozen direction and discards whole messages
      (counted: stats()["dropped_messages"], ["dropped_bytes"]); a message longer than 16 KiB
      whose forwarding had begun is finished first, so the framing stays intact; the sender
      never blocks. After thaw() the session is usually out of step (answers were lost): meant
      for a connection the test will cut or abandon.
  freeze_after(predicate, direction="s2c", scope="all", times=1, mode="hold", new_connections=False)
      Arms a freeze: once a message for which predicate(msg) is true has been forwarded (e.g.
      query_matches("INSERT INTO books"), a client Query or Parse containing that text), freezes
      `direction`, before anything else is forwarded on that connection: on every connection
      (scope="all", plus new ones with new_connections=True) or that connection only
      (scope="connection"). So the server gets the statement, runs it, and its answer is held.
      fired("freeze_after").
  thaw()
      Ends every freeze (freeze() and freeze_after()) on every connection; held bytes are
      delivered, connections held before their upstream connect connect now. Armed freeze_after
      triggers stay armed.
  cut_all(rst=False)
      Closes every current connection now, both sides, in whatever state (forwarding, frozen,
      delayed, black-holed, half-open); bytes not yet forwarded are discarded. Returns how many.
      fired("cut_all").
  disarm()
      Removes every armed cut and freeze_after trigger (not freeze/delay/refuse/black hole).
  set_upstream(addr)
      New connections go to addr ((host, port) or a port on 127.0.0.1) from now on: a failover.

Observability (snapshots, taken on the proxy's thread):
  stats()             a dict of counters: accepted, active (open now, in any state), closed,
                      refused, black_holed, delayed, held (waited for a thaw before connecting
                      upstream), upstream_failures, protocol_errors, opaque, cancel_requests,
                      ssl_refused_by_proxy, gssenc_refused_by_proxy, dropped_messages,
                      dropped_bytes, bytes_c2s, bytes_s2c (read from each side), predicate_errors,
                      internal_errors, and close_reasons (a dict: reason -> count; reasons:
                      "client closed", "server closed", "client reset"/"server reset" (a send or
                      receive error), "cut:<name>", "cut_all", "refused", "protocol error",
                      "upstream connect failed", "upstream connect timeout", "stop").
  message_counts()    {"c2s": {type: n}, "s2c": {type: n}}: typed messages by their type letter
                      ("Q", "P", "C", "Z", ...), the untyped packets by name ("SSLRequest",
                      "GSSENCRequest", "CancelRequest", "StartupMessage", "SSLResponse",
                      "GSSENCResponse"). Counts forwarded messages (not dropped ones, not those a
                      cut stopped, not the requests the proxy answered itself).
  count(direction, type)  one of those numbers.
  statements()        the text of the client's Query ('Q') and Parse ('P') messages forwarded, in
                      order (the last 2000; each at most its first 16 KiB).
  statement_log()     the same as (connection id, "Q" or "P", text, time.monotonic()) tuples.
  startups()          the parameters of each StartupMessage (the last 200): {"user": ..., ...}.
  events(kind=None)   the faults fired and state changes, oldest first (the last 2000): dicts
                      {"kind", "t" (time.monotonic()), "wall" (time.time()), "conn" (id or
                      None), "detail"}; kinds: the cut names, "freeze", "freeze_after", "thaw",
                      "cut_all", "refused", "black_holed", "delayed", "opaque",
                      "protocol_error", "predicate_error".
  fired(kind=None)    how many events of that kind there were (never truncated; "opaque",
                      "protocol_error" and "predicate_error" are not counted here, they are no
                      faults); no kind: a dict of all.
  connections()       the current connections: dicts {id, state, kind, c2s_frozen, s2c_frozen,
                      age_s}; state: delaying, held, blackhole, connecting, open, closing; kind:
                      unknown (no startup packet yet), session, cancel, opaque.
  wait_for(cond, timeout_s=10)  polls cond() (every 10 ms) until it is true: True, or False at
                      the deadline.
  via(uri)            a postgresql:// URI with its host:port replaced by the proxy's.

Message (what predicates receive): .conn (connection id), .direction ("c2s"/"s2c"), .type (a
letter, or a packet name as in message_counts()), .length (the wire length field; 1 for an SSL
answer byte), .body (the body's first PEEK bytes, bytes), .complete (the whole body is in .body),
.text (Q: the query; P: the statement's query; C: the command tag; E and N: the message field;
StartupMessage: "key=value ..."; otherwise ""), .fields (E and N: {field code: value}).
Helpers: is_commit_complete(msg); query_matches(text_or_regex, types="QP"); message_is(direction,
type, text=None).

Limitations: IPv4 loopback only; no TLS termination (a server that accepts SSL makes the
connection opaque); a "black hole" and a "refusal" are emulated after the TCP handshake (the
kernel completes it on the listen backlog), so they never look like a SYN that goes unanswered or
an ECONNREFUSED; a freeze holds bytes in the proxy and the kernels, it cannot make the client's
kernel stop acknowledging; the proxy sees no time in the protocol: a delay applies to new
connections only, not to each message.
"""

import collections
import errno
import heapq
import itertools
import selectors
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse

C2S = "c2s"
S2C = "s2c"
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_3_0 = 196608
MAX_STARTUP_PACKET = 10000        # PostgreSQL's MAX_STARTUP_PACKET_LENGTH
MAX_MESSAGE = 0x3fffffff          # PostgreSQL's PQ_LARGE_MESSAGE_LIMIT
PEEK = 16384                      # body bytes a fault may look at before a message is forwarded
READ_CHUNK = 65536
INBUF_HIGH = PEEK + READ_CHUNK    # stop reading a direction with this much not yet forwarded
OUT_HIGH = 256 * 1024             # stop forwarding into a direction with this much unsent
FLUSH_TIMEOUT_S = 5.0             # a closing connection delivers what it still owes, at most so long
CALL_TIMEOUT_S = 10.0             # a call from a test thread waits at most so long for the loop
MAX_STATEMENTS = 2000
MAX_EVENTS = 2000
MAX_STARTUPS = 200

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_PACKETS = {SSL_REQUEST_CODE: ("SSLRequest", 8), GSSENC_REQUEST_CODE: ("GSSENCRequest", 8),
            CANCEL_REQUEST_CODE: ("CancelRequest", 16)}


class Message:
    """One protocol message or packet as the proxy saw it (see the module's docstring)."""
    __slots__ = ("conn", "direction", "type", "length", "body", "complete")

    def __init__(self, conn, direction, type_, length, body, complete):
        self.conn = conn
        self.direction = direction
        self.type = type_
        self.length = length
        self.body = body
        self.complete = complete

    @staticmethod
    def _cstr(b, start=0):
        end = b.find(b"\0", start)
        return b[start:end if end >= 0 else len(b)].decode("utf-8", "replace")

    @property
    def fields(self):
        out = {}
        if self.type in ("E", "N") and self.direction == S2C:
            i = 0
            while i < len(self.body) and self.body[i] != 0:
                end = self.body.find(b"\0", i + 1)
                end = len(self.body) if end < 0 else end
                out[chr(self.body[i])] = self.body[i + 1:end].decode("utf-8", "replace")
                i = end + 1
        return out

    @property
    def text(self):
        t, b = self.type, self.body
        if self.direction == C2S and t == "Q":
            return self._cstr(b)
        if self.direction == C2S and t == "P":
            name_end = b.find(b"\0")
            return self._cstr(b, name_end + 1) if name_end >= 0 else ""
        if self.direction == S2C and t == "C":
            return self._cstr(b)
        if self.direction == S2C and t in ("E", "N"):
            return self.fields.get("M", "")
        if t == "StartupMessage":
            return " ".join("%s=%s" % kv for kv in _startup_params(b).items())
        return ""

    def __repr__(self):
        return "Message(conn=%d, %s, %r, length=%d, text=%r)" % (
            self.conn, self.direction, self.type, self.length, self.text[:80])


def _startup_params(body):
    parts = bytes(body).split(b"\0")
    params = {}
    for k, v in zip(parts[0::2], parts[1::2]):
        if not k:
            break
        params[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return params


# -- predicates ----------------------------------------------------------------------------------

def is_commit_complete(msg):
    """The server's CommandComplete of a COMMIT that committed (tag exactly "COMMIT")."""
    return msg.direction == S2C and msg.type == "C" and msg.text == "COMMIT"


def query_matches(pattern, types="QP"):
    """A predicate: a client Query/Parse (types) whose text contains `pattern` (a str), or in
    which `pattern` (a compiled regex) is found."""
    def match(msg):
        if msg.direction != C2S or msg.type not in types:
            return False
        text = msg.text
        return pattern.search(text) is not None if hasattr(pattern, "search") else pattern in text
    return match


def message_is(direction, type_, text=None):
    """A predicate: a message of that direction and type (and, if given, exactly that .text)."""
    def match(msg):
        return (msg.direction == direction and msg.type == type_ and
                (text is None or msg.text == text))
    return match


# -- internals -----------------------------------------------------------------------------------

class _ProtocolError(Exception):
    pass


class _Dir:
    """One direction of a connection: bytes read from its source, not yet forwarded (inbuf), and
    forwarded, not yet written to its destination (out)."""
    __slots__ = ("name", "inbuf", "out", "phase", "remaining", "cur", "cur_dropped", "eof",
                 "frozen", "answer_for")

    def __init__(self, name, phase):
        self.name = name
        self.inbuf = bytearray()
        self.out = bytearray()
        # startup (c2s: untyped packets), wait (c2s: until the server's one-byte answer),
        # answer (s2c: that byte next), typed, raw (no parsing)
        self.phase = phase
        self.remaining = 0        # bytes of the current message still to stream through
        self.cur = None           # that message, for the hooks after its last byte
        self.cur_dropped = False
        self.eof = False
        self.frozen = None        # None, "hold" or "drop"
        self.answer_for = None

    def flow(self):
        """The freeze in effect: a drop waits for the end of a message being forwarded."""
        if self.frozen == "drop" and self.remaining and not self.cur_dropped:
            return None
        return self.frozen


class _Conn:
    __slots__ = ("id", "client", "server", "state", "kind", "c2s", "s2c", "opened", "flush",
                 "rst", "reason", "masks", "progress")

    def __init__(self, cid, client):
        self.id = cid
        self.client = client
        self.server = None
        self.state = "new"   # delaying, held, blackhole, connecting, open, closing, closed
        self.kind = "unknown"
        self.c2s = _Dir(C2S, "startup")
        self.s2c = _Dir(S2C, "typed")
        self.opened = time.monotonic()
        self.flush = ()
        self.rst = False
        self.reason = None
        self.masks = {}
        self.progress = 0

    def dst(self, d):
        return self.server if d is self.c2s else self.client

    def other(self, d):
        return self.s2c if d is self.c2s else self.c2s


class _Rule:
    __slots__ = ("name", "predicate", "when", "times", "rst", "direction", "scope", "mode",
                 "new_connections")

    def __init__(self, name, predicate, times, **kw):
        self.name = name
        self.predicate = predicate
        self.times = times
        for k in ("when", "rst", "direction", "scope", "mode", "new_connections"):
            setattr(self, k, kw.get(k))

    def live(self):
        return self.times is None or self.times > 0

    def use(self):
        if self.times is not None:
            self.times -= 1


def _dirs(direction):
    if direction == "both":
        return (C2S, S2C)
    if direction in (C2S, S2C):
        return (direction,)
    raise ValueError("direction: 'both', 'c2s' or 's2c', not %r" % (direction,))


def _mode(mode):
    if mode not in ("hold", "drop"):
        raise ValueError("mode: 'hold' or 'drop', not %r" % (mode,))
    return mode


class PgProxy:
    def __init__(self, upstream, ssl="pass", gssenc="refuse", max_message=MAX_MESSAGE,
                 connect_timeout_s=10.0, name="pgproxy"):
        """upstream: (host, port) of the PostgreSQL server, or a port on 127.0.0.1."""
        if ssl not in ("pass", "refuse") or gssenc not in ("pass", "refuse"):
            raise ValueError("ssl and gssenc: 'pass' or 'refuse'")
        if not 4 <= max_message <= MAX_MESSAGE:
            raise ValueError("max_message: 4..%d" % MAX_MESSAGE)
        self.upstream = self._addr(upstream)
        self.ssl = ssl
        self.gssenc = gssenc
        self.max_message = max_message
        self.connect_timeout_s = connect_timeout_s
        self.name = name
        self.port = None
        self._lsock = None
        self._sel = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stopping = False
        self._crash = None
        self._jobs = collections.deque()
        self._jobs_lock = threading.Lock()
        self._timers = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._conns = {}
        self._dirty = set()
        self._cuts = []
        self._triggers = []
        self._delay_s = 0.0
        self._refuse_until = 0.0
        self._refuse_rst = False
        self._black_hole = False
        self._freeze_new = None   # (directions, mode)
        self._stats = collections.Counter()
        self._close_reasons = collections.Counter()
        self._counts = {C2S: collections.Counter(), S2C: collections.Counter()}
        self._statements = collections.deque(maxlen=MAX_STATEMENTS)
        self._startups = collections.deque(maxlen=MAX_STARTUPS)
        self._events = collections.deque(maxlen=MAX_EVENTS)
        self._fired = collections.Counter()

    @staticmethod
    def _addr(upstream):
        if isinstance(upstream, int):
            return ("127.0.0.1", upstream)
        host, port = upstream
        return (host, int(port))

    # -- life cycle ------------------------------------------------------------------------------

    def start(self):
        """Listens on a free port of 127.0.0.1 and starts the proxy's thread; returns the port."""
        if self._thread is not None:
            raise RuntimeError("PgProxy.start(): already started")
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(128)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._lsock, _READ, ("listen", None))
        self._sel.register(self._wake_r, _READ, ("wake", None))
        self._thread = threading.Thread(target=self._run, name="%s:%d" % (self.name, self.port),
                                        daemon=True)
        self._thread.start()
        return self.port

    def stop(self):
        """Closes every connection and the listening socket, joins the thread (at most 10 s).
        Raises RuntimeError if the thread had died of an error, or does not end."""
        t = self._thread
        if t is None:
            return
        if t.is_alive():
            try:
                self._call(self._stop_in_loop)
            except RuntimeError:
                self._stopping = True
            t.join(CALL_TIMEOUT_S)
            if t.is_alive():
                raise RuntimeError("%s: its thread did not end" % self.name)
        if self._crash:
            crash, self._crash = self._crash, None
            raise RuntimeError("%s: its thread died:\n%s" % (self.name, crash))

    def __enter__(self):
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def via(self, uri):
        """uri (postgresql://user@host:port/db?...) with host:port replaced by the proxy's."""
        parts = urllib.parse.urlsplit(uri)
        user, at, _ = parts.netloc.rpartition("@")
        netloc = (user + at) + "127.0.0.1:%d" % self.port
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    # -- faults ----------------------------------------------------------------------------------

    def cut_after_commit(self, times=1, rst=False):
        self.cut_on(is_commit_complete, when="after", times=times, rst=rst,
                    name="cut_after_commit")

    def cut_before_commit(self, times=1, rst=False):
        self.cut_on(is_commit_complete, when="before", times=times, rst=rst,
                    name="cut_before_commit")

    def cut_on(self, predicate, when="after", times=1, rst=False, name="cut"):
        if when not in ("after", "before"):
            raise ValueError("when: 'after' or 'before'")
        rule = _Rule(name, predicate, times, when=when, rst=rst)
        self._call(self._cuts.append, rule)

    def freeze_after(self, predicate, direction=S2C, scope="all", times=1, mode="hold",
                     new_connections=False):
        if scope not in ("all", "connection"):
            raise ValueError("scope: 'all' or 'connection'")
        rule = _Rule("freeze_after", predicate, times, direction=_dirs(direction), scope=scope,
                     mode=_mode(mode), new_connections=new_connections)
        self._call(self._triggers.append, rule)

    def disarm(self):
        def do():
            self._cuts.clear()
            self._triggers.clear()
        self._call(do)

    def delay_new_connections(self, ms):
        if ms < 0:
            raise ValueError("ms >= 0")
        self._call(setattr, self, "_delay_s", ms / 1000.0)

    def refuse_new_connections(self, seconds, rst=False):
        def do():
            self._refuse_until = time.monotonic() + seconds if seconds > 0 else 0.0
            self._refuse_rst = rst
        self._call(do)

    def black_hole(self, on=True):
        self._call(setattr, self, "_black_hole", bool(on))

    def freeze(self, direction="both", new_connections=False, mode="hold"):
        dirs, mode = _dirs(direction), _mode(mode)

        def do():
            for conn in list(self._conns.values()):
                self._freeze_conn(conn, dirs, mode)
            if new_connections:
                self._freeze_new = (dirs, mode)
            self._event("freeze", None, "%s %s%s on %d connection(s)" % (
                direction, mode, " +new" if new_connections else "", len(self._conns)))
        self._call(do)

    def thaw(self):
        def do():
            self._freeze_new = None
            for conn in list(self._conns.values()):
                conn.c2s.frozen = conn.s2c.frozen = None
                if conn.state == "held":
                    self._connect(conn)
                self._dirty.add(conn)
            self._event("thaw", None, "%d connection(s)" % len(self._conns))
        self._call(do)

    def cut_all(self, rst=False):
        def do():
            conns = list(self._conns.values())
            for conn in conns:
                self._close(conn, "cut_all", rst=rst)
            self._event("cut_all", None, "%d connection(s)" % len(conns))
            return len(conns)
        return self._call(do)

    def set_upstream(self, upstream):
        self._call(setattr, self, "upstream", self._addr(upstream))

    # -- observability ---------------------------------------------------------------------------

    def stats(self):
        def do():
            s = dict(self._stats)
            for k in ("accepted", "closed", "refused", "black_holed", "delayed", "held",
                      "upstream_failures", "protocol_errors", "opaque", "cancel_requests",
                      "ssl_refused_by_proxy", "gssenc_refused_by_proxy", "dropped_messages",
                      "dropped_bytes", "bytes_c2s", "bytes_s2c", "predicate_errors",
                      "internal_errors"):
                s.setdefault(k, 0)
            s["active"] = len(self._conns)
            s["close_reasons"] = dict(self._close_reasons)
            return s
        return self._call(do)

    def message_counts(self):
        return self._call(lambda: {d: dict(c) for d, c in self._counts.items()})

    def count(self, direction, type_):
        return self._call(lambda: self._counts[direction][type_])

    def statements(self):
        return [s[2] for s in self.statement_log()]

    def statement_log(self):
        return self._call(lambda: list(self._statements))

    def startups(self):
        return self._call(lambda: [dict(p) for p in self._startups])

    def events(self, kind=None):
        return self._call(lambda: [dict(e) for e in self._events
                                   if kind is None or e["kind"] == kind])

    def fired(self, kind=None):
        return self._call(lambda: dict(self._fired) if kind is None else self._fired[kind])

    def connections(self):
        now = time.monotonic()
        return self._call(lambda: [
            {"id": c.id, "state": c.state, "kind": c.kind, "c2s_frozen": c.c2s.frozen,
             "s2c_frozen": c.s2c.frozen, "age_s": now - c.opened}
            for c in self._conns.values()])

    def wait_for(self, cond, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while True:
            if cond():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- the proxy's thread ----------------------------------------------------------------------

    def _call(self, fn, *args):
        """Runs fn(*args) on the proxy's thread (or here, when that thread is not running or is
        this one) and returns its result."""
        t = self._thread
        if t is None or not t.is_alive() or threading.current_thread() is t:
            return fn(*args)
        box = {}
        done = threading.Event()

        def job():
            try:
                box["r"] = fn(*args)
            except BaseException as e:  # handed back to the caller
                box["e"] = e
            finally:
                done.set()
        with self._jobs_lock:
            self._jobs.append(job)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full: the loop is awake already
        if not done.wait(CALL_TIMEOUT_S):
            raise RuntimeError("%s: its thread did not answer within %.0f s" %
                               (self.name, CALL_TIMEOUT_S))
        if "e" in box:
            raise box["e"]
        return box.get("r")

    def _run(self):
        try:
            while not self._stopping:
                timeout = 0.5
                if self._timers:
                    timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
                for key, mask in self._sel.select(timeout):
                    kind, conn = key.data
                    if kind == "listen":
                        self._accept()
                    elif kind == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                    elif conn.state != "closed":
                        self._guard(conn, self._on_event, conn, key.fileobj, mask)
                self._run_jobs()
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn, conn = heapq.heappop(self._timers)
                    if conn.state != "closed":
                        self._guard(conn, fn)
                while self._dirty:
                    conn = self._dirty.pop()
                    if conn.state != "closed":
                        self._guard(conn, self._service, conn)
        except BaseException:
            self._crash = traceback.format_exc()
            print("%s: %s" % (self.name, self._crash), file=sys.stderr)
        finally:
            self._stopping = True
            for conn in list(self._conns.values()):
                self._finalize(conn, "stop")
            self._run_jobs()  # nobody waits for ever on a job queued meanwhile
            for s in (self._lsock, self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass
            self._sel.close()

    def _run_jobs(self):
        while True:
            with self._jobs_lock:
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            job()

    def _stop_in_loop(self):
        self._stopping = True
        for conn in list(self._conns.values()):
            self._finalize(conn, "stop")

    def _guard(self, conn, fn, *args):
        try:
            fn(*args)
        except Exception:
            self._stats["internal_errors"] += 1
            print("%s: connection %d: %s" % (self.name, conn.id, traceback.format_exc()),
                  file=sys.stderr)
            self._finalize(conn, "internal error")

    def _timer(self, delay_s, conn, fn):
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._seq), fn, conn))

    def _event(self, kind, conn_id, detail, fault=True):
        self._events.append({"kind": kind, "t": time.monotonic(), "wall": time.time(),
                             "conn": conn_id, "detail": detail})
        if fault:
            self._fired[kind] += 1

    # -- connections -----------------------------------------------------------------------------

    def _accept(self):
        for _ in range(64):
            try:
                sock, _ = self._lsock.accept()
            except OSError:  # EAGAIN: no more; EMFILE, ECONNABORTED...: try again later
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._stats["accepted"] += 1
            conn = _Conn(next(self._ids), sock)
            self._conns[conn.id] = conn
            if time.monotonic() < self._refuse_until:
                self._stats["refused"] += 1
                self._event("refused", conn.id, "rst" if self._refuse_rst else "fin")
                self._close(conn, "refused", rst=self._refuse_rst)
                continue
            if self._black_hole:
                conn.state = "blackhole"
                self._stats["black_holed"] += 1
                self._event("black_holed", conn.id, "")
                continue
            if self._freeze_new:
                self._freeze_conn(conn, *self._freeze_new)
            if self._delay_s > 0:
                conn.state = "delaying"
                self._stats["delayed"] += 1
                self._event("delayed", conn.id, "%.0f ms" % (self._delay_s * 1000))
                self._timer(self._delay_s, conn, lambda c=conn: self._begin(c))
                continue
            self._begin(conn)

    def _freeze_conn(self, conn, dirs, mode):
        for dn in dirs:
            getattr(conn, dn).frozen = mode
        self._dirty.add(conn)

    def _begin(self, conn):
        if conn.c2s.frozen:
            conn.state = "held"
            self._stats["held"] += 1
            return
        self._connect(conn)

    def _connect(self, conn):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.server = s
        err = s.connect_ex(self.upstream)
        if err not in (0, errno.EINPROGRESS):
            self._stats["upstream_failures"] += 1
            self._close(conn, "upstream connect failed")
            return
        conn.state = "connecting"
        self._set_mask(conn, s, _WRITE)

        def deadline(c=conn):
            if c.state == "connecting":
                self._stats["upstream_failures"] += 1
                self._close(c, "upstream connect timeout")
        self._timer(self.connect_timeout_s, conn, deadline)

    def _set_mask(self, conn, sock, mask):
        if sock is None:
            return
        old = conn.masks.get(sock, 0)
        if mask == old:
            return
        if not old:
            self._sel.register(sock, mask, ("conn", conn))
        elif not mask:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, mask, ("conn", conn))
        conn.masks[sock] = mask

    def _update(self, conn):
        c2s, s2c = conn.c2s, conn.s2c
        if conn.state == "open":
            self._set_mask(conn, conn.client,
                           (_READ if self._can_read(c2s) else 0) |
                           (_WRITE if s2c.out and s2c.flow() != "hold" else 0))
            self._set_mask(conn, conn.server,
                           (_READ if self._can_read(s2c) else 0) |
                           (_WRITE if c2s.out and c2s.flow() != "hold" else 0))
        elif conn.state == "closing":
            self._set_mask(conn, conn.client, _WRITE if S2C in conn.flush and s2c.out else 0)
            self._set_mask(conn, conn.server, _WRITE if C2S in conn.flush and c2s.out else 0)

    @staticmethod
    def _can_read(d):
        return (not d.eof and d.flow() != "hold" and len(d.inbuf) < INBUF_HIGH and
                len(d.out) < OUT_HIGH)

    def _on_event(self, conn, sock, mask):
        if conn.state == "connecting":
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._stats["upstream_failures"] += 1
                self._close(conn, "upstream connect failed")
                return
            conn.state = "open"
        elif conn.state == "open" and mask & _READ:
            d = conn.c2s if sock is conn.client else conn.s2c
            try:
                data = sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(conn, "client reset" if d is conn.c2s else "server reset")
                return
            if data is not None:
                if data:
                    d.inbuf += data
                    self._stats["bytes_" + d.name] += len(data)
                else:
                    d.eof = True
        self._service(conn)

    def _service(self, conn):
        """Forwards what can be forwarded, writes what can be written, until nothing moves."""
        for _ in range(64):
            if conn.state != "open":
                break
            before = conn.progress
            self._process(conn, conn.c2s)
            self._process(conn, conn.s2c)
            self._flush(conn, conn.c2s)
            self._flush(conn, conn.s2c)
            if conn.progress == before:
                break
        else:
            self._dirty.add(conn)  # still moving: again after the other connections' turn
        if conn.state == "closing":
            for dn in conn.flush:
                self._flush(conn, getattr(conn, dn), closing=True)
            if conn.state == "closing" and not any(getattr(conn, dn).out for dn in conn.flush):
                self._finalize(conn, conn.reason)
        if conn.state in ("open", "closing"):
            self._update(conn)

    def _flush(self, conn, d, closing=False):
        sock = conn.dst(d)
        if sock is None or not d.out or (not closing and d.flow() == "hold"):
            return
        while d.out:
            try:
                n = sock.send(d.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                if closing:
                    d.out.clear()
                else:
                    self._close(conn, "server reset" if d is conn.c2s else "client reset")
                return
            del d.out[:n]
            conn.progress += 1

    def _close(self, conn, reason, flush=(), rst=False):
        """Closes conn, after delivering what the directions in `flush` already forwarded (at
        most FLUSH_TIMEOUT_S); everything else not yet delivered is discarded."""
        if conn.state in ("closing", "closed"):
            return
        was_open = conn.state == "open"
        conn.reason = reason
        conn.rst = rst
        for d in (conn.c2s, conn.s2c):
            d.inbuf.clear()
            d.remaining = 0
            if d.name not in flush:
                d.out.clear()
        conn.flush = tuple(dn for dn in flush if getattr(conn, dn).out)
        if not (was_open and conn.flush):
            self._finalize(conn, reason)
            return
        conn.state = "closing"
        self._timer(FLUSH_TIMEOUT_S, conn, lambda c=conn: self._finalize(c, c.reason))
        self._dirty.add(conn)

    def _finalize(self, conn, reason):
        if conn.state == "closed":
            return
        conn.state = "closed"
        for sock in (conn.client, conn.server):
            if sock is None:
                continue
            if conn.masks.get(sock):
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError, OSError):
                    pass
            try:
                if conn.rst:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    # FIN after what was delivered; what the peer sent is read and thrown away
                    # so that close() does not turn the FIN into a reset.
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    for _ in range(64):
                        try:
                            if not sock.recv(READ_CHUNK):
                                break
                        except OSError:
                            break
            finally:
                sock.close()
        conn.masks.clear()
        self._conns.pop(conn.id, None)
        self._dirty.discard(conn)
        self._stats["closed"] += 1
        self._close_reasons[reason or "?"] += 1

    # -- the protocol ----------------------------------------------------------------------------

    def _process(self, conn, d):
        """Moves complete messages (or the head of a long one) from d.inbuf to d.out, with the
        faults' hooks, while d is not frozen and d.out has room."""
        while conn.state == "open":
            flow = d.flow()
            if flow == "hold" or len(d.out) >= OUT_HIGH:
                return
            if d.remaining:  # the tail of a message longer than PEEK
                n = min(d.remaining, len(d.inbuf))
                if not n:
                    break
                if d.cur_dropped:
                    self._stats["dropped_bytes"] += n
                else:
                    d.out += d.inbuf[:n]
                del d.inbuf[:n]
                d.remaining -= n
                conn.progress += 1
                if not d.remaining:
                    msg, dropped, d.cur, d.cur_dropped = d.cur, d.cur_dropped, None, False
                    if not dropped and self._after(conn, d, msg):
                        return
                continue
            if d.phase == "raw":
                if not d.inbuf:
                    break
                if flow == "drop":
                    self._stats["dropped_bytes"] += len(d.inbuf)
                else:
                    d.out += d.inbuf
                d.inbuf.clear()
                conn.progress += 1
                continue
            if d.phase == "wait":
                break
            try:
                got = self._next(conn, d)
            except _ProtocolError as e:
                self._stats["protocol_errors"] += 1
                self._event("protocol_error", conn.id, "%s: %s" % (d.name, e), fault=False)
                self._close(conn, "protocol error")
                return
            if got is None:
                break
            msg, total = got
            avail = min(total, len(d.inbuf))
            conn.progress += 1
            if (flow != "drop" and msg.type in ("SSLRequest", "GSSENCRequest") and
                    (self.ssl if msg.type == "SSLRequest" else self.gssenc) == "refuse"):
                del d.inbuf[:total]
                self._stats[("ssl" if msg.type == "SSLRequest" else "gssenc") +
                            "_refused_by_proxy"] += 1
                conn.s2c.out += b"N"
                continue
            if flow == "drop":
                self._stats["dropped_messages"] += 1
                self._stats["dropped_bytes"] += avail
            else:
                if self._before(conn, d, msg):
                    return
                self._forwarded(conn, d, msg)
                d.out += d.inbuf[:avail]
            del d.inbuf[:avail]
            d.remaining = total - avail
            self._transition(conn, d, msg)
            if d.remaining:
                d.cur, d.cur_dropped = msg, flow == "drop"
                continue
            if flow != "drop" and self._after(conn, d, msg):
                return
        if conn.state == "open" and d.eof and not d.frozen and len(d.out) < OUT_HIGH:
            # The source closed: what is left is a partial message; deliver it, then close.
            d.out += d.inbuf
            d.inbuf.clear()
            self._close(conn, "client closed" if d is conn.c2s else "server closed",
                        flush=(d.name,))

    def _next(self, conn, d):
        """The next packet of d, as (Message, total length), or None until more bytes come."""
        buf = d.inbuf
        if d.phase == "startup":
            if len(buf) < 8:
                return None
            length, code = struct.unpack_from("!ii", buf)
            if not 8 <= length <= MAX_STARTUP_PACKET:
                raise _ProtocolError("startup packet length %d" % length)
            name, want = _PACKETS.get(code, ("StartupMessage", None))
            if want is not None and length != want:
                raise _ProtocolError("%s of length %d" % (name, length))
            if len(buf) < length:
                return None
            return Message(conn.id, d.name, name, length, bytes(buf[8:length]), True), length
        if d.phase == "answer":
            if not buf:
                return None
            if buf[0:1] in (b"S", b"N", b"G"):
                return Message(conn.id, d.name, d.answer_for.replace("Request", "Response"), 1,
                               bytes(buf[0:1]), True), 1
            d.phase = "typed"   # not an answer byte: an old server's ErrorResponse
            conn.c2s.phase = "startup"
        if len(buf) < 5:
            return None
        (length,) = struct.unpack_from("!i", buf, 1)
        if not 4 <= length <= self.max_message:
            raise _ProtocolError("message %r of length %d" % (chr(buf[0]), length))
        total = 1 + length
        need = min(total, 5 + PEEK)
        if len(buf) < need:
            return None
        return Message(conn.id, d.name, chr(buf[0]), length, bytes(buf[5:need]),
                       need == total), total

    def _transition(self, conn, d, msg):
        """What a startup-phase packet changes in the parsing of both directions."""
        t = msg.type
        if d is conn.c2s and d.phase == "startup":
            if t in ("SSLRequest", "GSSENCRequest"):
                d.phase = "wait"
                conn.s2c.phase = "answer"
                conn.s2c.answer_for = t
            elif t == "CancelRequest":
                d.phase = conn.s2c.phase = "raw"
                conn.kind = "cancel"
                self._stats["cancel_requests"] += 1
            else:
                d.phase = "typed"
                conn.kind = "session"
                self._startups.append(_startup_params(msg.body))
        elif d is conn.s2c and d.phase == "answer":
            if msg.body == b"N":
                d.phase = "typed"
                conn.c2s.phase = "startup"
            else:
                d.phase = conn.c2s.phase = "raw"
                conn.kind = "opaque"
                self._stats["opaque"] += 1
                self._event("opaque", conn.id, "the server answered %r to the %s" % (
                    msg.body.decode(), d.answer_for), fault=False)

    def _forwarded(self, conn, d, msg):
        self._counts[d.name][msg.type] += 1
        if d is conn.c2s and msg.type in ("Q", "P"):
            self._statements.append((conn.id, msg.type, msg.text, time.monotonic()))

    def _matches(self, rule, msg):
        try:
            return bool(rule.predicate(msg))
        except Exception as e:
            self._stats["predicate_errors"] += 1
            self._event("predicate_error", msg.conn, "%s: %r" % (rule.name, e), fault=False)
            return False

    def _before(self, conn, d, msg):
        for rule in self._cuts:
            if rule.when == "before" and rule.live() and self._matches(rule, msg):
                rule.use()
                self._event(rule.name, conn.id, "before %r" % msg)
                self._close(conn, "cut:" + rule.name, flush=(d.name,), rst=rule.rst)
                return True
        return False

    def _after(self, conn, d, msg):
        for rule in self._cuts:
            if rule.when == "after" and rule.live() and self._matches(rule, msg):
                rule.use()
                self._event(rule.name, conn.id, "after %r" % msg)
                self._close(conn, "cut:" + rule.name, flush=(d.name,), rst=rule.rst)
                return True
        for rule in self._triggers:
            if rule.live() and self._matches(rule, msg):
                rule.use()
                targets = [conn] if rule.scope == "connection" else list(self._conns.values())
                for c in targets:
                    self._freeze_conn(c, rule.direction, rule.mode)
                if rule.new_connections and rule.scope == "all":
                    self._freeze_new = (rule.direction, rule.mode)
                self._event("freeze_after", conn.id, "%s %s after %r" % (
                    "+".join(rule.direction), rule.mode, msg))
        return False
