"""Wire tests: stores written by books-server 363d47a (schema version 2) reach this version's
layout, tested against the databases that server itself wrote (tests/fixtures/v2: made by
make.sh with the real old binary; CI has none, so its SQL is replayed from the fixture). Each test
loads a dump into a new database, starts this binary on it and checks, against manifest.json:

  sqlite:      the migration's log line; every book reads back field for field (GetBook, and
               ListBooks at several page sizes); every page token 363d47a issued is accepted and
               continues with exactly the names after it; a retry of every request id it stored
               (same request_id, the exact request) returns the book that request made, server-
               assigned names included, and makes no row; the same id with another request is
               FAILED_PRECONDITION (REQUEST_ID_REUSED); new creates work; a restart keeps it all;
               the file is version 3 with sq.h's layout (each row's book the encoded Book, the old
               fingerprints kept). A damaged row fails the whole migration: the file stays
               version 2, untouched;
  postgresql:  the same reads, tokens and request ids on the EXPANDED schema (version 2, layout
               3, `book` and `request_fingerprint` added, the old columns kept); then 363d47a's own
               SQL (postgres_statements.json, word for word, run by psql as that server runs it):
               its INSERTs of a batch with a request id succeed and this server reads those books
               (book NULL: built from the old columns) and matches that request id; its GET and
               LIST read the books this server wrote (old columns filled); its requests SELECT
               finds this server's request ids with request_hash equal to 363d47a's fingerprint of
               the request (legacy.py); its lookup and purge work. contract=on is refused while a
               session like an old server's (application_name books-server, without this version's
               shared advisory lock) is connected, naming it, and leaves the schema as it was;
               without it, the contract makes version 3 (old columns gone, every book encoded):
               every book, the old-way ones included, reads back, every request id still matches,
               the old tokens still work, and 363d47a's statements fail. A server of this
               version that opened the database while it was expanded must keep serving when
               another one contracts it (or the contract must wait for it, as for an old server).

Times: a request id is kept for the retention (at most 31 days) after its created_at, and the
fixtures were made once. Each load moves the stored request ids' created_at forward by one offset
(their newest to now), as a database upgraded the day it was written would have them; the
migration itself is checked to keep each created_at as loaded.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import grpc

import harness
from harness import Book, CreateBookRequest, GetBookRequest, ListBooksRequest, content

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "support"))
import pgcluster  # noqa: E402
import reaper  # noqa: E402

FIXTURES = os.path.join(harness.SOURCE_DIR, "tests", "fixtures", "v2")
sys.path.insert(0, FIXTURES)
import legacy  # noqa: E402

with open(os.path.join(FIXTURES, "manifest.json"), encoding="utf-8") as _f:
    MANIFEST = json.load(_f)
with open(os.path.join(FIXTURES, "postgres_statements.json"), encoding="utf-8") as _f:
    OLD_SQL = json.load(_f)

APPLICATION_ID = 0x426F6F6B
PAGE_SIZES = (0, 1, 2, 3, 7, 1000)
CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = pgcluster.PgCluster.start()


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()


# ---- requests and books ------------------------------------------------------------------------

def request_pb(r):
    """The manifest's request, exactly as it was sent (request_id in its case, book.name too)."""
    b = r["book"]
    return CreateBookRequest(
        book_id=r["book_id"], request_id=r["request_id"] or "",
        book=Book(name=b.get("name", ""), display_name=b["display_name"], authors=b["authors"],
                  publisher=b["publisher"]))


def fields(b):
    """(display_name, authors, publisher) of a manifest book or request book."""
    return (b["display_name"], tuple(b["authors"]), b["publisher"])


def book_bytes(c):
    """The encoded Book without its name, as a store keeps it, for content c = fields()."""
    return Book(display_name=c[0], authors=list(c[1]), publisher=c[2]).SerializeToString()


def fixture_books(section):
    """name -> fields() of every book in a manifest section."""
    return {b["name"]: fields(b) for b in section["books"]}


def other_text(s):
    return ("Y" if s[0] == "X" else "X") + s[1:]


def rid():
    return str(uuid.uuid4())


# New creates after the upgrade: chosen ids and assigned ones, with and without request ids.
NEW_REQUESTS = [
    {"book_id": "new-chosen", "request_id": "1d2c3b4a-5f6e-4a7b-8c9d-0e1f2a3b4c5d",
     "book": {"display_name": "New \"after\" \\ {upgrade}, NULL\n\u00e9\U0001f680",
              "authors": ["a,b", "NULL", "\\\"", "{}", "\u6751\u4e0a"], "publisher": "P\r\n"}},
    {"book_id": "", "request_id": "2e3d4c5b-6a7f-4b8c-9d0e-1f2a3b4c5d6e",
     "book": {"display_name": "New, assigned", "authors": ["Auto %d" % i for i in range(100)],
              "publisher": "Auto"}},
    {"book_id": "new-plain", "request_id": None,
     "book": {"display_name": "New without a request id", "authors": ["Solo"],
              "publisher": "\u20ac" * 170}},
]


