"""A fault-injecting gRPC front for Google's Firestore emulator: books-server's firestore: store
talks to it (FIRESTORE_EMULATOR_HOST=front.host) and it forwards every call to the emulator, except
where a test told it to fail the way production Firestore fails. It runs in the test process (a
grpcio server on a thread pool, 127.0.0.1, a free port): no process of its own, nothing forks.

    front = fsfront.Front()
    host = front.start(emulator.host)     # "127.0.0.1:PORT"
    ...                                   # books-server with FIRESTORE_EMULATOR_HOST=host
    front.deny(5)                         # IAM not propagated yet: PERMISSION_DENIED for 5 s
    front.stats()["BatchWrite"]["max_size"]
    front.stop()                          # or: with fsfront.Front() as front: front.start(...)

What is forwarded
  The four methods the store calls, /google.firestore.v1.Firestore/{GetDocument, Commit,
  BatchWrite} (unary) and RunQuery (server streaming), as raw bytes (no parsing, no re-encoding),
  with the client's metadata (authorization, google-cloud-resource-prefix, x-goog-request-params,
  anything else but HTTP/2 pseudo-headers, user-agent and grpc-* headers) and a deadline of what
  is left of the client's (UPSTREAM_TIMEOUT_S when it set none). The emulator's initial and
  trailing metadata come back, and so does its status (code, message, grpc-status-details-bin).
  Any other method is UNIMPLEMENTED (not forwarded, not counted). Server and channel both take
  and send messages up to MAX_MESSAGE_BYTES (64 MiB), so a request over production's 10 MiB reaches
  the front and is answered as production answers it, and a response of any size the emulator
  sends comes back. (A request over 64 MiB is refused by grpcio itself, RESOURCE_EXHAUSTED, before
  the front sees it: not counted.)

The order of the checks, for each call (the first that applies answers it):
  1. size: a request over max_request_bytes (production's 10,485,760) is INVALID_ARGUMENT
     "Request payload size exceeds the limit: 10485760 bytes.", not forwarded;
  2. deny(): every call of the methods denied, while the window is open;
  3. throttle(): a share of the calls of its methods, RESOURCE_EXHAUSTED;
  4. fail_reads() (the next N reads), then fail_first_reads() (first attempt of each distinct read);
  5. delay(): sleeps, then goes on (a call whose client left meanwhile is not forwarded);
  6. forwarded (a BatchWrite over split_bytes in several parts, see below);
  7. apply_then_drop(): the call was forwarded and applied, and the client gets an error instead
     of the reply.
A fault's own answer is never forwarded, and each fault counts what it did (faults()).

Faults (every one thread-safe, callable from the test thread while calls are in flight; each
replaces an earlier setting of the same fault; clear() ends them all; `methods` is a method name
or a sequence of them, from METHODS):
  deny(seconds, code=PERMISSION_DENIED, message=None, methods=METHODS)
      for the next `seconds` (None: until clear()) every call is answered `code` (PERMISSION_DENIED
      or UNAUTHENTICATED, or any other) with production's message for it (MESSAGES), then calls
      are forwarded again: IAM propagating after a first deploy.
  throttle(share, seconds, methods=WRITES, seed=0, code=RESOURCE_EXHAUSTED, message=None)
      for the next `seconds` (None: until clear()) each call of `methods` is refused with
      probability `share` (0..1), drawn from random.Random(seed) in the order the calls arrive:
      the same seed and the same sequence of calls refuse the same calls (share 1: all, 0: none).
      The message is production's for its write ramp-up limit (the 500/50/5 rule).
  fail_reads(n, code=UNAVAILABLE, message=None, methods=READS)
      the next `n` calls of `methods` are answered `code` (added to what is left of an earlier n).
  fail_first_reads(code=UNAVAILABLE, message=None, methods=READS)
      until clear(), the first call of each distinct request (method and request bytes) of
      `methods` is answered `code`; a later call with the same bytes (a retry) is forwarded.
      Calling it again forgets the requests seen so far.
  delay(ms, methods=METHODS, seconds=None)
      each call of `methods` that is to be forwarded waits `ms` first (at most what is left of its
      deadline), for the next `seconds` (None: until clear()).
  apply_then_drop(n=1, methods=WRITES, code=UNAVAILABLE, message=None)
      the next `n` calls of `methods` that are forwarded are applied by the emulator (whatever it
      answered, a RunQuery's stream read to its end), then the client gets `code` instead: the
      reply lost. UNAVAILABLE comes at once with "Socket closed" (what gRPC's client says of a
      connection that broke); DEADLINE_EXCEEDED comes when the client's deadline passes (at most
      DROP_HOLD_CAP_S later; at once for a call without one) with "Deadline Exceeded".
  clear(*names)
      every fault off, now, or only those named ("deny", "throttle", "fail_reads",
      "fail_first_reads", "delay", "apply_then_drop"); stats are kept.

Stats (reset_stats() zeroes them all):
  stats() -> {method: {"calls": n arrived, "codes": {"OK": n, "UNAVAILABLE": n, ...} as answered
              to the client, "sizes": [bytes of each request, in arrival order], "max_size": n,
              "forwarded": n calls made to the emulator (a split BatchWrite counts each part)}}
              for each of METHODS: a copy, safe to keep.
  faults() -> {"too_large", "denied", "throttled", "failed_reads", "delayed", "dropped",
               "split_calls", "split_parts"}: how many calls each fault answered or touched.
  calls(method=None), codes(method=None), max_request_size(method=None): one method's or all.
  last_metadata(method): {key: value} the last forwarded call of `method` passed on (None before
  one), e.g. {"authorization": "Bearer owner", "google-cloud-resource-prefix": ..., ...}.
  A call's code is counted before its status is sent, so once a client has its answer the counts
  include it. A call whose deadline passed while it waited in delay() counts DEADLINE_EXCEEDED
  (the front waits for the client's own deadline to end it), one cancelled by its client
  CANCELLED; neither is forwarded. A size is the
  serialized request's length as the front received it (the store sends uncompressed).

Splitting (production takes 10 MiB, the emulator refuses any message over 4 MiB with
RESOURCE_EXHAUSTED "gRPC message exceeds maximum size 4194304: N"):
  A BatchWrite request larger than split_bytes (default 4,194,304, the emulator's limit) is cut at
  the wire level, without parsing or re-encoding a Write: its top-level fields are read (tag and
  length), each `writes` entry (field 2) is kept as the exact bytes it came as, and the other
  fields (database, labels) go into every part. The writes are put in order into parts as large as
  fit in split_bytes (a Write alone over split_bytes is a part by itself, which the emulator
  refuses; it refuses any field value over 1,048,487 bytes anyway, INVALID_ARGUMENT). A request
  of exactly split_bytes goes whole (the emulator takes 4,194,304 and refuses 4,194,305: the
  self-test checks both). The parts are sent one after another, in order; the responses' bytes are
  concatenated, which for BatchWriteResponse (only repeated fields: write_results 1, status 2) is
  exactly the merge: both lists in write order, one entry per write. BatchWrite is not atomic, so
  this is what production would do with the one request. When a part fails as a call, the client
  gets that part's status and the later parts are not sent (the earlier ones stay applied, as a
  failed BatchWrite may leave them in production).
  A Commit over split_bytes is atomic and cannot be split faithfully: by default
  (commit_over_limit="forward") it is forwarded and the emulator refuses it (RESOURCE_EXHAUSTED,
  where production would apply up to 10 MiB). commit_over_limit="split" cuts it like a BatchWrite
  into several Commits (NOT atomic: a failing later part leaves the earlier applied) and merges
  the responses: write_results concatenated, commit_time the last part's. Only for tests that
  need the documents written and do not test atomicity. (The emulator's REST API has the same
  4 MiB limit: there is no faithful way to apply a 4-10 MiB Commit in it.)

Limitations, besides the Commit above:
  - production's other limits are not imitated: at most 500 writes per Commit or BatchWrite (the
    emulator takes more; the store never sends more), the 1 MiB document (the emulator has its
    own), per-document write rates;
  - the size check comes before deny(): which production checks first is not known here;
  - throttle() draws in the order calls reach the front: with concurrent callers that order, and
    so which calls are refused, is theirs; the share and the count in faults() are the front's;
  - fail_first_reads() keys by the request's exact bytes: a retry that differs in any byte (a
    different page token, a field in another order) is a new read and fails once too;
  - a BatchWrite's parts are sent one by one, so a split call takes as long as its parts together;
  - the emulator's own messages are forwarded as they are (e.g. its NOT_FOUND "Document (NAME) not
    found."), which may word things differently from production.

Also here: firestore_stubs(), the generated Python modules for proto/google/firestore/v1 (cached
like harness.py's stubs, never committed), and split_writes()/merge_responses(), the wire-level
splitting, for tests of their own. Raw documents in the emulator (REST): fsdocs.py.
"""

