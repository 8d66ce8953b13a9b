"""Schema evolution (ctest -L evolution): a field added to books.v1.Book in books.proto, and nothing
else, works end to end in every store, and binaries built with and without it share a data set.

run.py (beside this file) builds the second binary from a copy of proto/ with `string isbn = 5
[(google.api.field_behavior) = OPTIONAL]` added to Book, and runs this module with:
  BOOKS_SERVER, BOOKS_CLI          the build without the field ("old": this tree's proto/)
  BOOKS_EVO_SERVER, BOOKS_EVO_CLI  the build with it ("new": -DBOOKS_PROTO_DIR=BOOKS_EVO_PROTO_DIR)
  BOOKS_EVO_PROTO_DIR              the patched copy of proto/
  BOOKS_EVO_FIELD                  the field added, NAME=NUMBER ("isbn=5")

Clients. Each binary is driven with messages of its own proto, both generated at test time with
grpc_tools.protoc: the old proto's are the wire tests' stubs (harness.py, in Python's default
descriptor pool); the new proto's are the same proto with the field, compiled by grpc_tools.protoc
into a descriptor set in the build tree and loaded into a descriptor pool of their own (the two
cannot share one pool: both define books/v1/books.proto). Every response is also kept as the bytes
that came, so what a binary passes through is checked byte for byte, not through a decoder.

Every store (memory:, sqlite:, postgresql: on a cluster this module starts, firestore: on the
emulator of FIRESTORE_EMULATOR_HOST or one this module starts), with the new binary
(NewFieldEverywhere):
  test_isbn_round_trip     create with isbn -> GetBook -> ListBooks -> restart on the same data
                           (not memory:, which keeps nothing across a restart by design) ->
                           GetBook, ListBooks -> the retried create (same request_id, same isbn)
                           answers the first book -> the same request_id with another isbn, or
                           none, is FAILED_PRECONDITION REQUEST_ID_REUSED -> `books get NAME
                           --json` prints "isbn"; with them a Book of exactly SVC_MAX_BOOK_BYTES
                           (its isbn makes it that big), stored and read back, restart included;
  test_book_without_isbn   the field left out: isbn "" everywhere, retries as above;
  test_isbn_meets_the_codecs_generic_checks
                           an isbn that is not UTF-8 or holds a NUL: INVALID_ARGUMENT on
                           `book.isbn`; one byte over SVC_MAX_BOOK_BYTES: INVALID_ARGUMENT on
                           `book`; more field occurrences than the codec allows: INVALID_ARGUMENT
                           MALFORMED_REQUEST; nothing refused is stored.
memory: alone also shows what the old binary does with a client that sends the field (a memory:
store is one process's, so two binaries never share one).

Both binaries on one data set (MixedBinaries), a fresh one per test: one sqlite file (one process
at a time, sqlite's lock: each switch is a restart), one PostgreSQL database and one Firestore
collection (both binaries at once):
  test_old_binary_reads_an_isbn_book   sqlite:, postgresql: the stored bytes as they are, isbn
                           included as an unknown field; firestore: the fields its descriptor
                           maps, without isbn; its CLI prints the book without isbn;
  test_new_binary_reads_old_books      isbn "", its CLI prints "isbn":""; a request without
                           isbn made with a request_id on the old binary, retried on the new;
  test_request_without_isbn_retried_on_the_old_binary   the other way;
  test_isbn_through_the_old_binary     a client's isbn sent to the old binary is dropped, and so a
                           retry with isbn that crosses binaries is REQUEST_ID_REUSED.
What each scenario showed is printed at the end ("what the scenarios showed").
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("BOOKS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "wire"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))

import harness  # noqa: E402  (its module time budget, the reaper, the old proto's stubs)
import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

import fsdocs  # noqa: E402
import fsemulator  # noqa: E402


def _need(var):
    v = os.environ.get(var)
    if not v:
        raise RuntimeError("%s is not set: run this module through tests/evolution/run.py "
                           "(ctest -L evolution), which builds the binary with the new field" % var)
    return v


NEW_SERVER = _need("BOOKS_EVO_SERVER")
NEW_CLI = _need("BOOKS_EVO_CLI")
NEW_PROTO_DIR = _need("BOOKS_EVO_PROTO_DIR")
FIELD, _, _number = _need("BOOKS_EVO_FIELD").partition("=")
NUMBER = int(_number)
OLD_SERVER = harness.SERVER_PATH
OLD_CLI = os.environ.get("BOOKS_CLI") or os.path.join(os.path.dirname(OLD_SERVER), "books")

SVC_MAX_BOOK_BYTES = 128 * 1024        # include/books/service.h
CODEC_MAX_FIELDS_PER_MESSAGE = 1024    # include/books/codec.h
CLI_TIMEOUT_S = 60
FS_PROJECT = "books-evo"

ISBN = "978-0-441-17271-9"
OTHER_ISBN = "978\u20110\u2011441\u201117272\u20116"   # non-breaking hyphens: 3-byte UTF-8


# ---------------------------------------------------------------------------------------------
# The two protos' messages.

class Messages:
    def __init__(self, label, classes):
        self.label = label
        for k, v in classes.items():
            setattr(self, k, v)


OLD_MSGS = Messages("old", {"Book": harness.Book, "GetBookRequest": harness.GetBookRequest,
                            "ListBooksRequest": harness.ListBooksRequest,
                            "ListBooksResponse": harness.ListBooksResponse,
                            "CreateBookRequest": harness.CreateBookRequest})


def _new_messages():
    """The patched proto's messages: grpc_tools.protoc compiles it (once per content, into the
    stub cache) to a FileDescriptorSet, loaded into a pool of its own."""
    import grpc_tools
    rel = os.path.join("books", "v1", "books.proto")
    h = hashlib.sha256(repr(grpc_tools.__file__).encode())
    for root, _, files in sorted(os.walk(NEW_PROTO_DIR)):
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, NEW_PROTO_DIR).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read())
    final = os.path.join(harness.STUB_ROOT, "evo-" + h.hexdigest()[:20] + ".pb")
    if not os.path.isfile(final):
        os.makedirs(harness.STUB_ROOT, exist_ok=True)
        tmp = final + ".%d.tmp" % os.getpid()
        res = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + NEW_PROTO_DIR,
                              "--include_imports", "--descriptor_set_out=" + tmp, rel],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=120)
        if res.returncode != 0:
            raise RuntimeError("grpc_tools.protoc failed on %s: %s" %
                               (NEW_PROTO_DIR, res.stdout.decode(errors="replace")))
        os.replace(tmp, final)
    with open(final, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    get_class = getattr(message_factory, "GetMessageClass", None) or \
        message_factory.MessageFactory(pool).GetPrototype
    classes = {n: get_class(pool.FindMessageTypeByName("books.v1." + n))
               for n in ("Book", "GetBookRequest", "ListBooksRequest", "ListBooksResponse",
                         "CreateBookRequest")}
    return Messages("new", classes)


NEW_MSGS = _new_messages()
assert FIELD in NEW_MSGS.Book.DESCRIPTOR.fields_by_name, "the new proto's Book has no " + FIELD
assert NEW_MSGS.Book.DESCRIPTOR.fields_by_name[FIELD].number == NUMBER
assert FIELD not in OLD_MSGS.Book.DESCRIPTOR.fields_by_name, "proto/ already has " + FIELD
assert NUMBER not in OLD_MSGS.Book.DESCRIPTOR.fields_by_number


class Binary:
    def __init__(self, label, server, cli, msgs):
        self.label, self.server, self.cli, self.msgs = label, server, cli, msgs


OLD = Binary("old", OLD_SERVER, OLD_CLI, OLD_MSGS)
NEW = Binary("new", NEW_SERVER, NEW_CLI, NEW_MSGS)


# ---------------------------------------------------------------------------------------------
# The protobuf wire format, to check bytes without a decoder in the way.

def _varint(data, i):
    x, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        x |= (b & 0x7F) << shift
        if not b & 0x80:
            return x, i
        shift += 7


def enc_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def enc_field(number, payload):
    """A length-delimited field."""
    return enc_varint(number << 3 | 2) + enc_varint(len(payload)) + payload


def wire_fields(data):
    """[(number, wire type, value)] of a message's bytes, in order."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        wt = key & 7
        if wt == 0:
            v, i = _varint(data, i)
        elif wt == 2:
            n, i = _varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            v, i = data[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wt)
        out.append((key >> 3, wt, v))
    return out