class MigrationChecks:
    """What every migrated store must answer, against a manifest section."""

    def check_reads(self, stub, books):
        """books: name -> fields(). Every GetBook, and every ListBooks walk, says exactly that."""
        for name, want in books.items():
            got = stub.GetBook(GetBookRequest(name=name), timeout=30)
            self.assertEqual((got.name, content(got)), (name, (want[0], want[1], want[2])), name)
        names = sorted(books, key=lambda n: n.encode())
        for size in PAGE_SIZES:
            got, pages = harness.list_all(stub, size)
            self.assertEqual([b.name for b in got], names, "page_size %d" % size)
            self.assertEqual({b.name: content(b) for b in got}, books, "page_size %d" % size)

    def check_tokens(self, stub, section, names):
        """Every token of the manifest: accepted, and continues with exactly the names after the
        one it was issued for (those recorded, while `names` are the fixture's)."""
        names = sorted(names, key=lambda n: n.encode())
        same = set(names) == {b["name"] for b in section["books"]}
        self.assertTrue(section["tokens"])
        for t in section["tokens"]:
            resp = stub.ListBooks(ListBooksRequest(page_size=t["page_size"],
                                                   page_token=t["token"]), timeout=30)
            after = [n for n in names if n.encode() > t["after"].encode()]
            want = after[:t["page_size"]]
            self.assertEqual([b.name for b in resp.books], want, t)
            self.assertEqual(not resp.next_page_token, len(after) <= t["page_size"], t)
            if same:
                self.assertEqual(want, t["names"], "the manifest disagrees with itself")
                self.assertEqual(not resp.next_page_token, t["next_token_empty"], t)

    def check_retries(self, stub, section, books):
        """A retry of every request id 363d47a stored, the exact request: the book it made."""
        n = len(harness.list_all(stub)[0])
        self.assertEqual(len(section["request_ids"]), 10)
        for r in section["request_ids"]:
            got = stub.CreateBook(request_pb(r["request"]), timeout=30)
            self.assertEqual(got.name, r["name"], r["request_id"])
            self.assertEqual(content(got), books[r["name"]], r["request_id"])
            # Either case of the same UUID is the same request id.
            upper = request_pb(r["request"])
            upper.request_id = r["request_id"].upper()
            self.assertEqual(stub.CreateBook(upper, timeout=30).name, r["name"])
        self.assertEqual(len(harness.list_all(stub)[0]), n, "a retry made a book")

    def check_reuse(self, stub, section):
        """The same request ids with other requests: REQUEST_ID_REUSED, nothing made."""
        n = len(harness.list_all(stub)[0])
        for r in section["request_ids"]:
            other = request_pb(r["request"])
            other.book.display_name = other_text(other.book.display_name)
            self.expect_error(lambda: stub.CreateBook(other, timeout=30),
                              grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED",
                              metadata={"request_id": r["request_id"]})
        # The book_id is part of what a request is: the same book under another id is another.
        r = section["request_ids"][0]["request"]
        moved = request_pb(r)
        moved.book_id = "moved-elsewhere"
        self.expect_error(lambda: stub.CreateBook(moved, timeout=30),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED")
        self.assertEqual(len(harness.list_all(stub)[0]), n, "a refused request made a book")

    def create_new(self, stub):
        """NEW_REQUESTS through this server, each retried; returns [(request, Book)]."""
        made = []
        for r in NEW_REQUESTS:
            got = stub.CreateBook(request_pb(r), timeout=30)
            self.assertEqual(content(got), fields(r["book"]))
            if r["book_id"]:
                self.assertEqual(got.name, "books/" + r["book_id"])
            if r["request_id"]:
                self.assertEqual(stub.CreateBook(request_pb(r), timeout=30), got)
            made.append((r, got))
        return made

    def check_new_retries(self, stub, made):
        for r, b in made:
            if r["request_id"]:
                self.assertEqual(stub.CreateBook(request_pb(r), timeout=30), b)

    def check_everything(self, srv, section, extra=None, label=""):
        """Reads, tokens, retries and reuses of a section (and books `extra`: name -> fields)."""
        stub = srv.stub()
        books = fixture_books(section)
        books.update(extra or {})
        with self.subTest("reads " + label):
            self.check_reads(stub, books)
        with self.subTest("tokens " + label):
            self.check_tokens(stub, section, books)
        with self.subTest("retries " + label):
            self.check_retries(stub, section, books)
        with self.subTest("reuse " + label):
            self.check_reuse(stub, section)
        return books


def log_messages(srv):
    return [l.get("message", "") for l in srv.log_lines(strict=False)]


# ---- sqlite: -----------------------------------------------------------------------------------

def load_sqlite(path):
    """sqlite.sql into a new file at path; the request ids' times moved forward (see the top).
    Returns the rows as loaded: name -> (request_id, request_hash, created_at)."""
    with open(os.path.join(FIXTURES, "sqlite.sql"), encoding="utf-8", newline="") as f:
        dump = f.read()
    db = sqlite3.connect(path)
    try:
        db.executescript(dump)
        db.execute("UPDATE books SET created_at = created_at + (CAST(strftime('%s', 'now') AS "
                   "INTEGER) - (SELECT max(created_at) FROM books)) WHERE request_id IS NOT NULL")
        db.commit()
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        return {r[0]: (r[1], r[2], r[3]) for r in db.execute(
            "SELECT name, request_id, request_hash, created_at FROM books")}
    finally:
        db.close()


class SqliteMigrationTest(MigrationChecks, harness.WireTestCase):
    S = MANIFEST["sqlite"]

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="books-migr-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "books.db")
        self.loaded = load_sqlite(self.path)

    def env(self):
        return {"BOOKS_STORE": "sqlite:" + self.path}

    def migrated_line(self):
        return 'sqlite store "%s": schema migrated from version 2 to 3' % self.path

    def test_migration_keeps_books_tokens_and_request_ids(self):
        db = sqlite3.connect(self.path)
        key = db.execute("SELECT value FROM meta WHERE key = 'dataset_key'").fetchone()[0]
        db.close()
        srv = self.start_server(env=self.env(), label="migrating")
        self.assertEqual(log_messages(srv).count(self.migrated_line()), 1, srv.output_tail())
        books = self.check_everything(srv, self.S, label="after the migration")
        made = self.create_new(srv.stub())
        for r, b in made:
            books[b.name] = content(b)
        self.check_reads(srv.stub(), books)
        srv.stop_and_check()

        self.check_layout(key, books, made)

        srv = self.start_server(env=self.env(), label="restarted")
        self.assertNotIn(self.migrated_line(), log_messages(srv))
        self.check_everything(srv, self.S, extra={b.name: content(b) for _, b in made},
                              label="after a restart")
        self.check_new_retries(srv.stub(), made)
        self.assertEqual(len(harness.list_all(srv.stub())[0]), len(books))
        srv.stop_and_check()
        db = sqlite3.connect(self.path)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 3)
        db.close()

    def check_layout(self, key, books, made):
        """Version 3, as sq.h describes it: tables, columns, indexes, and each row's contents."""
        db = sqlite3.connect(self.path)
        try:
            q = lambda sql: db.execute(sql).fetchall()  # noqa: E731
            self.assertEqual(q("PRAGMA user_version"), [(3,)])
            self.assertEqual(q("PRAGMA application_id"), [(APPLICATION_ID,)])
            self.assertEqual(q("PRAGMA encoding"), [("UTF-8",)])
            self.assertEqual(q("PRAGMA journal_mode"), [("wal",)])
            self.assertEqual(q("PRAGMA integrity_check"), [("ok",)])
            self.assertEqual(sorted(q("SELECT name FROM sqlite_schema WHERE type = 'table'")),
                             [("books",), ("meta",)])
            # (name, type, not null, pk); both tables STRICT and WITHOUT ROWID.
            self.assertEqual([(c[1], c[2], c[3], c[5]) for c in q("PRAGMA table_xinfo(books)")],
                             [("name", "TEXT", 1, 1), ("book", "BLOB", 1, 0),
                              ("request_id", "TEXT", 0, 0), ("request_fingerprint", "BLOB", 0, 0),
                              ("request_hash", "BLOB", 0, 0), ("created_at", "INTEGER", 0, 0)])
            self.assertEqual([(c[1], c[2], c[3], c[5]) for c in q("PRAGMA table_xinfo(meta)")],
                             [("key", "TEXT", 1, 1), ("value", "BLOB", 1, 0)])
            tables = {r[1]: r for r in q("PRAGMA table_list") if r[0] == "main"}
            for t in ("books", "meta"):
                self.assertEqual((tables[t][4], tables[t][5]), (1, 1), "%s: WITHOUT ROWID, STRICT"
                                 % t)
            idx = {r[1]: (r[2], r[3], r[4]) for r in q("PRAGMA index_list(books)")}
            self.assertEqual(idx.get("books_request_id"), (1, "c", 1))   # unique, partial
            self.assertEqual(idx.get("books_request_age"), (0, "c", 1))  # partial
            self.assertEqual(q("PRAGMA index_info(books_request_id)")[0][2], "request_id")
            self.assertEqual(q("PRAGMA index_info(books_request_age)")[0][2], "created_at")
            for name in ("books_request_id", "books_request_age"):
                sql = q("SELECT sql FROM sqlite_schema WHERE name = '%s'" % name)[0][0]
                self.assertIn("WHERE request_id IS NOT NULL", sql)
            self.assertEqual(q("SELECT key, value FROM meta"), [("dataset_key", key)])
            rows = {r[0]: r[1:] for r in q("SELECT name, book, request_id, request_fingerprint, "
                                           "request_hash, created_at FROM books")}
            self.assertEqual(set(rows), set(books))
            for name, (book, request_id, fingerprint, request_hash, created_at) in rows.items():
                self.assertEqual(bytes(book), book_bytes(books[name]), name)
                self.assertEqual(Book.FromString(bytes(book)).name, "")
                if name in self.loaded:  # a row of 363d47a: its request columns as they were
                    self.assertEqual((request_id, request_hash, created_at), self.loaded[name],
                                     name)
                    self.assertIsNone(fingerprint, name)
            stored = {r["name"]: r for r in self.S["request_ids"]}
            for name, r in stored.items():
                self.assertEqual(rows[name][1], r["request_id"])
                self.assertEqual(bytes(rows[name][3]).hex(), r["request_hash"])
                self.assertEqual(legacy.legacy_fingerprint(r["request"]).hex(), r["request_hash"])
            for r, b in made:
                request_id, fingerprint = rows[b.name][1], rows[b.name][2]
                if r["request_id"]:
                    self.assertEqual(request_id, r["request_id"])
                    self.assertEqual(len(fingerprint), 32)
                else:
                    self.assertIsNone(request_id)
        finally:
            db.close()

    def test_a_damaged_row_fails_the_whole_migration(self):
        db = sqlite3.connect(self.path)
        # An authors blob without its last NUL: no row 363d47a writes, so the migration refuses.
        db.execute("UPDATE books SET authors = X'41' WHERE name = 'books/z'")
        db.commit()
        before = db.execute("SELECT * FROM books ORDER BY name").fetchall()
        schema = db.execute("SELECT * FROM sqlite_schema ORDER BY name").fetchall()
        db.close()
        srv = self.start_server(env=self.env(), wait=False, label="refusing")
        srv.expect_clean_exit = False
        self.assertEqual(srv.wait(60), 1, srv.output_tail())
        err = srv.stderr_text()
        self.assertIn("cannot migrate the schema (from version 2 to 3)", err)
        self.assertIn("schema version 2 is damaged", err)
        self.assertIn("left as it was", err)
        db = sqlite3.connect(self.path)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 2)
        self.assertEqual(db.execute("SELECT * FROM books ORDER BY name").fetchall(), before)
        self.assertEqual(db.execute("SELECT * FROM sqlite_schema ORDER BY name").fetchall(),
                         schema)
        # Mended, it migrates.
        db.execute("UPDATE books SET authors = X'5A00' WHERE name = 'books/z'")
        db.commit()
        db.close()
        srv = self.start_server(env=self.env(), label="mended")
        self.assertIn(self.migrated_line(), log_messages(srv))
        self.check_reads(srv.stub(), fixture_books(self.S))