import errno
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
from concurrent import futures

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")  # before grpc is imported (harness.py)
import grpc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("BOOKS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
STUB_ROOT = os.environ.get("BOOKS_STUB_DIR") or os.path.join(SOURCE_DIR, "tests", "wire", ".stubs")
GOOGLEAPIS_PROTO_DIR = os.environ.get("GOOGLEAPIS_PROTO_DIR") or \
    "/usr/share/gocode/src/github.com/gogo/googleapis"

SERVICE = "google.firestore.v1.Firestore"
READS = ("GetDocument", "RunQuery")
WRITES = ("Commit", "BatchWrite")
METHODS = ("GetDocument", "Commit", "BatchWrite", "RunQuery")

PRODUCTION_MAX_REQUEST_BYTES = 10485760   # 10 MiB: Firestore's limit on an API request
EMULATOR_MAX_MESSAGE_BYTES = 4194304      # 4 MiB: gRPC's default, which the emulator keeps
MAX_MESSAGE_BYTES = 64 * 1024 * 1024      # what the front itself takes and sends
UPSTREAM_TIMEOUT_S = 60.0                 # a forwarded call's deadline when the client set none
DROP_HOLD_CAP_S = 30.0                    # apply_then_drop(DEADLINE_EXCEEDED): longest hold

TOO_LARGE_MESSAGE = "Request payload size exceeds the limit: 10485760 bytes."
# Production's messages (cloud.google.com/firestore/docs/understand-error-codes and what its API
# answers), by code; a fault given no message uses its code's.
MESSAGES = {
    grpc.StatusCode.PERMISSION_DENIED: "Missing or insufficient permissions.",
    grpc.StatusCode.UNAUTHENTICATED:
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    grpc.StatusCode.RESOURCE_EXHAUSTED:
        "This database has exceeded their daily quota or the ramp up limit for writes, please "
        "retry with exponential backoff. To learn more about limits, see 'Usage and limits' "
        "section of the support documentation.",
    grpc.StatusCode.UNAVAILABLE: "The service is currently unavailable.",
    grpc.StatusCode.ABORTED: "Too much contention on these datastore entities. Please try again.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "A deadline was exceeded on the server.",
    grpc.StatusCode.INTERNAL: "Internal error encountered.",
}
# apply_then_drop: what a client's gRPC says when the reply never came.
DROP_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "Socket closed",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Deadline Exceeded",
}
# Request headers not passed on: HTTP/2's and gRPC's own, which the channel sets again.
_HOP_HEADERS = ("user-agent", "te", "content-type", "host")