def values_of(data, number):
    return [v for n, _, v in wire_fields(data) if n == number]


def unknown_numbers(msg):
    """Field numbers the message keeps as unknown fields (parsed but not in its descriptor)."""
    return [f.field_number for f in msg.UnknownFields()]


# ---------------------------------------------------------------------------------------------
# Calls, with one binary's messages, keeping the bytes of every response.

class Reply:
    def __init__(self, msg, raw):
        self.msg, self.raw = msg, raw

    def __repr__(self):
        return "Reply(%r, raw=%r)" % (self.msg, self.raw)


def _serialize(x):
    return x if isinstance(x, bytes) else x.SerializeToString()


class Api:
    def __init__(self, channel, msgs):
        self.m = msgs
        self._call = {n: channel.unary_unary("/books.v1.BooksService/" + n,
                                             request_serializer=_serialize,
                                             response_deserializer=harness.identity)
                      for n in ("GetBook", "ListBooks", "CreateBook")}

    def create(self, book, book_id="", request_id="", timeout=30):
        raw = self._call["CreateBook"](self.m.CreateBookRequest(
            book=book, book_id=book_id, request_id=request_id), timeout=timeout)
        return Reply(self.m.Book.FromString(raw), raw)

    def create_raw(self, data, timeout=30):
        raw = self._call["CreateBook"](data, timeout=timeout)
        return Reply(self.m.Book.FromString(raw), raw)

    def get(self, name, timeout=30):
        raw = self._call["GetBook"](self.m.GetBookRequest(name=name), timeout=timeout)
        return Reply(self.m.Book.FromString(raw), raw)

    def list_all(self, page_size=1, timeout=30):
        """Every book, one page of page_size at a time (page tokens included), as Replies."""
        out, token = [], ""
        for _ in range(10000):
            raw = self._call["ListBooks"](self.m.ListBooksRequest(page_size=page_size,
                                                                  page_token=token),
                                          timeout=timeout)
            out.extend(Reply(self.m.Book.FromString(b), b) for b in values_of(raw, 1))
            self.m.ListBooksResponse.FromString(raw)  # and it decodes as a whole
            tokens = values_of(raw, 2)
            token = tokens[-1].decode() if tokens else ""
            if not token:
                return out
        raise AssertionError("ListBooks never ended")


