"""Shared harness for the wire tests: the real books-server binary on a free port, driven by
Debian's python3-grpcio (a client nobody here wrote).

What it does:
  * generates the Python stubs for proto/books/v1/books.proto and its imports at test time with
    grpc_tools.protoc, once per proto content, into BOOKS_STUB_DIR (several CTests run at once:
    each generates into a temp dir and renames it into place; losing that race is fine);
  * starts servers (`--port 0`, stdout/stderr to files), reads the bound port from the "listening"
    log line, waits for grpc.health.v1.Health/Check to say SERVING, and stops them by PID with
    SIGTERM (SIGKILL only as a last resort, which fails the test);
  * fails the test when a server's stderr shows a sanitizer report or when it exits non-zero after
    SIGTERM;
  * decodes AIP-193 error details (grpc-status-details-bin -> google.rpc.Status -> ErrorInfo,
    BadRequest, ResourceInfo) and checks them.

Hangs and leftovers (issue 15):
  * a test process never fork()s: gRPC core's pthread_atfork handler, which grpcio installs, joins
    gRPC's executor threads before every fork(2) and can wait for ever (seen: StartupTest hung in
    fork() inside subprocess.run(preexec_fn=...) once in ~50 runs). Python's subprocess forks for
    preexec_fn, user, group and extra_groups, and uses vfork(2), which runs no handlers, otherwise:
    run a command as another user through setpriv(1) instead (tests/check_no_fork.py enforces
    it). GRPC_ENABLE_FORK_SUPPORT=0 (set by ctest, and here before grpc is imported) keeps core
    from installing the handler at all, in case a fork slips through;
  * every module has a time budget (BOOKS_WIRE_TIMEOUT_S, set by ctest below its own timeout):
    at its end the C stacks of every thread (gdb, through the reaper) and the Python stacks
    (faulthandler) go to stderr and the process exits 1, instead of ctest killing it silently;
  * every server, proxy and PostgreSQL cluster a test starts is registered with the reaper
    (tests/support/reaper.py), which stops whatever is still running when the test process ends,
    however it ends (ctest's SIGKILL included).

Environment (all optional when run by hand from tests/wire):
  BOOKS_SERVER          the binary (default: <repo>/build/books-server)
  BOOKS_STUB_DIR        where generated stubs are cached (default: tests/wire/.stubs)
  BOOKS_SOURCE_DIR      the repository root (default: two levels above this file)
  GOOGLEAPIS_PROTO_DIR  google/rpc protos (Debian golang-github-gogo-googleapis-dev; google/api comes
                        from proto/)
  GRPC_PROTO_DIR        grpc/health/v1/health.proto, grpc/reflection/v1{,alpha}/reflection.proto
                        (Debian grpc-proto)
  BOOKS_SERVER_WRAPPER  a command prefix for the server (valgrind, strace, ...), split like a shell
  BOOKS_WIRE_KEEP=1     keep each server's stdout/stderr files (their paths are printed)
  BOOKS_WIRE_VERBOSE=1  the shutdown tests print how the calls in flight ended
  BOOKS_WIRE_TIMEOUT_S  the module's time budget in seconds (default 240)

Run by hand:  cd tests/wire && /usr/bin/python3 -m unittest -v test_books
"""