# ---- postgresql: -------------------------------------------------------------------------------

def _as_postgres(cmd):
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
    return cmd


def psql_script(db, script, check=True):
    """Runs a psql script (stdin) on db as postgres: (returncode, stdout, stderr)."""
    cmd = _as_postgres([os.path.join(pgcluster.PG_BIN, "psql"), "-h", CLUSTER.sock, "-p",
                        str(CLUSTER.port), "-U", "postgres", "-d", db, "-X", "-q", "-A", "-t",
                        "-v", "ON_ERROR_STOP=1", "-f", "-"])
    r = subprocess.run(cmd, input=script, capture_output=True, encoding="utf-8",
                       timeout=pgcluster.COMMAND_TIMEOUT_S, cwd="/tmp",
                       env=dict(os.environ, PGCLIENTENCODING="UTF8"))
    if check and r.returncode != 0:
        raise AssertionError("psql failed (%d): %s" % (r.returncode, r.stderr[-3000:]))
    return r.returncode, r.stdout, r.stderr


def sql_literal(v):
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def query_json(db, sql):
    """The rows of `sql` as a list of JSON objects."""
    out = psql_script(db, "SELECT coalesce(json_agg(t), '[]') FROM (%s) t;" % sql)[1]
    return json.loads(out)


def unhex(v):
    """A bytea as to_json shows it ("\\x..."), or None."""
    return None if v is None else bytes.fromhex(v[2:])