def book(msgs=None, title="Dune", isbn=None):
    """A Book of `msgs` (the new proto's by default); `isbn` only with the new proto."""
    msgs = msgs or NEW_MSGS
    b = msgs.Book(display_name=title, authors=["Frank Herbert", "Brian Herbert"],
                  publisher="Chilton Books \u00e9ditions")
    if isbn is not None:
        setattr(b, FIELD, isbn)
    return b


def without_field(msg):
    """The new proto's Book `msg` with the field cleared."""
    c = NEW_MSGS.Book()
    c.CopyFrom(msg)
    c.ClearField(FIELD)
    return c


def known(msg):
    """What a Book says in the fields both protos have."""
    return (msg.name, msg.display_name, list(msg.authors), msg.publisher)


def book_of_size(size, book_id_hint=""):
    """A new-proto Book whose encoding without its name (what CreateBook bounds by
    SVC_MAX_BOOK_BYTES) takes exactly `size` bytes, most of them its isbn (multi-byte UTF-8)."""
    base = len(book().SerializeToString())
    for n in range(size - base - 6, size - base + 1):
        isbn = "\u00e9" * (n // 2) + "0" * (n % 2)
        b = book(isbn=isbn)
        if len(b.SerializeToString()) == size:
            return b
    raise AssertionError("no isbn gives a Book of %d bytes" % size)


def create_request_with_isbn_bytes(isbn_bytes, book_id):
    """CreateBookRequest bytes whose Book carries `isbn_bytes` in the new field, as they are
    (Python's protobuf refuses to encode a str field that is not UTF-8)."""
    body = book(OLD_MSGS).SerializeToString() + enc_field(NUMBER, isbn_bytes)
    return enc_field(1, body) + enc_field(2, book_id.encode())


def rid():
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------
# Servers of either binary, and the CLI.

class Server(harness.ServerProcess):
    """harness.ServerProcess running `binary`'s books-server."""

    def __init__(self, binary, env, label):
        super().__init__(env=env, label="%s %s" % (binary.label, label))
        self.binary = binary

    @property
    def argv(self):
        argv = harness.SERVER_WRAPPER + [self.binary.server]
        if self.port_arg is not None:
            argv += ["--port", str(self.port_arg)]
        return argv + self.args

    def api(self, msgs=None):
        return Api(self.channel(), msgs or self.binary.msgs)


def cli_get_json(binary, port, name):
    """`books get NAME --json` of `binary`'s CLI: (the parsed object, stdout)."""
    env = {k: v for k, v in os.environ.items() if k != "PORT" and not k.startswith("BOOKS_")}
    argv = [binary.cli, "get", name, "--json", "--addr", "127.0.0.1:%d" % port]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, timeout=CLI_TIMEOUT_S)
    out, err = res.stdout.decode("utf-8"), res.stderr.decode("utf-8", errors="replace")
    for marker in harness.SANITIZER_MARKERS:
        assert marker not in err, "sanitizer report from %s: %s" % (argv, err)
    assert res.returncode == 0, "%s: exit %d, stdout %r, stderr %r" % (argv, res.returncode,
                                                                      out, err)
    return json.loads(out), out