import errno
import faulthandler
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# Before grpc is imported (core reads it when it starts): no fork handlers (see the top).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
import grpc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("BOOKS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))
import reaper  # noqa: E402

# The module's time budget: stacks, then exit 1, well before ctest's own timeout kills it.
MODULE_TIMEOUT_S = float(os.environ.get("BOOKS_WIRE_TIMEOUT_S") or 240)
STACKS_BEFORE_S = 10.0
faulthandler.enable()
faulthandler.dump_traceback_later(MODULE_TIMEOUT_S, exit=True)
reaper.dump_stacks_at(max(1.0, MODULE_TIMEOUT_S - STACKS_BEFORE_S))
SERVER_PATH = os.environ.get("BOOKS_SERVER") or os.path.join(SOURCE_DIR, "build", "books-server")
STUB_ROOT = os.environ.get("BOOKS_STUB_DIR") or os.path.join(HERE, ".stubs")  # git-ignored
# Optional command prefix for the server, e.g. "valgrind -q --error-exitcode=99 --leak-check=full".
SERVER_WRAPPER = shlex.split(os.environ.get("BOOKS_SERVER_WRAPPER", ""))
GOOGLEAPIS_PROTO_DIR = os.environ.get("GOOGLEAPIS_PROTO_DIR") or \
    "/usr/share/gocode/src/github.com/gogo/googleapis"
GRPC_PROTO_DIR = os.environ.get("GRPC_PROTO_DIR") or "/usr/share/grpc-proto"

# Generous bounds for things that normally take milliseconds; the ASan build is ~3x slower and CI
# machines are busy. These are limits on waiting, never assertions about speed.
STARTUP_TIMEOUT_S = 60.0
STOP_MARGIN_S = 30.0
DEFAULT_GRACE_MS = 8000
POLL_INTERVAL_S = 0.02

ERROR_DOMAIN = "books.example.com"
BOOK_TYPE = "books.example.com/Book"
SERVICE = "books.v1.BooksService"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# ---------------------------------------------------------------------------------------------
# Stubs, generated at test time.

# (path relative to an include root, include root)
_PROTOS = [
    ("books/v1/books.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/api/field_behavior.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/api/field_info.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/api/resource.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/api/annotations.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/api/http.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/api/client.proto", os.path.join(SOURCE_DIR, "proto")),
    ("google/rpc/status.proto", GOOGLEAPIS_PROTO_DIR),
    ("google/rpc/error_details.proto", GOOGLEAPIS_PROTO_DIR),
    ("grpc/health/v1/health.proto", GRPC_PROTO_DIR),
    # Not imported here; test_reflection.py imports them (grpc.reflection.v1[alpha].reflection_pb2).
    ("grpc/reflection/v1/reflection.proto", GRPC_PROTO_DIR),
    ("grpc/reflection/v1alpha/reflection.proto", GRPC_PROTO_DIR),
]


def _stub_key():
    """A hash of every input, so a changed proto (or protoc) gets fresh stubs, never stale ones."""
    h = hashlib.sha256()
    import grpc_tools
    h.update(repr(getattr(grpc_tools, "__file__", "")).encode())
    for rel, root in _PROTOS:
        path = os.path.join(root, rel)
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:20]


def _generate_stubs():
    """Returns the directory holding the generated packages (books/, google/, grpc/)."""
    for rel, root in _PROTOS:
        if not os.path.isfile(os.path.join(root, rel)):
            raise RuntimeError("%s not found under %s (set GOOGLEAPIS_PROTO_DIR / GRPC_PROTO_DIR, "
                               "or run scripts/deps.sh test)" % (rel, root))
    final = os.path.join(STUB_ROOT, _stub_key())
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
        cmd = [sys.executable, "-m", "grpc_tools.protoc"] + ["-I" + r for r in roots] + [
            "--python_out=" + tmp, "--grpc_python_out=" + tmp] + [rel for rel, _ in _PROTOS]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise RuntimeError("grpc_tools.protoc failed (%d): %s" %
                               (res.returncode, res.stdout.decode(errors="replace")))
        with open(os.path.join(tmp, "COMPLETE"), "w") as f:
            f.write("generated by tests/wire/harness.py\n")
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


def _import_stubs():
    stub_dir = _generate_stubs()
    # `google` is a namespace package in Debian (dist-packages/google has no __init__.py and holds
    # google.protobuf); protoc generates no __init__.py either, so putting stub_dir on sys.path
    # makes google.api and google.rpc portions of the same namespace package next to
    # google.protobuf. The namespace path is recomputed when sys.path changes.
    if stub_dir not in sys.path:
        sys.path.insert(0, stub_dir)
    # `grpc`, on the other hand, is a regular package (grpcio), so a second `grpc/` directory on
    # sys.path is never searched for grpc.health. Extend the package's own search path instead.
    grpc_portion = os.path.join(stub_dir, "grpc")
    if grpc_portion not in grpc.__path__:
        grpc.__path__.append(grpc_portion)
    import importlib
    mods = {}
    for name in ("books.v1.books_pb2", "books.v1.books_pb2_grpc", "google.rpc.status_pb2",
                 "google.rpc.error_details_pb2", "grpc.health.v1.health_pb2",
                 "grpc.health.v1.health_pb2_grpc"):
        mods[name.rsplit(".", 1)[1]] = importlib.import_module(name)
    return stub_dir, mods