def load_postgres(prefix):
    """postgres.sql into a new database; the request ids' times moved forward (see the top).
    Returns (uri, db)."""
    uri = CLUSTER.fresh_database(prefix)
    db = uri.rsplit("/", 1)[1]
    with open(os.path.join(FIXTURES, "postgres.sql"), encoding="utf-8", newline="") as f:
        psql_script(db, f.read())
    psql_script(db, "UPDATE books SET created_at = created_at + (now() - (SELECT max(created_at) "
                    "FROM books)) WHERE request_id IS NOT NULL;")
    return uri, db


class OldServer:
    """363d47a's statements (postgres_statements.json, word for word) run on a database by psql as
    that server runs them: the reads and writes as prepared statements (PREPARE ... AS the exact
    text), executed with text parameters, each SELECT's rows collected as JSON (CREATE TEMP TABLE
    ... AS EXECUTE, which runs the prepared statement unchanged), an INSERT's RETURNING rows as
    psql prints them."""

    def __init__(self, db):
        self.db = db

    def prepare(self):
        return "".join("PREPARE old_%s AS %s;\n" % (name, sql)
                       for name, sql in OLD_SQL["statements"].items())

    def run(self, steps, check=True):
        """steps: [{"sql": text} | {"statement": name, "params": [...]}]. Returns (rc, results,
        stderr): results[i] is the rows of steps[i] (JSON objects for a SELECT, names for
        an INSERT, None for SQL)."""
        script = [self.prepare()]
        kinds = []
        for i, s in enumerate(steps):
            if "sql" in s:
                script.append(s["sql"] + ";\n")
                kinds.append(None)
                continue
            args = ", ".join(sql_literal(p) for p in s["params"])
            call = "EXECUTE old_%s(%s)" % (s["statement"], args)
            if s["statement"] in ("insert", "purge"):
                script.append("\\echo @@%d\n%s;\n" % (i, call))
                kinds.append("printed")
            else:
                script.append("CREATE TEMP TABLE out_%d AS %s;\n" % (i, call))
                kinds.append("table")
        for i, k in enumerate(kinds):
            if k == "table":
                script.append("\\echo @@%d\nSELECT coalesce(json_agg(t), '[]') FROM out_%d t;\n"
                              % (i, i))
        rc, out, err = psql_script(self.db, "".join(script), check=check)
        results = [None] * len(steps)
        cur, buf = None, []
        for line in out.split("\n") + ["@@end"]:
            if line.startswith("@@"):
                if cur is not None:
                    text = "\n".join(buf).strip()
                    results[cur] = (json.loads(text) if kinds[cur] == "table"
                                    else [x for x in text.split("\n") if x])
                cur = None if line == "@@end" else int(line[2:])
                buf = []
            else:
                buf.append(line)
        return rc, results, err

    def one(self, statement, *params):
        return self.run([{"statement": statement, "params": list(params)}])[1][0]