# ---------------------------------------------------------------------------------------------
# The stores' services: a PostgreSQL cluster of this module's own and a Firestore emulator.

CLUSTER = None
EMULATOR_HOST = None
_OWN_EMULATOR = None
_counter = [0]
OBSERVED = []   # what each scenario showed, printed at the end


def observe(store, what):
    OBSERVED.append("%-11s %s" % (store + ":", what))


def setUpModule():
    global CLUSTER, EMULATOR_HOST, _OWN_EMULATOR
    try:
        import pgcluster
    except IndexError:  # its PG_BIN: sorted(glob(/usr/lib/postgresql/*/bin))[-1]
        raise RuntimeError("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/"
                           "*/bin): apt-get install postgresql-15, or ./scripts/deps.sh test; "
                           "this test runs the postgresql: store and skips nothing")
    CLUSTER = pgcluster.PgCluster.start()
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host:
        try:
            with urllib.request.urlopen("http://%s/" % host, timeout=10) as r:
                ok = r.status == 200
        except OSError as e:
            ok, why = False, e
        if not ok:
            raise RuntimeError("FIRESTORE_EMULATOR_HOST=%s does not answer (%s): start the "
                               "emulator, or unset it to have this test start its own"
                               % (host, locals().get("why", "not 200")))
        EMULATOR_HOST = host
    else:
        if not shutil.which(fsemulator.GCLOUD):
            raise RuntimeError("no Firestore emulator: set FIRESTORE_EMULATOR_HOST (scripts/"
                               "test.sh starts one), or install gcloud and its firestore "
                               "emulator (./scripts/deps.sh test); this test runs the "
                               "firestore: store and skips nothing")
        _OWN_EMULATOR = fsemulator.Emulator.start()
        EMULATOR_HOST = _OWN_EMULATOR.host


def tearDownModule():
    try:
        if OBSERVED:
            sys.stderr.write("\n[evolution] what the scenarios showed:\n  " +
                             "\n  ".join(OBSERVED) + "\n")
    finally:
        if _OWN_EMULATOR:
            _OWN_EMULATOR.stop()
        if CLUSTER:
            CLUSTER.stop()


class Store:
    """One data set of one kind, fresh for each test."""

    def __init__(self, kind, uri, durable, env=None):
        self.kind, self.uri, self.durable, self.env = kind, uri, durable, dict(env or {})

    def server_env(self):
        return dict(self.env, BOOKS_STORE=self.uri)


def new_store(testcase, kind):
    _counter[0] += 1
    if kind == "memory":
        return Store(kind, "memory:", durable=False)
    if kind == "sqlite":
        d = tempfile.mkdtemp(prefix="books-evo-")
        testcase.addCleanup(shutil.rmtree, d, True)
        return Store(kind, "sqlite:%s/books.db" % d, durable=True)
    if kind == "postgresql":
        return Store(kind, CLUSTER.fresh_database("evo"), durable=True)
    if kind == "firestore":
        return Store(kind, "firestore://%s?collection=evo_%d_%d" % (FS_PROJECT, os.getpid(),
                                                                    _counter[0]),
                     durable=True, env={"FIRESTORE_EMULATOR_HOST": EMULATOR_HOST})
    raise ValueError(kind)


def stored(store, name):
    """What the store itself holds for book `name`, read beside books-server: the encoded Book
    without its name (sqlite:, with no server running: it holds the file's lock; postgresql:),
    or the document's fields as REST JSON (firestore:)."""
    if store.kind == "sqlite":
        path = store.uri[len("sqlite:"):]
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
        try:
            row = db.execute("SELECT book FROM books WHERE name = ?", (name,)).fetchone()
        finally:
            db.close()
        return bytes(row[0])
    if store.kind == "postgresql":
        db = store.uri.rsplit("/", 1)[1].split("?")[0]
        return bytes.fromhex(CLUSTER.psql("SELECT encode(book, 'hex') FROM books WHERE name = "
                                          "'%s'" % name, db=db))
    if store.kind == "firestore":
        collection = store.uri.split("collection=", 1)[1]
        doc = fsdocs.get_document(EMULATOR_HOST, FS_PROJECT, collection, name.split("/", 1)[1])
        return doc["fields"]
    raise ValueError(store.kind)


def body_of(reply):
    """A Book answer's bytes after its name field: the body a store keeps (store.h)."""
    return reply.raw[len(enc_field(1, reply.msg.name.encode())):]