STUB_DIR, _mods = _import_stubs()
books_pb2 = _mods["books_pb2"]
books_pb2_grpc = _mods["books_pb2_grpc"]
status_pb2 = _mods["status_pb2"]
error_details_pb2 = _mods["error_details_pb2"]
health_pb2 = _mods["health_pb2"]
health_pb2_grpc = _mods["health_pb2_grpc"]

Book = books_pb2.Book
GetBookRequest = books_pb2.GetBookRequest
ListBooksRequest = books_pb2.ListBooksRequest
ListBooksResponse = books_pb2.ListBooksResponse
CreateBookRequest = books_pb2.CreateBookRequest

# ---------------------------------------------------------------------------------------------
# Small helpers.

ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?\Z")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
UPPER_SNAKE_RE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*\Z")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")


def make_book(display_name="A Title", authors=("An Author",), publisher="A Publisher", name=""):
    return Book(name=name, display_name=display_name, authors=list(authors), publisher=publisher)


def free_port():
    """A port that was free a moment ago (bind to 0, read, close). For tests that must pass a
    concrete port (env PORT); a tiny race with other processes is unavoidable there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def identity(x):
    return x


def raw_unary(channel, method):
    """A unary callable that sends and returns raw bytes, for garbage bodies and unknown methods."""
    return channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)


def insecure_channel(port, options=()):
    # The proxy environment variables must never route a test's calls elsewhere.
    opts = [("grpc.enable_http_proxy", 0)] + list(options)
    return grpc.insecure_channel("127.0.0.1:%d" % port, options=opts)


def create_many(stub, ids, book_for=None, batch=64, timeout=60):
    """Creates books with the given ids (futures, `batch` in flight at a time); returns them."""
    book_for = book_for or (lambda i: make_book("Title of " + i, ["Author " + i], "Pub"))
    out = []
    for start in range(0, len(ids), batch):
        futs = [stub.CreateBook.future(CreateBookRequest(book=book_for(i), book_id=i),
                                       timeout=timeout)
                for i in ids[start:start + batch]]
        out.extend(f.result() for f in futs)
    return out


def list_all(stub, page_size=0, timeout=30):
    """Walks every page of ListBooks; returns (books, pages)."""
    books, pages, token = [], 0, ""
    while True:
        resp = stub.ListBooks(ListBooksRequest(page_size=page_size, page_token=token),
                              timeout=timeout)
        pages += 1
        books.extend(resp.books)
        token = resp.next_page_token
        if not token:
            return books, pages
        if pages > 100000:
            raise AssertionError("ListBooks never returned an empty next_page_token")


def content(book):
    """What a Book says, without its name: for comparing what was acknowledged with what is read."""
    return (book.display_name, tuple(book.authors), book.publisher)


def wait_for(pred, timeout=120.0, what="condition"):
    """Polls pred() every 50 ms until it is true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def health_status(srv, service="books.v1.BooksService", timeout=5):
    """The server's grpc.health.v1 Check status for `service`, or None when the call fails."""
    ch = insecure_channel(srv.port)
    try:
        return health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
    except grpc.RpcError:
        return None
    finally:
        ch.close()


def _create_loop(port, prefix, acked, stop, errors):
    """Creates books until `stop` is set; records the acknowledged ones (name -> content) and the
    status names of the failed ones."""
    ch = insecure_channel(port)
    stub = books_pb2_grpc.BooksServiceStub(ch)
    i = 0
    try:
        while not stop.is_set():
            book = make_book("Crash %s %d \u00e9" % (prefix, i), ["A %d" % i, "B"], "P %d" % i)
            try:
                got = stub.CreateBook(CreateBookRequest(book_id="%s-%d" % (prefix, i), book=book),
                                      timeout=10)
                acked[got.name] = content(got)
            except grpc.RpcError as e:
                errors.append(e.code().name)
            i += 1
    finally:
        ch.close()