def old_row(r):
    """A row of 363d47a's GET or LIST (or requests) as (name, fields())."""
    return r["name"], (r["display_name"], tuple(r["authors"]), r["publisher"])


class PostgresCase(MigrationChecks, harness.WireTestCase):
    S = MANIFEST["postgresql"]

    def setUp(self):
        super().setUp()
        self.uri, self.db = load_postgres("migr")
        self.old = OldServer(self.db)
        self.key = psql_script(self.db, "SELECT encode(dataset_key, 'hex') FROM books_schema;")[1]

    def env(self, **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        return {"BOOKS_STORE": self.uri + ("?" + q if q else "")}

    def columns(self, table):
        return {r["column_name"]: r["is_nullable"] for r in query_json(
            self.db, "SELECT column_name, is_nullable FROM information_schema.columns "
                     "WHERE table_schema = 'public' AND table_name = '%s'" % table)}

    def schema_row(self):
        return query_json(self.db, "SELECT * FROM books_schema")

    def rows(self):
        """name -> the row's columns as JSON (bytea as "\\x...")."""
        return {r["name"]: r for r in query_json(self.db, "SELECT * FROM books")}

    def expanded_log(self):
        return ("PostgreSQL at %s: schema version 2 expanded for this version (books kept encoded "
                "beside the columns of version 2): servers of the previous version go on working "
                "on it; start one server with contract=on once none of them runs" % self.uri)

    def check_expanded(self):
        self.assertEqual(set(self.columns("books")),
                         {"name", "display_name", "publisher", "authors", "request_id",
                          "request_hash", "created_at", "book", "request_fingerprint"})
        self.assertEqual(self.schema_row(), [{"application": "books-server", "version": 2,
                                              "dataset_key": "\\x" + self.key.strip(),
                                              "layout": 3}])

    def replay_old_inserts(self):
        """363d47a's captured transactions (its INSERTs, one a batch of two with a request id, and
        its requests SELECT), replayed; checks what they return. Returns the books they made:
        name -> fields()."""
        steps = [s for s in OLD_SQL["replay"] if s.get("statement") not in
                 ("get", "list_first", "list_after")]
        rc, results, _ = self.old.run(steps)
        inserted = [n for s, res in zip(steps, results) if s.get("statement") == "insert"
                    for n in res]
        made = {x["book"]["name"]: fields(x["book"]) for x in OLD_SQL["replay_requests"]}
        self.assertEqual(sorted(inserted), sorted(made))
        with_id = [x for x in OLD_SQL["replay_requests"] if x["request"]["request_id"]]
        self.assertEqual(len(with_id), 1)
        x = with_id[0]
        fp = legacy.legacy_fingerprint(x["request"])
        # The fingerprint that server computed for the batch (the INSERT's last parameter) is
        # legacy.py's.
        insert = [s for s in steps if s.get("statement") == "insert" and s["params"][4] != "{NULL}"]
        self.assertIn(fp.hex(), insert[0]["params"][5])
        found = [res for s, res in zip(steps, results) if s.get("statement") == "requests"]
        self.assertEqual([(r["request_id"], unhex(r["request_hash"]), old_row(r))
                          for r in found[0]],
                         [(x["request"]["request_id"], fp, (x["book"]["name"],
                                                            fields(x["book"])))])
        return made


class PostgresExpandTest(PostgresCase):

    def test_expanded_keeps_books_tokens_and_request_ids(self):
        srv = self.start_server(env=self.env(), label="expanding")
        self.assertIn(self.expanded_log(), log_messages(srv))
        self.check_expanded()
        self.assertEqual(psql_script(self.db, "SELECT count(*) FROM books WHERE book IS NULL;")[1]
                         .strip(), str(len(self.S["books"])), "the expand rewrote rows")
        books = self.check_everything(srv, self.S, label="expanded")
        made = self.create_new(srv.stub())
        for r, b in made:
            books[b.name] = content(b)
        self.check_reads(srv.stub(), books)
        srv.stop_and_check()
        # The rows this server wrote carry both layouts and both fingerprints.
        rows = self.rows()
        for r, b in made:
            row = rows[b.name]
            self.assertEqual(unhex(row["book"]), book_bytes(content(b)))
            self.assertEqual((row["display_name"], tuple(row["authors"]), row["publisher"]),
                             content(b))
            if r["request_id"]:
                self.assertEqual(row["request_id"], r["request_id"])
                self.assertEqual(unhex(row["request_hash"]), legacy.legacy_fingerprint(
                    {"book_id": r["book_id"], "book": r["book"]}))
                self.assertEqual(len(unhex(row["request_fingerprint"])), 32)
        for r in self.S["request_ids"]:
            self.assertEqual(unhex(rows[r["name"]]["request_hash"]).hex(), r["request_hash"])
            self.assertIsNone(rows[r["name"]]["request_fingerprint"])
        srv = self.start_server(env=self.env(), label="restarted")
        self.assertNotIn(self.expanded_log(), log_messages(srv))
        self.check_expanded()
        self.check_everything(srv, self.S, extra={b.name: content(b) for _, b in made},
                              label="after a restart")
        self.check_new_retries(srv.stub(), made)


class PostgresOldServerTest(PostgresCase):
    """363d47a's server on the expanded schema, without its binary: its own SQL, replayed."""

    def test_old_statements_work_on_the_expanded_schema(self):
        srv = self.start_server(env=self.env(), label="new")
        self.check_expanded()
        stub = srv.stub()
        made = self.create_new(stub)
        books = fixture_books(self.S)
        books.update({b.name: content(b) for _, b in made})

        # Its start-up: the schema it finds is one it opens (version 2, its three columns).
        startup = [s for s in OLD_SQL["startup"] if s.startswith("SELECT application")]
        self.assertEqual(startup, ["SELECT application, version, encode(dataset_key, 'hex') "
                                   "FROM books_schema"])
        self.assertEqual(query_json(self.db, startup[0]),
                         [{"application": "books-server", "version": 2,
                           "encode": self.key.strip()}])

        # Its INSERTs: they succeed; this server reads those books and knows their request id.
        old_made = self.replay_old_inserts()
        rows = self.rows()
        for name in old_made:
            self.assertIsNone(rows[name]["book"], "363d47a writes no book")
        for name, want in old_made.items():
            got = stub.GetBook(GetBookRequest(name=name), timeout=30)
            self.assertEqual(content(got), want)
        books.update(old_made)
        self.check_reads(stub, books)
        x = [x for x in OLD_SQL["replay_requests"] if x["request"]["request_id"]][0]
        self.assertEqual(stub.CreateBook(request_pb(x["request"]), timeout=30).name,
                         x["book"]["name"])
        other = request_pb(x["request"])
        other.book.publisher = "another"
        self.expect_error(lambda: stub.CreateBook(other, timeout=30),
                          grpc.StatusCode.FAILED_PRECONDITION, reason="REQUEST_ID_REUSED")
        plain = [x for x in OLD_SQL["replay_requests"] if not x["request"]["request_id"]][0]
        self.expect_error(lambda: stub.CreateBook(request_pb(plain["request"]), timeout=30),
                          grpc.StatusCode.ALREADY_EXISTS, reason="BOOK_ALREADY_EXISTS")

        # Its reads as it sent them (the captured parameters), and of every book there is.
        reads = [s for s in OLD_SQL["replay"] if s.get("statement") in
                 ("get", "list_first", "list_after")]
        rc, results, _ = self.old.run(reads)
        names = sorted(books, key=lambda n: n.encode())
        for s, res in zip(reads, results):
            got = [old_row(r) for r in res]
            if s["statement"] == "get":
                self.assertEqual(got, [(s["params"][0], books[s["params"][0]])])
            else:
                after = s["params"][0] if s["statement"] == "list_after" else ""
                limit = int(s["params"][-2])
                want = [n for n in names if n.encode() > after.encode()][:limit]
                self.assertEqual(got, [(n, books[n]) for n in want])
        steps = [{"statement": "get", "params": [n]} for n in names]
        steps += [{"statement": "get", "params": ["books/missing"]}]
        steps += [{"statement": "list_first", "params": ["4", "4128768"]}]
        steps += [{"statement": "list_after", "params": [n, "4", "4128768"]} for n in names]
        rc, results, _ = self.old.run(steps)
        for s, res in zip(steps, results):
            got = [old_row(r) for r in res]
            if s["statement"] == "get":
                n = s["params"][0]
                self.assertEqual(got, [(n, books[n])] if n in books else [], n)
            else:
                after = s["params"][0] if s["statement"] == "list_after" else ""
                want = [n for n in names if n.encode() > after.encode()][:4]
                self.assertEqual(got, [(n, books[n]) for n in want], s)

        # Its requests SELECT finds this server's request ids, with its own fingerprint.
        ids = [(r, b) for r, b in made if r["request_id"]]
        found = self.old.one("requests", "{%s}" % ",".join(r["request_id"] for r, _ in ids))
        self.assertEqual(sorted((r["request_id"], unhex(r["request_hash"]), old_row(r))
                                for r in found),
                         sorted((r["request_id"], legacy.legacy_fingerprint(r),
                                 (b.name, content(b))) for r, b in ids))
        # And the fixture's (stored by 363d47a itself).
        found = self.old.one("requests", "{%s}" % ",".join(
            r["request_id"] for r in self.S["request_ids"]))
        self.assertEqual(sorted((r["request_id"], unhex(r["request_hash"]).hex(), r["name"])
                                for r in found),
                         sorted((r["request_id"], r["request_hash"], r["name"])
                                for r in self.S["request_ids"]))

        # Its lookup (after a lost connection): names and their request ids.
        probe = [b.name for _, b in made] + ["books/old-way-rid", "books/a", "books/missing"]
        got = self.old.one("lookup", "{%s}" % ",".join(probe))
        want = {b.name: r["request_id"] or "" for r, b in made}
        want.update({"books/old-way-rid": x["request"]["request_id"], "books/a": ""})
        self.assertEqual({r["name"]: r["coalesce"] for r in got}, want)

        # Its purge: an id older than the retention is forgotten, the others are kept.
        aged_r, aged = [(r, b) for r, b in made if r["request_id"] and r["book_id"]][0]
        psql_script(self.db, "UPDATE books SET created_at = now() - interval '2 days' "
                             "WHERE name = %s;" % sql_literal(aged.name))
        before = int(psql_script(self.db, "SELECT count(request_id) FROM books;")[1])
        self.old.run([{"statement": "purge", "params": ["86400"]}])
        self.assertEqual(int(psql_script(self.db, "SELECT count(request_id) FROM books;")[1]),
                         before - 1)
        row = self.rows()[aged.name]
        self.assertEqual((row["request_id"], row["request_hash"], row["created_at"]),
                         (None, None, None))
        self.assertEqual(stub.GetBook(GetBookRequest(name=aged.name), timeout=30), aged)
        # Forgotten: its retry is a new create of a name that is taken.
        self.expect_error(lambda: stub.CreateBook(request_pb(aged_r), timeout=30),
                          grpc.StatusCode.ALREADY_EXISTS, reason="BOOK_ALREADY_EXISTS")
        self.check_retries(stub, self.S, books)


class PostgresContractTest(PostgresCase):

    def pretend_old_server(self):
        """A session as a server of 363d47a has one: the same application_name as this server
        (libpq's fallback_application_name, "books-server"), over TCP, without the shared advisory
        lock of this version. Returns (process, its backend pid)."""
        marker = "old-server-%d-%d" % (os.getpid(), time.monotonic_ns())
        cmd = _as_postgres([os.path.join(pgcluster.PG_BIN, "psql"), "-h", "127.0.0.1", "-p",
                            str(CLUSTER.port), "-U", "postgres", "-d", self.db, "-X", "-q", "-c",
                            "SELECT pg_sleep(120) /* %s */" % marker])
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd="/tmp",
                             env=dict(os.environ, PGAPPNAME="books-server"))
        reaper.watch_process(p.pid, "a session pretending to be 363d47a's server")

        def close():
            psql_script(self.db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE query LIKE '%%%s%%' AND pid <> pg_backend_pid();" % marker)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(30)
            reaper.forget_process(p.pid)
        self.addCleanup(lambda: p.poll() is None and close())
        harness.wait_for(lambda: psql_script(self.db, (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'books-server' AND "
            "query LIKE '%%%s%%' AND pid <> pg_backend_pid();") % marker)[1].strip() == "1",
            timeout=30, what="the pretending session")
        return close

    def contracted_log(self, n):
        return ("PostgreSQL at %s: schema contracted to version 3 (%d books of the previous "
                "version encoded); servers of the previous version now refuse this database"
                % (self.uri, n))

    def check_contracted(self, books):
        self.assertEqual(self.columns("books"), {
            "name": "NO", "book": "NO", "request_id": "YES", "request_fingerprint": "YES",
            "request_hash": "YES", "created_at": "YES"})
        self.assertEqual(self.schema_row(), [{"application": "books-server", "version": 3,
                                              "dataset_key": "\\x" + self.key.strip()}])
        rows = self.rows()
        self.assertEqual(set(rows), set(books))
        for name, row in rows.items():
            self.assertEqual(unhex(row["book"]), book_bytes(books[name]), name)
        idx = psql_script(self.db, "SELECT indexname || ': ' || indexdef FROM pg_indexes WHERE "
                                   "tablename = 'books' ORDER BY 1;")[1].split("\n")
        self.assertIn("books_request_id: CREATE UNIQUE INDEX books_request_id ON public.books "
                      "USING btree (request_id)", idx)
        self.assertIn("books_request_age: CREATE INDEX books_request_age ON public.books USING "
                      "btree (created_at) WHERE (request_id IS NOT NULL)", idx)

    def test_contract_refused_while_an_old_server_is_connected_then_done(self):
        srv = self.start_server(env=self.env(), label="expanding")
        made = self.create_new(srv.stub())
        old_made = self.replay_old_inserts()
        srv.stop_and_check()
        books = fixture_books(self.S)
        books.update({b.name: content(b) for _, b in made})
        books.update(old_made)

        close = self.pretend_old_server()
        before = (self.columns("books"), self.schema_row(), self.rows())
        refused = self.start_server(env=self.env(contract="on"), wait=False, label="refused")
        refused.expect_clean_exit = False
        self.assertEqual(refused.wait(60), 1, refused.output_tail())
        err = refused.stderr_text()
        self.assertIn("contract=on, but 1 session of an older books-server (from 127.0.0.1) "
                      "still use the columns the contract drops", err)
        self.assertEqual((self.columns("books"), self.schema_row(), self.rows()), before,
                         "a refused contract changed the database")
        close()

        srv = self.start_server(env=self.env(contract="on"), label="contracting")
        self.assertIn(self.contracted_log(len(self.S["books"]) + len(old_made)),
                      log_messages(srv))
        self.check_contracted(books)
        self.check_everything(srv, self.S, extra={n: c for n, c in books.items()
                                                  if n not in fixture_books(self.S)},
                              label="contracted")
        stub = srv.stub()
        self.check_new_retries(stub, made)
        x = [x for x in OLD_SQL["replay_requests"] if x["request"]["request_id"]][0]
        self.assertEqual(stub.CreateBook(request_pb(x["request"]), timeout=30).name,
                         x["book"]["name"])
        got = stub.CreateBook(CreateBookRequest(book_id="after-contract", request_id=rid(),
                                                book=harness.make_book()), timeout=30)
        books[got.name] = content(got)
        srv.stop_and_check()

        # 363d47a refuses the database at start-up (its schema check: version 3 > 2), and its
        # statements no longer compile.
        startup = [s for s in OLD_SQL["startup"] if s.startswith("SELECT application")][0]
        self.assertEqual(query_json(self.db, startup)[0]["version"], 3)
        for name in ("get", "list_first", "list_after", "insert", "requests"):
            rc, _, err = psql_script(self.db, "PREPARE p AS %s;" % OLD_SQL["statements"][name],
                                     check=False)
            self.assertNotEqual(rc, 0, name)
            self.assertIn("does not exist", err, name)

        # A restart on version 3 (contract=on again is a no-op).
        srv = self.start_server(env=self.env(contract="on"), label="version 3")
        self.assertFalse([m for m in log_messages(srv) if "contracted" in m or "expanded" in m])
        self.check_reads(srv.stub(), books)
        self.check_retries(srv.stub(), self.S, books)

    def test_expand_and_contract_in_one_start(self):
        srv = self.start_server(env=self.env(contract="on"), label="contracting")
        messages = log_messages(srv)
        self.assertIn(self.expanded_log(), messages)
        self.assertIn(self.contracted_log(len(self.S["books"])), messages)
        self.check_contracted(fixture_books(self.S))
        self.check_everything(srv, self.S, label="contracted at once")

    def test_a_server_started_before_the_contract_keeps_serving(self):
        """A server of this version that opened the database expanded (its statements read and
        write the columns of version 2) while another one contracts it: either the contract waits
        for it (refused, like for a server of 363d47a), or it goes on serving on version 3."""
        early = self.start_server(env=self.env(cache_mb=0), label="started expanded")
        stub = early.stub()
        self.check_reads(stub, fixture_books(self.S))
        late = self.start_server(env=self.env(contract="on"), wait=False, label="contracting")
        late.expect_clean_exit = False
        harness.wait_for(lambda: not late.running() or "listening" in log_messages(late),
                         timeout=60, what="the contracting server to serve or exit")
        contracted = late.running()
        if contracted:
            late.wait_listening()
            late.wait_serving()
        else:
            self.assertIn("contract=on, but", late.stderr_text())
        outcomes = {}
        for what, call in (
                ("GetBook", lambda: stub.GetBook(GetBookRequest(name="books/quotes"), timeout=10)),
                ("ListBooks", lambda: stub.ListBooks(ListBooksRequest(page_size=3), timeout=10)),
                ("CreateBook", lambda: stub.CreateBook(CreateBookRequest(
                    book_id="made-by-the-early-server", book=harness.make_book()), timeout=10))):
            try:
                call()
                outcomes[what] = "OK"
            except grpc.RpcError as e:
                outcomes[what] = "%s: %s" % (e.code().name, e.details())
        health = harness.health_status(early, harness.SERVICE)
        warnings = [m for m in log_messages(early) if "failed" in m]
        self.assertEqual(outcomes, {"GetBook": "OK", "ListBooks": "OK", "CreateBook": "OK"},
                         "the contract %s while a server of this version that opened the "
                         "database expanded was running, and that server then answered: %r "
                         "(its health for %s: %s; its log: %r)"
                         % ("succeeded" if contracted else "was refused", outcomes,
                            harness.SERVICE, harness.health_pb2.HealthCheckResponse.ServingStatus
                            .Name(health) if health is not None else None, warnings))
        if contracted:
            # Every connection of the early server moves to version 3: reads on each reader (the
            # pool is 2; the queue hands them out) and a second create all keep answering.
            for i in range(6):
                self.assertEqual(stub.GetBook(GetBookRequest(name="books/quotes"),
                                              timeout=10).name, "books/quotes")
            stub.CreateBook(CreateBookRequest(book_id="made-after-the-move",
                                              book=harness.make_book()), timeout=10)
            self.assertTrue(any("another server has contracted the schema" in m
                                for m in log_messages(early)), log_messages(early))
            self.assertEqual(harness.health_status(early, harness.SERVICE),
                             harness.health_pb2.HealthCheckResponse.SERVING)


if __name__ == "__main__":
    unittest.main()