class EvolutionCase(harness.WireTestCase):
    kind = None

    def setUp(self):
        super().setUp()
        self.store = new_store(self, self.kind)

    def serve(self, binary, label="server"):
        s = Server(binary, self.store.server_env(), label)
        self.addCleanup(s.cleanup)
        self.addCleanup(self._finish_server, s)
        s.start()
        s.wait_listening()
        s.wait_serving()
        return s

    def assertReads(self, api, want):
        """GetBook of each wanted book and ListBooks of all of them give exactly `want`
        (new-proto Replies or messages, by name), message for message and byte for byte."""
        want = {w.name: w for w in want}
        for name, w in want.items():
            got = api.get(name)
            self.assertEqual(got.msg, w, "GetBook(%s)" % name)
            self.assertEqual(got.raw, w.SerializeToString(), "GetBook(%s) bytes" % name)
        listed = api.list_all()
        self.assertEqual([r.msg.name for r in listed], sorted(want), "ListBooks' names")
        for r in listed:
            self.assertEqual(r.msg, want[r.msg.name], "ListBooks' %s" % r.msg.name)
            self.assertEqual(r.raw, want[r.msg.name].SerializeToString())


# ---------------------------------------------------------------------------------------------
# The new binary alone, in every store.

class NewFieldEverywhere:
    """The new field through the new binary, in self.kind's store."""

    def test_isbn_round_trip(self):
        srv = self.serve(NEW)
        api = srv.api()
        r = rid()
        sent = book(isbn=ISBN)
        made = api.create(sent, "dune", r)
        self.assertEqual(made.msg.name, "books/dune")
        self.assertEqual(getattr(made.msg, FIELD), ISBN)
        self.assertEqual(known(made.msg)[1:], known(sent)[1:])
        self.assertEqual(values_of(made.raw, NUMBER), [ISBN.encode()],
                         "the answer carries the field as field %d" % NUMBER)
        # The biggest Book CreateBook takes, its size all isbn: stored and read back whole.
        big_sent = book_of_size(SVC_MAX_BOOK_BYTES)
        big = api.create(big_sent, "big-one")
        self.assertEqual(getattr(big.msg, FIELD), getattr(big_sent, FIELD))
        self.assertReads(api, [made.msg, big.msg])
        if self.store.durable:
            srv.stop_and_check()
            # What the store holds, read beside the server: the field is in it.
            if self.kind == "firestore":
                fields = stored(self.store, "books/dune")
                self.assertEqual(fields.get(FIELD), {"stringValue": ISBN}, fields)
                self.assertEqual(stored(self.store, "books/big-one").get(FIELD),
                                 {"stringValue": getattr(big_sent, FIELD)})
                held = "its document has the field %r: {\"stringValue\": %r}" % (FIELD, ISBN)
            else:
                self.assertEqual(stored(self.store, "books/dune"), body_of(made))
                self.assertEqual(stored(self.store, "books/big-one"), body_of(big))
                held = "its row's book column is the answer's bytes after the name, isbn " \
                    "as field %d" % NUMBER
            srv = self.serve(NEW, "restarted")
            api = srv.api()
            self.assertReads(api, [made.msg, big.msg])
            observe(self.kind, "new binary: isbn created, read by GetBook and ListBooks, "
                    "before and after a restart; a %d-byte Book too; %s"
                    % (SVC_MAX_BOOK_BYTES, held))
        else:
            observe(self.kind, "new binary: isbn created, read by GetBook and ListBooks (no "
                    "restart: memory: keeps nothing across one, by design)")
        # AIP-155: the same request again is answered with the first book.
        self.assertEqual(api.create(book(isbn=ISBN), "dune", r).msg, made.msg)
        # The CLI prints every field its proto has: "isbn" too.
        obj, out = cli_get_json(NEW, srv.port, "books/dune")
        self.assertEqual(obj, {"name": "books/dune", "displayName": "Dune",
                               "authors": ["Frank Herbert", "Brian Herbert"],
                               "publisher": "Chilton Books \u00e9ditions", FIELD: ISBN}, out)
        self.assertIn('"%s":"%s"' % (FIELD, ISBN), out)
        observe(self.kind, "new binary: the retry with the same isbn -> the first book; "
                "`books get --json` prints %s" % out.strip())
        # isbn is part of what "the same request" means: another isbn, or none, under that id
        # is refused (none last: it is the create without the field).
        for other in (OTHER_ISBN, ISBN + " ", None):
            self.expect_error(lambda: api.create(book(isbn=other), "dune", r),
                              grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                              metadata={"request_id": r})
        self.assertReads(api, [made.msg, big.msg])
        observe(self.kind, "new binary: the same request_id with another isbn, or none -> "
                "FAILED_PRECONDITION REQUEST_ID_REUSED; nothing more stored")

    def test_book_without_isbn(self):
        """The field is OPTIONAL: a create that leaves it out is a book with isbn empty."""
        srv = self.serve(NEW)
        api = srv.api()
        r = rid()
        made = api.create(book(title="No ISBN"), "no-isbn", r)
        self.assertEqual(getattr(made.msg, FIELD), "")
        self.assertEqual(values_of(made.raw, NUMBER), [])
        self.assertReads(api, [made.msg])
        if self.store.durable:
            srv.stop_and_check()
            if self.kind == "firestore":  # implicit presence: written at its default
                self.assertEqual(stored(self.store, "books/no-isbn").get(FIELD),
                                 {"stringValue": ""})
            else:
                self.assertEqual(stored(self.store, "books/no-isbn"), body_of(made))
            srv = self.serve(NEW, "restarted")
            api = srv.api()
            self.assertReads(api, [made.msg])
        self.assertEqual(api.create(book(title="No ISBN"), "no-isbn", r).raw, made.raw)
        self.expect_error(lambda: api.create(book(title="No ISBN", isbn=ISBN), "no-isbn", r),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                          metadata={"request_id": r})
        obj, out = cli_get_json(NEW, srv.port, "books/no-isbn")
        self.assertEqual(obj.get(FIELD), "", out)
        observe(self.kind, "new binary, a book created without isbn: isbn \"\" (GetBook, "
                "ListBooks%s), retried -> the first book, retried with an isbn -> "
                "REQUEST_ID_REUSED" % (", after a restart" if self.store.durable else ""))

    def test_isbn_meets_the_codecs_generic_checks(self):
        srv = self.serve(NEW)
        api = srv.api()
        for bad, what in ((b"978\xff0", "a byte that is never UTF-8"),
                          (b"978\xc3", "a UTF-8 sequence cut short"),
                          (b"\xed\xa0\x80", "a UTF-16 surrogate"),
                          (b"978\x000", "a NUL")):
            with self.subTest(isbn=what):
                self.expect_error(
                    lambda: api.create_raw(create_request_with_isbn_bytes(bad, "bad-isbn")),
                    grpc.StatusCode.INVALID_ARGUMENT, reason="FIELD_VIOLATION",
                    fields=["book.%s" % FIELD])
        # SVC_MAX_BOOK_BYTES bounds every field at once, the new one included.
        d = self.expect_error(lambda: api.create(book_of_size(SVC_MAX_BOOK_BYTES + 1), "too-big"),
                              grpc.StatusCode.INVALID_ARGUMENT, reason="FIELD_VIOLATION",
                              fields=["book"])
        self.assertIn(str(SVC_MAX_BOOK_BYTES), d.message)
        # So does the codec's cap on field occurrences in one message.
        body = book(OLD_MSGS).SerializeToString() + \
            enc_field(NUMBER, b"9") * CODEC_MAX_FIELDS_PER_MESSAGE
        self.expect_error(lambda: api.create_raw(enc_field(1, body)),
                          grpc.StatusCode.INVALID_ARGUMENT, reason="MALFORMED_REQUEST")
        self.assertEqual(api.list_all(), [], "a refused create stored something")
        observe(self.kind, "new binary: isbn not UTF-8 / with a NUL -> INVALID_ARGUMENT on "
                "book.%s; a Book of %d+1 bytes -> INVALID_ARGUMENT on book; %d+ field "
                "occurrences -> INVALID_ARGUMENT MALFORMED_REQUEST" %
                (FIELD, SVC_MAX_BOOK_BYTES, CODEC_MAX_FIELDS_PER_MESSAGE))