def run_creates(port, clients=6):
    """`clients` threads, each on its own channel, creating books on `port` until told to stop.
    Returns (acked, errors, stop, threads): set `stop`, then join the threads."""
    acked, errors, stop = {}, [], threading.Event()
    threads = [threading.Thread(target=_create_loop,
                                args=(port, "c%d-%d" % (k, os.getpid()), acked, stop, errors))
               for k in range(clients)]
    for t in threads:
        t.start()
    return acked, errors, stop, threads


# ---------------------------------------------------------------------------------------------
# AIP-193 error details.

class ErrorDetails:
    """What an error carried: the call's code and message, and the decoded google.rpc.Status."""

    def __init__(self, err):
        self.error = err
        self.code = err.code()
        self.message = err.details() or ""
        self.status = None
        self.raw = None
        self.error_infos = []
        self.bad_requests = []
        self.resource_infos = []
        self.type_urls = []
        self.unpack_failures = []
        for key, value in (err.trailing_metadata() or ()):
            if key == "grpc-status-details-bin":
                self.raw = value
        if self.raw is None:
            return
        self.status = status_pb2.Status.FromString(self.raw)
        kinds = ((error_details_pb2.ErrorInfo, self.error_infos),
                 (error_details_pb2.BadRequest, self.bad_requests),
                 (error_details_pb2.ResourceInfo, self.resource_infos))
        for any_msg in self.status.details:
            self.type_urls.append(any_msg.type_url)
            for cls, out in kinds:
                if any_msg.Is(cls.DESCRIPTOR):
                    m = cls()
                    if not any_msg.Unpack(m):
                        self.unpack_failures.append(any_msg.type_url)
                    out.append(m)

    @property
    def error_info(self):
        return self.error_infos[0] if len(self.error_infos) == 1 else None

    @property
    def violation_fields(self):
        return [v.field for br in self.bad_requests for v in br.field_violations]

    def describe(self):
        parts = ["code=%s message=%r" % (self.code, self.message)]
        if self.status is None:
            parts.append("no grpc-status-details-bin")
        else:
            parts.append("status.code=%d status.message=%r details=%s" %
                         (self.status.code, self.status.message, self.type_urls))
            for ei in self.error_infos:
                parts.append("ErrorInfo(reason=%r domain=%r metadata=%r)" %
                             (ei.reason, ei.domain, dict(ei.metadata)))
            for br in self.bad_requests:
                parts.append("BadRequest(%r)" % [(v.field, v.description)
                                                 for v in br.field_violations])
            for ri in self.resource_infos:
                parts.append("ResourceInfo(type=%r name=%r)" % (ri.resource_type,
                                                                ri.resource_name))
        return "; ".join(parts)


def error_details(err):
    return ErrorDetails(err)


def _message_names(message, field):
    """True when an error message names `field` ("book.authors[2]" -> "authors", also accepted as
    "authors", "book.authors" and for snake_case "page token" or "pageToken")."""
    leaf = re.sub(r"\[\d+\]", "", field).split(".")[-1]
    spellings = {leaf, leaf.replace("_", " "),
                 re.sub(r"_([a-z])", lambda m: m.group(1).upper(), leaf)}
    low = message.lower()
    return any(s.lower() in low for s in spellings)


# ---------------------------------------------------------------------------------------------
# A server process.

class ServerError(AssertionError):
    pass


def _clean_env(extra=None):
    env = dict(os.environ)
    # Settings the developer's shell may carry must not change what the tests see.
    for k in list(env):
        if k == "PORT" or k.startswith("BOOKS_"):
            del env[k]
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