FAULT_COUNTERS = ("too_large", "denied", "throttled", "failed_reads", "delayed", "dropped",
                  "split_calls", "split_parts")


# ---------------------------------------------------------------------------------------------
# The generated stubs, for tests that build or read Firestore messages (the front needs none).

_PROTOS = [
    ("google/firestore/v1/firestore.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/rpc/status.proto", GOOGLEAPIS_PROTO_DIR),
]
_stubs = None
_stubs_lock = threading.Lock()


def _stub_dir():
    h = hashlib.sha256()
    import grpc_tools
    h.update(repr(getattr(grpc_tools, "__file__", "")).encode())
    for rel, root in _PROTOS:
        with open(os.path.join(root, rel), "rb") as f:
            h.update(rel.encode() + b"\0" + f.read())
    final = os.path.join(STUB_ROOT, "firestore-" + h.hexdigest()[:20])
    if os.path.isfile(os.path.join(final, "COMPLETE")):
        return final
    os.makedirs(STUB_ROOT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen-", dir=STUB_ROOT)
    os.chmod(tmp, 0o755)
    try:
        roots = []
        for _, root in _PROTOS:
            if root not in roots:
                roots.append(root)
        # google/protobuf/*.proto come with grpc_tools (its _proto directory) or Debian's
        # libprotobuf-dev (/usr/include).
        import grpc_tools
        for extra in (os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"), "/usr/include"):
            if os.path.isfile(os.path.join(extra, "google", "protobuf", "timestamp.proto")):
                roots.append(extra)
                break
        cmd = [sys.executable, "-m", "grpc_tools.protoc"] + ["-I" + r for r in roots] + [
            "--python_out=" + tmp, "--grpc_python_out=" + tmp] + [rel for rel, _ in _PROTOS]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if res.returncode != 0:
            raise RuntimeError("grpc_tools.protoc failed (%d): %s" %
                               (res.returncode, res.stdout.decode(errors="replace")))
        with open(os.path.join(tmp, "COMPLETE"), "w") as f:
            f.write("generated by tests/support/fsfront.py\n")
        try:
            os.rename(tmp, final)  # atomic; fails when another test process got there first
            tmp = None
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if not os.path.isfile(os.path.join(final, "COMPLETE")):
                raise RuntimeError("%s exists but is incomplete" % final)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def firestore_stubs():
    """A namespace with firestore_pb2, firestore_pb2_grpc and status_pb2 (google.rpc), generated
    at first use from proto/google/firestore/v1/firestore.proto (the project's subset: a field it
    leaves out is kept as an unknown field when a message is parsed and serialized again)."""
    global _stubs
    with _stubs_lock:
        if _stubs is None:
            d = _stub_dir()
            # `google` is a namespace package (harness.py): this directory adds google.firestore
            # and google.rpc portions beside Debian's google.protobuf.
            if d not in sys.path:
                sys.path.insert(0, d)
            import importlib
            _stubs = types.SimpleNamespace(
                firestore_pb2=importlib.import_module("google.firestore.v1.firestore_pb2"),
                firestore_pb2_grpc=importlib.import_module(
                    "google.firestore.v1.firestore_pb2_grpc"),
                status_pb2=importlib.import_module("google.rpc.status_pb2"),
                stub_dir=d)
        return _stubs


# ---------------------------------------------------------------------------------------------
# Wire-level splitting and merging.

def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint at %d" % pos)
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long at %d" % pos)


def top_level_fields(data):
    """[(field_number, start, end)] of a serialized message's top-level fields, each data[start:
    end] the field's exact bytes (tag included). Groups (wire types 3, 4) are refused."""
    out, pos, n = [], 0, len(data)
    while pos < n:
        start = pos
        key, pos = _varint(data, pos)
        number, wtype = key >> 3, key & 7
        if wtype == 0:
            _, pos = _varint(data, pos)
        elif wtype == 1:
            pos += 8
        elif wtype == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wtype == 5:
            pos += 4
        else:
            raise ValueError("wire type %d at %d" % (wtype, start))
        if pos > n or number == 0:
            raise ValueError("malformed field at %d" % start)
        out.append((number, start, pos))
    return out


def split_writes(data, limit, writes_field=2):
    """Cuts a serialized BatchWriteRequest or CommitRequest into requests of at most `limit` bytes
    each (a single Write larger than that alone in one): every field but `writes_field` (database,
    labels, ...) is copied into each part, the writes are kept in order and byte for byte. Returns
    [data] when it fits."""
    if len(data) <= limit:
        return [data]
    head, writes = [], []
    for number, start, end in top_level_fields(data):
        (writes if number == writes_field else head).append(data[start:end])
    head = b"".join(head)
    parts, cur, size = [], [], len(head)
    for w in writes:
        if cur and size + len(w) > limit:
            parts.append(head + b"".join(cur))
            cur, size = [], len(head)
        cur.append(w)
        size += len(w)
    if cur or not parts:
        parts.append(head + b"".join(cur))
    return parts


def merge_responses(method, responses):
    """One response from the parts' serialized responses, in order. BatchWriteResponse: their
    concatenation (write_results and status lists concatenated). CommitResponse: every part's
    write_results (field 1) in order and the last part's commit_time (field 2)."""
    if method == "BatchWrite" or len(responses) == 1:
        return b"".join(responses)
    results, rest = [], b""
    for r in responses:
        other = []
        for number, start, end in top_level_fields(r):
            (results if number == 1 else other).append(r[start:end])
        rest = b"".join(other)
    return b"".join(results) + rest


# ---------------------------------------------------------------------------------------------
# The front.

class _Answer(Exception):
    """A call answered with a status instead of a response."""

    def __init__(self, code, message, trailing=None, initial=None):
        super().__init__(message)
        self.code, self.message, self.trailing, self.initial = code, message, trailing, initial
        self.counted = False  # its code is already in the stats


def _methods(methods):
    if isinstance(methods, str):
        methods = (methods,)
    methods = frozenset(methods)
    unknown = methods - set(METHODS)
    if unknown:
        raise ValueError("not a Firestore method the front serves: %s" % sorted(unknown))
    return methods


def _pass_on(metadata):
    """The metadata worth passing on: no pseudo-headers, no grpc-* (grpc-status-details-bin
    excepted), none of _HOP_HEADERS."""
    out = []
    for key, value in metadata or ():
        k = key.lower()
        if k.startswith(":") or k in _HOP_HEADERS or (
                k.startswith("grpc-") and k != "grpc-status-details-bin"):
            continue
        out.append((key, value))
    return tuple(out)


class Front:
    """The front. Options:
      split_bytes        a BatchWrite over this is split (default: the emulator's 4,194,304)
      max_request_bytes  a request over this is refused as production does (default 10,485,760;
                         None: no limit)
      commit_over_limit  "forward" (default: the emulator refuses it) or "split" (non-atomic)
      max_workers        the server's threads (calls in flight at once; more wait)
    """

    def __init__(self, split_bytes=EMULATOR_MAX_MESSAGE_BYTES,
                 max_request_bytes=PRODUCTION_MAX_REQUEST_BYTES, commit_over_limit="forward",
                 max_workers=32):
        if commit_over_limit not in ("forward", "split"):
            raise ValueError("commit_over_limit: 'forward' or 'split'")
        self.split_bytes = split_bytes
        self.max_request_bytes = max_request_bytes
        self.commit_over_limit = commit_over_limit
        self.max_workers = max_workers
        self.host = self.port = self.emulator_host = None
        self._mu = threading.Lock()
        self._stopping = threading.Event()
        self._server = self._channel = self._executor = None
        self._faults = {}
        self.clear()
        self.reset_stats()

    # ---- lifetime ----------------------------------------------------------------------------

    def start(self, emulator_host, port=0):
        """Starts serving on 127.0.0.1, a free port (or `port`: e.g. an earlier front's, to come
        back where a server's channel reconnects), forwarding to `emulator_host` (host:port);
        returns "127.0.0.1:PORT" (also .host; .port the number)."""
        if self._server is not None:
            raise RuntimeError("the front is already started")
        self._stopping.clear()
        opts = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self.emulator_host = emulator_host
        self._channel = grpc.insecure_channel(emulator_host, options=opts + [
            ("grpc.enable_http_proxy", 0)])
        self._up = {m: (self._channel.unary_stream if m == "RunQuery" else
                        self._channel.unary_unary)("/%s/%s" % (SERVICE, m))
                    for m in METHODS}
        self._executor = futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                                    thread_name_prefix="fsfront")
        self._server = grpc.server(self._executor, options=opts + [("grpc.so_reuseport", 0)])
        self._server.add_generic_rpc_handlers((_Handler(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:%d" % port)
        if not self.port:
            raise RuntimeError("the front could not bind %s on 127.0.0.1" %
                               ("port %d" % port if port else "a port"))
        self._server.start()
        self.host = "127.0.0.1:%d" % self.port
        return self.host

    def stop(self, grace=1.0):
        """Stops serving (calls in flight get `grace` seconds) and closes the channel to the
        emulator. Bounded; safe to call twice."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 10)
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- faults ------------------------------------------------------------------------------

    @staticmethod
    def _until(seconds):
        return None if seconds is None else time.monotonic() + float(seconds)

    _FAULT_KEYS = {"deny": "deny", "throttle": "throttle", "fail_reads": "fail_reads",
                   "fail_first_reads": "fail_first", "delay": "delay", "apply_then_drop": "drop"}

    def clear(self, *faults):
        """Every fault off, or only the ones named ("deny", "throttle", "fail_reads",
        "fail_first_reads", "delay", "apply_then_drop"); stats kept."""
        keys = [self._FAULT_KEYS[f] for f in faults] or list(self._FAULT_KEYS.values())
        with self._mu:
            for k in keys:
                self._faults[k] = None

    def deny(self, seconds, code=grpc.StatusCode.PERMISSION_DENIED, message=None,
             methods=METHODS):
        with self._mu:
            self._faults["deny"] = {"until": self._until(seconds), "code": code,
                                    "message": message or MESSAGES.get(code, code.name),
                                    "methods": _methods(methods)}

    def throttle(self, share, seconds, methods=WRITES, seed=0,
                 code=grpc.StatusCode.RESOURCE_EXHAUSTED, message=None):
        if not 0.0 <= share <= 1.0:
            raise ValueError("share: 0..1")
        with self._mu:
            self._faults["throttle"] = {"until": self._until(seconds), "share": float(share),
                                        "rng": random.Random(seed), "code": code,
                                        "message": message or MESSAGES.get(code, code.name),
                                        "methods": _methods(methods)}

    def fail_reads(self, n, code=grpc.StatusCode.UNAVAILABLE, message=None, methods=READS):
        with self._mu:
            old = self._faults["fail_reads"]
            left = (old["left"] if old else 0) + int(n)
            self._faults["fail_reads"] = {"left": left, "code": code,
                                          "message": message or MESSAGES.get(code, code.name),
                                          "methods": _methods(methods)}

    def fail_first_reads(self, code=grpc.StatusCode.UNAVAILABLE, message=None, methods=READS):
        with self._mu:
            self._faults["fail_first"] = {"seen": set(), "code": code,
                                          "message": message or MESSAGES.get(code, code.name),
                                          "methods": _methods(methods)}

    def delay(self, ms, methods=METHODS, seconds=None):
        with self._mu:
            self._faults["delay"] = {"s": ms / 1000.0, "until": self._until(seconds),
                                     "methods": _methods(methods)}

    def apply_then_drop(self, n=1, methods=WRITES, code=grpc.StatusCode.UNAVAILABLE,
                        message=None):
        with self._mu:
            self._faults["drop"] = {"left": int(n), "code": code,
                                    "message": message or DROP_MESSAGES.get(
                                        code, MESSAGES.get(code, code.name)),
                                    "methods": _methods(methods)}

    # ---- stats -------------------------------------------------------------------------------

    def reset_stats(self):
        with self._mu:
            self._stats = {m: {"calls": 0, "codes": {}, "sizes": [], "max_size": 0,
                               "forwarded": 0} for m in METHODS}
            self._fault_counts = {k: 0 for k in FAULT_COUNTERS}
            self._last_md = {m: None for m in METHODS}

    def stats(self):
        with self._mu:
            return {m: {"calls": s["calls"], "codes": dict(s["codes"]), "sizes": list(s["sizes"]),
                        "max_size": s["max_size"], "forwarded": s["forwarded"]}
                    for m, s in self._stats.items()}

    def faults(self):
        with self._mu:
            return dict(self._fault_counts)

    def calls(self, method=None):
        with self._mu:
            return sum(s["calls"] for m, s in self._stats.items() if method in (None, m))

    def codes(self, method=None):
        """{code name: count} as answered to the client, for one method or all."""
        out = {}
        with self._mu:
            for m, s in self._stats.items():
                if method in (None, m):
                    for k, v in s["codes"].items():
                        out[k] = out.get(k, 0) + v
        return out

    def last_metadata(self, method):
        """The metadata the last forwarded call of `method` passed on, as a dict (a key sent
        twice: its last value), or None before the first."""
        with self._mu:
            md = self._last_md[method]
        return None if md is None else dict(md)

    def max_request_size(self, method=None):
        with self._mu:
            return max([s["max_size"] for m, s in self._stats.items() if method in (None, m)]
                       or [0])

    # ---- serving -----------------------------------------------------------------------------

    def _arrived(self, method, size):
        with self._mu:
            s = self._stats[method]
            s["calls"] += 1
            s["sizes"].append(size)
            s["max_size"] = max(s["max_size"], size)

    def _answered(self, method, code):
        with self._mu:
            codes = self._stats[method]["codes"]
            codes[code.name] = codes.get(code.name, 0) + 1

    def _count(self, what, n=1):
        with self._mu:
            self._fault_counts[what] += n

    def _metadata(self, method, context):
        md = _pass_on(context.invocation_metadata())
        with self._mu:
            self._last_md[method] = md
        return md

    def _forwarded(self, method, n=1):
        with self._mu:
            self._stats[method]["forwarded"] += n

    def _decide(self, method, request):
        """Steps 1-5 of the order above: raises _Answer for a fault's answer; returns the delay in
        seconds and whether the reply is to be dropped (and how)."""
        if self.max_request_bytes is not None and len(request) > self.max_request_bytes:
            self._count("too_large")
            raise _Answer(grpc.StatusCode.INVALID_ARGUMENT,
                          "Request payload size exceeds the limit: %d bytes." %
                          self.max_request_bytes)
        now = time.monotonic()
        with self._mu:
            f = self._faults
            d = f["deny"]
            if d and (d["until"] is None or now < d["until"]) and method in d["methods"]:
                self._fault_counts["denied"] += 1
                raise _Answer(d["code"], d["message"])
            t = f["throttle"]
            if t and (t["until"] is None or now < t["until"]) and method in t["methods"]:
                if t["rng"].random() < t["share"]:
                    self._fault_counts["throttled"] += 1
                    raise _Answer(t["code"], t["message"])
            r = f["fail_reads"]
            if r and r["left"] > 0 and method in r["methods"]:
                r["left"] -= 1
                self._fault_counts["failed_reads"] += 1
                raise _Answer(r["code"], r["message"])
            r = f["fail_first"]
            if r and method in r["methods"]:
                key = (method, bytes(request))
                if key not in r["seen"]:
                    r["seen"].add(key)
                    self._fault_counts["failed_reads"] += 1
                    raise _Answer(r["code"], r["message"])
            delay = 0.0
            dl = f["delay"]
            if dl and (dl["until"] is None or now < dl["until"]) and method in dl["methods"]:
                delay = dl["s"]
                self._fault_counts["delayed"] += 1
            drop = None
            p = f["drop"]
            if p and p["left"] > 0 and method in p["methods"]:
                p["left"] -= 1
                drop = (p["code"], p["message"])
        return delay, drop

    @staticmethod
    def _timeout(context):
        left = context.time_remaining()
        if left is None or left > UPSTREAM_TIMEOUT_S * 10:
            return UPSTREAM_TIMEOUT_S
        return max(0.001, left)

    def _wait(self, seconds, context):
        left = context.time_remaining()
        if left is not None:
            seconds = min(seconds, max(0.0, left))
        if seconds > 0:
            self._stopping.wait(seconds)
        left = context.time_remaining()
        if left is not None and left <= 0:
            # Its deadline passed meanwhile: not forwarded, and no answer of the front's own
            # (the client's clock may be a little behind this one): the client's deadline ends it.
            bound = time.monotonic() + 2.0
            while context.is_active() and time.monotonic() < bound:
                self._stopping.wait(0.01)
            raise _Answer(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if not context.is_active():  # cancelled meanwhile: not forwarded
            raise _Answer(grpc.StatusCode.CANCELLED, "Cancelled")

    def _drop(self, method, drop, context):
        code, message = drop
        self._count("dropped")
        a = _Answer(code, message)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            # Counted now: the client's own deadline ends the call as the hold does.
            self._answered(method, code)
            a.counted = True
            left = context.time_remaining()
            if left is not None and left < UPSTREAM_TIMEOUT_S * 10:
                self._stopping.wait(min(max(0.0, left), DROP_HOLD_CAP_S))
        raise a

    def _upstream_error(self, e):
        return _Answer(e.code() or grpc.StatusCode.UNKNOWN, e.details() or "",
                       _pass_on(e.trailing_metadata()), _pass_on(e.initial_metadata()))

    def unary(self, method, request, context):
        """Serves one unary call (returns the response bytes or raises _Answer)."""
        delay, drop = self._decide(method, request)
        if delay:
            self._wait(delay, context)
        md = self._metadata(method, context)
        parts = [request]
        if method == "BatchWrite" or (method == "Commit" and self.commit_over_limit == "split"):
            parts = split_writes(request, self.split_bytes)
            if len(parts) > 1:
                self._count("split_calls")
                self._count("split_parts", len(parts))
        responses, initial, trailing = [], (), ()
        for part in parts:
            self._forwarded(method)
            fut = self._up[method].future(part, metadata=md, timeout=self._timeout(context))
            if not context.add_callback(fut.cancel):  # the call has ended already
                fut.cancel()
            try:
                responses.append(fut.result())
            except grpc.FutureCancelledError:  # the client went away: nobody hears this
                raise _Answer(grpc.StatusCode.CANCELLED, "Cancelled")
            except grpc.RpcError as e:
                if drop:
                    self._drop(method, drop, context)
                raise self._upstream_error(e)
            initial, trailing = _pass_on(fut.initial_metadata()), _pass_on(
                fut.trailing_metadata())
        if drop:
            self._drop(method, drop, context)
        if initial:
            context.send_initial_metadata(initial)
        if trailing:
            context.set_trailing_metadata(trailing)
        return merge_responses(method, responses)

    def stream(self, method, request, context):
        """Serves one RunQuery (yields the response bytes or raises _Answer)."""
        delay, drop = self._decide(method, request)
        if delay:
            self._wait(delay, context)
        self._forwarded(method)
        call = self._up[method](request, metadata=self._metadata(method, context),
                                timeout=self._timeout(context))
        if not context.add_callback(call.cancel):
            call.cancel()
        try:
            if drop:
                for _ in call:
                    pass
                self._drop(method, drop, context)
            initial = _pass_on(call.initial_metadata())
            if initial:
                context.send_initial_metadata(initial)
            for resp in call:
                yield resp
            trailing = _pass_on(call.trailing_metadata())
            if trailing:
                context.set_trailing_metadata(trailing)
        except grpc.RpcError as e:
            if drop:
                self._drop(method, drop, context)
            raise self._upstream_error(e)


def _abort(context, a):
    if a.initial:
        try:
            context.send_initial_metadata(a.initial)
        except Exception:  # noqa: BLE001: already sent (a stream that had begun)
            pass
    if a.trailing:
        context.set_trailing_metadata(a.trailing)
    context.abort(a.code, a.message)


class _Handler(grpc.GenericRpcHandler):
    """Routes /google.firestore.v1.Firestore/{method} to the front, bytes in and out; counts the
    code each call is answered with, before it is sent."""

    def __init__(self, front):
        self.front = front

    def service(self, handler_call_details):
        prefix = "/%s/" % SERVICE
        path = handler_call_details.method or ""
        method = path[len(prefix):] if path.startswith(prefix) else None
        if method not in METHODS:
            return None
        front = self.front
        if method == "RunQuery":
            def run_query(request, context):
                front._arrived(method, len(request))
                try:
                    yield from front.stream(method, request, context)
                except _Answer as a:
                    if not a.counted:
                        front._answered(method, a.code)
                    _abort(context, a)
                except GeneratorExit:  # the client went away mid-stream
                    front._answered(method, grpc.StatusCode.CANCELLED)
                    raise
                except BaseException:
                    front._answered(method, grpc.StatusCode.UNKNOWN)
                    raise
                else:
                    front._answered(method, grpc.StatusCode.OK)
            return grpc.unary_stream_rpc_method_handler(run_query)

        def unary(request, context):
            front._arrived(method, len(request))
            try:
                response = front.unary(method, request, context)
            except _Answer as a:
                if not a.counted:
                    front._answered(method, a.code)
                _abort(context, a)
            except BaseException:
                front._answered(method, grpc.StatusCode.UNKNOWN)
                raise
            front._answered(method, grpc.StatusCode.OK)
            return response
        return grpc.unary_unary_rpc_method_handler(unary)