class MemoryTest(NewFieldEverywhere, EvolutionCase):
    kind = "memory"

    def test_old_binary_given_the_field(self):
        """A memory: store belongs to one process, so two binaries never share one: what the
        old binary does with the field is only what it does with a client that sends it. Its
        codec drops fields its proto lacks before decoding (src/rpc/codec.c, copy_known), so
        the book is stored and answered without isbn, and its fingerprint is that of the request
        without isbn."""
        srv = self.serve(OLD)
        api = srv.api(NEW_MSGS)
        r = rid()
        made = api.create(book(isbn=ISBN), "dune", r)
        self.assertEqual(made.msg, NEW_MSGS.Book(
            name="books/dune", display_name="Dune", authors=["Frank Herbert", "Brian Herbert"],
            publisher="Chilton Books \u00e9ditions"))
        self.assertEqual(values_of(made.raw, NUMBER), [])
        self.assertEqual(api.get("books/dune").raw, made.raw)
        # The same request again, or the request without isbn: both are, to this binary, the
        # request it saw; the first book.
        self.assertEqual(api.create(book(isbn=ISBN), "dune", r).raw, made.raw)
        self.assertEqual(api.create(book(isbn=OTHER_ISBN), "dune", r).raw, made.raw)
        self.assertEqual(api.create(book(), "dune", r).raw, made.raw)
        # Nor does it check a field it does not know: an isbn that is not UTF-8 is dropped too.
        odd = api.create_raw(create_request_with_isbn_bytes(b"\xff", "odd"))
        self.assertEqual(values_of(odd.raw, NUMBER), [])
        obj, _ = cli_get_json(OLD, srv.port, "books/dune")
        self.assertNotIn(FIELD, obj)
        observe(self.kind, "old binary given isbn by a new client: drops it (codec strips "
                "unknown request fields): stored and answered without it, not checked (a "
                "non-UTF-8 isbn is accepted and dropped), fingerprinted without it (a retry "
                "with any isbn or none -> the first book)")