class ServerProcess:
    """One books-server process. `port=0` passes `--port 0`; `port=None` passes no --port flag (the
    environment decides). Output goes to files in a private temp dir."""

    def __init__(self, args=(), env=None, port=0, label="server"):
        self.args = [str(a) for a in args]
        self.port_arg = port
        self.extra_env = dict(env or {})
        self.label = label
        self.port = None
        self.proc = None
        self.returncode = None
        self.killed = False
        self.signalled = None
        self._dir = tempfile.mkdtemp(prefix="books-wire-")
        self.stdout_path = os.path.join(self._dir, "stdout")
        self.stderr_path = os.path.join(self._dir, "stderr")
        self._files = []
        self._channels = []

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def argv(self):
        argv = SERVER_WRAPPER + [SERVER_PATH]
        if self.port_arg is not None:
            argv += ["--port", str(self.port_arg)]
        return argv + self.args

    def start(self):
        if not os.access(SERVER_PATH, os.X_OK):
            raise ServerError("books-server binary not found or not executable: %s "
                              "(set BOOKS_SERVER)" % SERVER_PATH)
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self._files = [out, err]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env=_clean_env(self.extra_env), close_fds=True)
        reaper.watch_process(self.proc.pid, "books-server " + self.label)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def poll(self):
        if self.returncode is None and self.proc is not None:
            self.returncode = self.proc.poll()
            if self.returncode is not None:
                reaper.forget_process(self.proc.pid)
        return self.returncode

    def running(self):
        return self.proc is not None and self.poll() is None

    def wait_listening(self, timeout=STARTUP_TIMEOUT_S):
        """Polls stdout for the "listening" line and returns its port."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines(strict=False):
                if line.get("message") == "listening" and isinstance(line.get("port"), int):
                    self.port = line["port"]
                    return self.port
            if not self.running():
                raise ServerError("%s exited with %s before logging \"listening\"\n%s" %
                                  (self.label, self.returncode, self.output_tail()))
            if time.monotonic() > deadline:
                raise ServerError("%s logged no \"listening\" line with a port within %.0f s\n%s"
                                  % (self.label, timeout, self.output_tail()))
            time.sleep(POLL_INTERVAL_S)

    def wait_serving(self, timeout=STARTUP_TIMEOUT_S):
        """Polls grpc.health.v1.Health/Check("") until SERVING."""
        deadline = time.monotonic() + timeout
        channel = insecure_channel(self.port)
        try:
            health = health_pb2_grpc.HealthStub(channel)
            last = None
            while True:
                try:
                    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    last = resp.status
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError as e:
                    last = e.code()
                if not self.running():
                    raise ServerError("%s exited with %s while waiting for SERVING\n%s" %
                                      (self.label, self.returncode, self.output_tail()))
                if time.monotonic() > deadline:
                    raise ServerError("%s not SERVING within %.0f s (last: %s)\n%s" %
                                      (self.label, timeout, last, self.output_tail()))
                time.sleep(POLL_INTERVAL_S)
        finally:
            channel.close()

    def start_and_wait(self):
        self.start()
        self.wait_listening()
        self.wait_serving()
        return self

    def send_signal(self, sig):
        if self.running():
            self.signalled = sig
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code, or None on timeout (the process keeps running)."""
        if self.proc is None:
            return None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        reaper.forget_process(self.proc.pid)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, grace_ms=DEFAULT_GRACE_MS):
        """Signals the server and waits for it; SIGKILL only when it does not exit in time (then
        self.killed is set and the caller fails the test). Returns the exit code."""
        self.close_channels()
        if self.proc is None:
            return None
        if self.running():
            self.send_signal(sig)
            if self.wait(grace_ms / 1000.0 + STOP_MARGIN_S) is None:
                self.killed = True
                self.proc.kill()
                self.wait(30)
        else:
            self.poll()
        self._close_files()
        return self.returncode

    def close_channels(self):
        for ch in self._channels:
            try:
                ch.close()
            except Exception:
                pass
        self._channels = []

    def _close_files(self):
        for f in self._files:
            f.close()
        self._files = []

    def cleanup(self):
        """Kills a server still running (no checks) and removes its files unless BOOKS_WIRE_KEEP."""
        self.close_channels()
        if self.running():
            self.killed = True
            self.proc.kill()
            self.wait(30)
        self._close_files()
        if os.environ.get("BOOKS_WIRE_KEEP"):
            sys.stderr.write("[harness] %s output kept in %s\n" % (self.label, self._dir))
        else:
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- clients ------------------------------------------------------------------------------
    def channel(self, options=()):
        ch = insecure_channel(self.port, options)
        self._channels.append(ch)
        return ch

    def stub(self, channel=None):
        return books_pb2_grpc.BooksServiceStub(channel or self.channel())

    def health(self, channel=None):
        return health_pb2_grpc.HealthStub(channel or self.channel())

    # -- output -------------------------------------------------------------------------------
    def stdout_bytes(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, strict=True):
        """The complete stdout lines parsed as JSON. strict: every complete line must be a UTF-8
        JSON object (raises ServerError naming the first bad line); else bad lines are skipped."""
        data = self.stdout_bytes()
        lines = data.split(b"\n")
        if self.running():
            lines = lines[:-1]  # the last piece may be a line still being written
        out = []
        for i, raw in enumerate(lines):
            if not raw and i == len(lines) - 1:
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except (UnicodeDecodeError, ValueError) as e:
                if strict:
                    raise ServerError("%s stdout line %d is not a UTF-8 JSON object (%s): %r" %
                                      (self.label, i + 1, e, raw[:500]))
                continue
            out.append(obj)
        return out

    def rpc_lines(self, method=None):
        return [l for l in self.log_lines() if "method" in l and
                (method is None or l["method"] == method)]

    def sanitizer_report(self):
        err = self.stderr_text()
        if any(m in err for m in SANITIZER_MARKERS):
            return err
        return None

    def output_tail(self, n=4000):
        out = self.stdout_bytes().decode("utf-8", errors="replace")
        return "--- argv: %s\n--- stdout (tail):\n%s\n--- stderr (tail):\n%s" % (
            " ".join(self.argv), out[-n:], self.stderr_text()[-n:])

    def check_clean(self):
        """Raises ServerError when stderr holds a sanitizer report."""
        rep = self.sanitizer_report()
        if rep:
            raise ServerError("%s: sanitizer report on stderr:\n%s" % (self.label, rep[-8000:]))

    def check_alive(self):
        self.check_clean()
        if not self.running():
            raise ServerError("%s died (exit code %s)\n%s" % (self.label, self.returncode,
                                                             self.output_tail()))

    def stop_and_check(self, sig=signal.SIGTERM, grace_ms=DEFAULT_GRACE_MS):
        """Stops a server the test expects to be running; fails unless it exits 0, without SIGKILL
        and without a sanitizer report."""
        if self.proc is None:
            return None   # never started: the test already failed for that reason
        was_running = self.running()
        rc = self.stop(sig, grace_ms)
        self.check_clean()
        if self.killed:
            raise ServerError("%s did not exit within %.0f s of %s; killed\n%s" % (
                self.label, grace_ms / 1000.0 + STOP_MARGIN_S, signal.Signals(sig).name,
                self.output_tail()))
        if not was_running:
            raise ServerError("%s had already exited (code %s) before it was stopped\n%s" %
                              (self.label, rc, self.output_tail()))
        if rc != 0:
            raise ServerError("%s exited with %s after %s, want 0\n%s" % (
                self.label, rc, signal.Signals(sig).name, self.output_tail()))
        # Every line, including the per-RPC lines flushed at shutdown, must be JSON.
        self.log_lines(strict=True)
        return rc


# ---------------------------------------------------------------------------------------------
# Test case bases.

class WireTestCase(unittest.TestCase):
    """Adds server management and AIP-193 assertions. Servers started with start_server() are
    stopped after the test, even when it fails, and the test fails if they did not exit cleanly."""

    maxDiff = 4000

    def start_server(self, *args, env=None, port=0, wait=True, label="server"):
        s = ServerProcess(args, env=env, port=port, label=label)
        self.addCleanup(s.cleanup)
        s.expect_clean_exit = True
        self.addCleanup(self._finish_server, s)
        s.start()
        if wait:
            s.wait_listening()
            s.wait_serving()
        return s

    def _finish_server(self, s):
        if s.proc is None:
            return
        if getattr(s, "expect_clean_exit", True) and s.signalled is None:
            # Nobody has signalled it yet: it must still be running, and exit 0 on SIGTERM. (A
            # server that crashed during the test fails here.)
            s.stop_and_check()
        else:
            # The test signalled it or expected it to exit by itself, and judged the exit code;
            # a sanitizer report still fails it.
            if s.running():
                s.stop()
            s.check_clean()

    # -- errors -------------------------------------------------------------------------------
    def expect_error(self, call, code, reason=None, fields=None, resource_name=None,
                     metadata=None, details=True):
        """Runs call() (no arguments), expects a grpc.RpcError with `code` and checks its AIP-193
        details; returns ErrorDetails.

        details=True: grpc-status-details-bin must hold a google.rpc.Status with the call's code
        and message and exactly one ErrorInfo (domain books.example.com, UPPER_SNAKE_CASE reason,
        == `reason` when given). fields: the exact multiset of BadRequest field violations (one
        BadRequest). resource_name: one ResourceInfo {books.example.com/Book, resource_name}, and
        the message names it. metadata: entries ErrorInfo.metadata must contain.
        details=False: the details are checked only if present."""
        try:
            result = call()
        except grpc.RpcError as e:
            err = e
        else:
            self.fail("expected %s, got a response: %r" % (code.name, result))
        return self.check_error(err, code, reason=reason, fields=fields,
                                resource_name=resource_name, metadata=metadata, details=details)

    def check_error(self, err, code, reason=None, fields=None, resource_name=None, metadata=None,
                    details=True):
        """expect_error() for an error already caught."""
        d = ErrorDetails(err)
        ctx = d.describe()
        self.assertEqual(d.code, code, ctx)
        if d.status is None and not details:
            return d
        self.assertIsNotNone(d.status, "no grpc-status-details-bin trailer: " + ctx)
        self.assertEqual(d.status.code, code.value[0],
                         "Status.code differs from the call's: " + ctx)
        self.assertEqual(d.status.message, d.message,
                         "Status.message differs from the call's message: " + ctx)
        self.assertTrue(d.message.strip(), "empty error message: " + ctx)
        for url in d.type_urls:
            self.assertTrue(url.startswith("type.googleapis.com/google.rpc."),
                            "unexpected detail type %r: %s" % (url, ctx))
        self.assertEqual(d.unpack_failures, [], ctx)
        self.assertEqual(len(d.error_infos), 1, "want exactly one ErrorInfo: " + ctx)
        ei = d.error_infos[0]
        self.assertEqual(ei.domain, ERROR_DOMAIN, ctx)
        self.assertRegex(ei.reason, UPPER_SNAKE_RE, ctx)
        self.assertLessEqual(len(ei.reason), 63, ctx)
        if reason is not None:
            self.assertEqual(ei.reason, reason, ctx)
        if metadata:
            for k, v in metadata.items():
                self.assertEqual(ei.metadata.get(k), v, "ErrorInfo.metadata[%r]: %s" % (k, ctx))
        if fields is not None:
            self.assertEqual(len(d.bad_requests), 1, "want exactly one BadRequest: " + ctx)
            got = d.violation_fields
            self.assertEqual(sorted(got), sorted(fields), "field violations: " + ctx)
            for br in d.bad_requests:
                for v in br.field_violations:
                    self.assertTrue(v.description.strip(),
                                    "empty description for %r: %s" % (v.field, ctx))
            if len(fields) == 1:
                self.assertTrue(_message_names(d.message, fields[0]),
                                "message does not name the field %r: %s" % (fields[0], ctx))
        if resource_name is not None:
            self.assertEqual(len(d.resource_infos), 1, "want exactly one ResourceInfo: " + ctx)
            ri = d.resource_infos[0]
            self.assertEqual(ri.resource_type, BOOK_TYPE, ctx)
            self.assertEqual(ri.resource_name, resource_name, ctx)
            self.assertIn(resource_name, d.message, "message does not name the resource: " + ctx)
        return d

    def expect_code(self, call, *codes):
        """Runs call() and returns the grpc.StatusCode it ended with (OK when it returned)."""
        try:
            call()
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        self.assertIn(code, codes)
        return code

    def assertBookEqual(self, got, want, msg=None):
        self.assertEqual((got.name, got.display_name, list(got.authors), got.publisher),
                         (want.name, want.display_name, list(want.authors), want.publisher), msg)


class SharedServerTestCase(WireTestCase):
    """One server for the whole class (started in setUpClass, stopped and checked after the last
    test). After every test the server must still be running with a clean stderr."""

    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ServerProcess(cls.server_args, env=cls.server_env, label=cls.__name__)
        cls.addClassCleanup(cls.server.cleanup)
        cls.addClassCleanup(cls.server.stop_and_check)
        cls.server.start_and_wait()
        cls.channel = cls.server.channel()
        cls.stub = cls.server.stub(cls.channel)

    def tearDown(self):
        self.server.check_alive()
        super().tearDown()