class SqliteTest(NewFieldEverywhere, EvolutionCase):
    kind = "sqlite"


class PostgresTest(NewFieldEverywhere, EvolutionCase):
    kind = "postgresql"


class FirestoreTest(NewFieldEverywhere, EvolutionCase):
    kind = "firestore"


# ---------------------------------------------------------------------------------------------
# Both binaries on one data set.

class MixedBinaries:
    """The old and the new binary on self.kind's data set, a fresh one for each test.
    concurrent: both serve it at once (postgresql:, firestore:); else one at a time, so that each
    switch is a restart on the other binary's data (sqlite:, whose file one process holds).
    passes_through: the store keeps a Book as its encoded bytes, so the old binary answers the
    new field as an unknown one (sqlite:, postgresql:); else it answers the fields its own
    descriptor maps from the document (firestore:)."""

    concurrent = True
    passes_through = True

    def setUp(self):
        super().setUp()
        self._servers = {}
        self._current = None
        self.starts = 0

    def on(self, binary):
        """A running server of `binary` on the shared data set."""
        if self.concurrent:
            if binary.label not in self._servers:
                self._servers[binary.label] = self.serve(binary, "shared")
                self.starts += 1
            return self._servers[binary.label]
        if self._current is not None and self._current.binary is binary:
            return self._current
        if self._current is not None:
            self._current.stop_and_check()
        self.starts += 1
        self._current = self.serve(binary, "start %d" % self.starts)
        return self._current

    def test_old_binary_reads_an_isbn_book(self):
        k = self.kind
        r = rid()
        a = self.on(NEW).api().create(book(title="A", isbn=ISBN), "evo-a", r)
        self.assertEqual(getattr(a.msg, FIELD), ISBN)
        srv = self.on(OLD)
        old = srv.api()
        got = old.get("books/evo-a")
        self.assertEqual(known(got.msg), known(a.msg))
        if self.passes_through:
            self.assertEqual(got.raw, a.raw, "the stored bytes, as the new binary made them")
            self.assertEqual(unknown_numbers(got.msg), [NUMBER])
            self.assertEqual(getattr(NEW_MSGS.Book.FromString(got.raw), FIELD), ISBN)
            observe(k, "old binary, GetBook/ListBooks of an isbn book: the book, byte for "
                    "byte what the new binary answers: isbn comes through as unknown field %d "
                    "(a new client decoding the answer sees isbn=%r)" % (NUMBER, ISBN))
        else:
            self.assertEqual(got.raw, without_field(a.msg).SerializeToString(),
                             "the fields the old descriptor maps, nothing else")
            self.assertEqual(unknown_numbers(got.msg), [])
            observe(k, "old binary, GetBook/ListBooks of an isbn book: the book without isbn "
                    "(the document fields its descriptor maps; the document's isbn is "
                    "skipped), no unknown fields")
        listed = old.list_all()
        self.assertEqual([r_.raw for r_ in listed], [got.raw])
        obj, out = cli_get_json(OLD, srv.port, "books/evo-a")
        self.assertEqual(obj, {"name": "books/evo-a", "displayName": "A",
                               "authors": ["Frank Herbert", "Brian Herbert"],
                               "publisher": "Chilton Books \u00e9ditions"}, out)
        # After the old binary served it (sqlite: restarted twice), the new one still has it all.
        new = self.on(NEW).api()
        self.assertReads(new, [a.msg])
        self.assertEqual(new.create(book(title="A", isbn=ISBN), "evo-a", r).raw, a.raw)
        observe(k, "old binary's `books get --json` of an isbn book: %s" % out.strip())

    def test_new_binary_reads_old_books(self):
        k = self.kind
        r = rid()
        srv = self.on(OLD)
        c = srv.api().create(book(OLD_MSGS, title="C"), "evo-c", r)
        if self.kind == "firestore":
            fields = stored(self.store, "books/evo-c")
            self.assertNotIn(FIELD, fields, "the old binary wrote the fields it knows")
            observe(k, "old binary's document: fields %s (no %s)" % (sorted(fields), FIELD))
        srv = self.on(NEW)
        new = srv.api()
        got = new.get("books/evo-c")
        self.assertEqual(getattr(got.msg, FIELD), "")
        self.assertEqual(got.raw, c.raw)
        self.assertReads(new, [got.msg])
        obj, out = cli_get_json(NEW, srv.port, "books/evo-c")
        self.assertEqual(obj, {"name": "books/evo-c", "displayName": "C",
                               "authors": ["Frank Herbert", "Brian Herbert"],
                               "publisher": "Chilton Books \u00e9ditions", FIELD: ""}, out)
        # A request without isbn, made on the old binary, retried on the new: the same book.
        self.assertEqual(new.create(book(title="C"), "evo-c", r).raw, c.raw)
        self.assertEqual([x.raw for x in self.on(OLD).api().list_all()], [c.raw])
        observe(k, "new binary, a book the old one wrote: isbn \"\" in GetBook and ListBooks "
                "(the same bytes), `books get --json` prints \"%s\":\"\"; a request_id "
                "request without isbn made on the old binary and retried on the new -> the same "
                "book" % FIELD)

    def test_request_without_isbn_retried_on_the_old_binary(self):
        k = self.kind
        r = rid()
        b = self.on(NEW).api().create(book(title="B"), "evo-b", r)
        self.assertEqual(values_of(b.raw, NUMBER), [], "an empty proto3 string is not encoded")
        old = self.on(OLD).api()
        self.assertEqual(old.create(book(OLD_MSGS, title="B"), "evo-b", r).raw, b.raw)
        self.assertEqual([x.raw for x in old.list_all()], [b.raw])
        observe(k, "a request_id request without isbn made on the new binary and retried on "
                "the old -> the same book")

    def test_isbn_through_the_old_binary(self):
        """What a rolling deploy does to a client that sends isbn to an old instance: the old
        codec drops fields its proto lacks before decoding (src/rpc/codec.c, copy_known), so
        the book is stored without isbn and the request fingerprinted without it."""
        k = self.kind
        ra, rd = rid(), rid()
        a = self.on(NEW).api().create(book(title="A", isbn=ISBN), "evo-a", ra)
        srv = self.on(OLD)
        d_sent = book(title="D", isbn=OTHER_ISBN)
        d = srv.api(NEW_MSGS).create(d_sent, "evo-d", rd)
        self.assertEqual(d.msg, NEW_MSGS.Book(
            name="books/evo-d", display_name="D", authors=list(d_sent.authors),
            publisher=d_sent.publisher), "the old binary drops the field it does not know")
        self.assertEqual(values_of(d.raw, NUMBER), [])
        # ra retried, isbn and all, on the old binary: not the request ra made, to that binary.
        self.expect_error(lambda: srv.api(NEW_MSGS).create(book(title="A", isbn=ISBN), "evo-a",
                                                           ra),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                          metadata={"request_id": ra})
        new = self.on(NEW).api()
        got = new.get("books/evo-d")
        self.assertEqual(got.raw, d.raw)
        self.assertEqual(getattr(got.msg, FIELD), "")
        # rd as the old binary saw it (without isbn) is the same request; as the client sent it
        # (with isbn) it is not.
        self.assertEqual(new.create(book(title="D"), "evo-d", rd).raw, d.raw)
        self.expect_error(lambda: new.create(d_sent, "evo-d", rd),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                          metadata={"request_id": rd})
        self.assertEqual(new.create(book(title="A", isbn=ISBN), "evo-a", ra).raw, a.raw)
        self.assertEqual(sorted(x.msg.name for x in new.list_all()),
                         ["books/evo-a", "books/evo-d"])
        observe(k, "a new client's isbn sent to the old binary: dropped (the book is stored "
                "and answered without it); a retry WITH isbn crossing to the other binary -> "
                "FAILED_PRECONDITION REQUEST_ID_REUSED both ways (new->old: the old codec "
                "drops isbn before fingerprinting; old->new: the stored fingerprint has no "
                "isbn); the same retry on the binary that made it -> the book")
        if not self.concurrent:
            observe(k, "one process at a time (the file's lock): %d starts in this test"
                    % self.starts)


class SqliteMixedTest(MixedBinaries, EvolutionCase):
    kind = "sqlite"
    concurrent = False


class PostgresMixedTest(MixedBinaries, EvolutionCase):
    kind = "postgresql"


class FirestoreMixedTest(MixedBinaries, EvolutionCase):
    kind = "firestore"
    passes_through = False


if __name__ == "__main__":
    unittest.main()
