"""Wire tests: ListBooks pagination (AIP-132, AIP-158): page size defaults and caps, resource-name
order, keyset stability under inserts, page-token integrity (altered, truncated, extended,
garbage, foreign), and the ~4 MiB page cap."""

import base64
import random
import unittest

import grpc

import harness
from harness import CreateBookRequest, ListBooksRequest, create_many, make_book

INVALID = grpc.StatusCode.INVALID_ARGUMENT
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class PaginationCase(harness.SharedServerTestCase):

    def list(self, page_size=0, page_token="", stub=None):
        return (stub or self.stub).ListBooks(
            ListBooksRequest(page_size=page_size, page_token=page_token), timeout=30)

    def walk(self, sizes, stub=None):
        """Walks all pages, cycling through `sizes`; returns (names, pages). Checks every page is in
        strictly increasing name order and every token is URL-safe."""
        names, token, pages = [], "", 0
        while True:
            size = sizes[pages % len(sizes)]
            resp = self.list(size, token, stub)
            pages += 1
            page = [b.name for b in resp.books]
            self.assertEqual(page, sorted(page), "page %d out of order" % pages)
            if names and page:
                self.assertGreater(page[0], names[-1], "page %d repeats or goes back" % pages)
            expected_max = page_limit(size)
            self.assertLessEqual(len(page), expected_max)
            names.extend(page)
            token = resp.next_page_token
            if not token:
                return names, pages
            self.assertRegex(token, harness.TOKEN_RE)
            self.assertLess(pages, 100000)


def page_limit(size):
    return 50 if size == 0 else min(size, 1000)


class EmptyStoreTest(PaginationCase):

    def test_empty_store_is_one_empty_last_page(self):
        for size in (0, 1, 50, 1000, 5000):
            with self.subTest(page_size=size):
                resp = self.list(size)
                self.assertEqual(list(resp.books), [])
                self.assertEqual(resp.next_page_token, "")


class SizesAndOrderTest(PaginationCase):
    """1201 books, so every cap can be seen."""

    N = 1201

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Bytewise order traps: '-' < digits < letters, shorter prefix first, digit-led UUIDs.
        extra = ["a", "a-a", "a0", "aa", "b", "z", "zz-top", "00000000-0000-4000-8000-000000000000",
                 "99999999-9999-4999-9999-999999999999", "a" * 63]
        cls.ids = ["b%05d" % i for i in range(cls.N - len(extra))] + extra
        created = create_many(cls.stub, cls.ids)
        cls.books = {b.name: b for b in created}
        cls.all_names = sorted("books/" + i for i in cls.ids)
        assert len(cls.all_names) == cls.N

    def test_default_page_size_is_50(self):
        resp = self.list()
        self.assertEqual([b.name for b in resp.books], self.all_names[:50])
        self.assertNotEqual(resp.next_page_token, "")
        self.assertRegex(resp.next_page_token, harness.TOKEN_RE)

    def test_page_size_is_honoured_up_to_1000(self):
        for size in (1, 2, 49, 51, 999, 1000):
            with self.subTest(page_size=size):
                resp = self.list(size)
                self.assertEqual([b.name for b in resp.books], self.all_names[:size])
                self.assertNotEqual(resp.next_page_token, "")

    def test_page_size_above_1000_is_1000(self):
        for size in (1001, 5000, 2**31 - 1):
            with self.subTest(page_size=size):
                resp = self.list(size)
                self.assertEqual([b.name for b in resp.books], self.all_names[:1000])
                self.assertNotEqual(resp.next_page_token, "")

    def test_books_come_back_whole(self):
        resp = self.list(1000)
        for b in resp.books:
            self.assertEqual(b, self.books[b.name])

    def test_full_walks_see_every_book_once_in_order(self):
        for sizes in ([1000], [0], [7], [333], [3, 10, 1, 1000, 0, 77]):
            with self.subTest(sizes=sizes):
                names, pages = self.walk(sizes)
                self.assertEqual(names, self.all_names)

    def test_page_size_may_change_between_pages(self):
        first = self.list(3)
        second = self.list(10, first.next_page_token)
        third = self.list(1, second.next_page_token)
        got = [b.name for r in (first, second, third) for b in r.books]
        self.assertEqual(got, self.all_names[:14])
        # The same token again (tokens do not expire, and reading does not consume them).
        again = self.list(10, first.next_page_token)
        self.assertEqual([b.name for b in again.books], self.all_names[3:13])
        bigger = self.list(5000, first.next_page_token)
        self.assertEqual([b.name for b in bigger.books], self.all_names[3:1003])

    def test_exact_multiple_ends_properly(self):
        # The last full page may carry a token as long as the page after it is empty and last.
        size = 1000
        names, _ = self.walk([size])
        self.assertEqual(names, self.all_names)
        resp = self.list(size)
        resp2 = self.list(201, resp.next_page_token)
        self.assertEqual([b.name for b in resp2.books], self.all_names[1000:])
        if resp2.next_page_token:
            resp3 = self.list(201, resp2.next_page_token)
            self.assertEqual(list(resp3.books), [])
            self.assertEqual(resp3.next_page_token, "")


class WalkWithInsertsTest(PaginationCase):
    """Keyset pagination: books inserted while paging never make a book skip or repeat; a new book
    appears iff its name sorts after the cursor (the last name already returned)."""

    def test_inserts_between_pages(self):
        originals = ["m%04d" % i for i in range(0, 600, 2)]   # 300 books
        create_many(self.stub, originals)
        expected = {"books/" + i for i in originals}
        inserted_after, inserted_before = [], []
        rnd = random.Random(1234)
        sizes = [7, 1, 50, 13, 0, 100, 3, 29]
        names, token, pages, serial = [], "", 0, 0
        writer = self.server.stub()   # another channel for the writes
        while True:
            resp = self.list(sizes[pages % len(sizes)], token)
            pages += 1
            page = [b.name for b in resp.books]
            if names and page:
                self.assertGreater(page[0], names[-1])
            names.extend(page)
            token = resp.next_page_token
            if not token:
                break
            cursor = names[-1]
            self.assertLess(pages, 10000)
            if pages > 60 or cursor >= "books/m0598":
                continue   # stop inserting, so the walk can end
            cid = cursor[len("books/"):]
            n = int(cid[1:5])
            serial += 1
            candidates = [
                "%s-a%d" % (cid, serial),              # right after the cursor
                "m%04d-b%d" % (max(n - 1, 0), serial),  # just before the cursor
                "m%04d-c%d" % (rnd.randrange(0, 600), serial),  # anywhere
                "a-%d" % serial,                       # before everything
                "z-%d" % serial,                       # after everything
            ]
            for bid in candidates:
                name = "books/" + bid
                writer.CreateBook(CreateBookRequest(book=make_book(), book_id=bid), timeout=10)
                if name > cursor:
                    expected.add(name)
                    inserted_after.append(name)
                else:
                    inserted_before.append(name)
        self.assertEqual(len(names), len(set(names)), "a book was returned twice")
        missing = sorted(expected - set(names))
        extra = sorted(set(names) - expected)
        self.assertEqual(missing, [], "books skipped")
        self.assertEqual(extra, [], "books that sorted before the cursor when inserted")
        self.assertEqual(names, sorted(expected))
        self.assertGreater(len(inserted_after), 0)
        self.assertGreater(len(inserted_before), 0)
        # A fresh walk sees everything, old and new.
        all_names, _ = self.walk([1000])
        self.assertEqual(all_names, sorted(expected | set(inserted_before)))


class PageTokenTest(PaginationCase):
    """Tokens are opaque and signed: anything but a token this server process issued is rejected."""

    IDS = ["t%02d" % i for i in range(30)]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        create_many(cls.stub, cls.IDS)
        # A second server process with the very same books: same cursors, different data set.
        cls.other = harness.ServerProcess(label="other-server")
        cls.addClassCleanup(cls.other.cleanup)
        cls.addClassCleanup(cls.other.stop_and_check)
        cls.other.start_and_wait()
        cls.other_stub = cls.other.stub()
        create_many(cls.other_stub, cls.IDS)
        cls.token = cls.stub.ListBooks(ListBooksRequest(page_size=10)).next_page_token
        cls.other_token = cls.other_stub.ListBooks(ListBooksRequest(page_size=10)).next_page_token

    def tearDown(self):
        self.other.check_alive()
        super().tearDown()

    def rejected(self, token, stub=None):
        self.expect_error(lambda: self.list(10, token, stub), INVALID, reason="FIELD_VIOLATION",
                          fields=["page_token"])

    def test_token_works_and_is_url_safe(self):
        self.assertRegex(self.token, harness.TOKEN_RE)
        for _ in range(2):
            resp = self.list(10, self.token)
            self.assertEqual([b.name for b in resp.books],
                             ["books/t%02d" % i for i in range(10, 20)])

    def test_every_single_character_change_is_rejected(self):
        t = self.token
        for i, c in enumerate(t):
            idx = B64URL.index(c)
            for repl in {B64URL[idx ^ 1], B64URL[idx ^ 32], B64URL[(idx + 17) % 64], "+", "."}:
                if repl == c:
                    continue
                altered = t[:i] + repl + t[i + 1:]
                with self.subTest(position=i, replacement=repl):
                    self.rejected(altered)

    def test_truncated_tokens_are_rejected(self):
        t = self.token
        for k in range(1, len(t)):
            with self.subTest(length=k):
                self.rejected(t[:k])
        for k in range(1, len(t)):
            with self.subTest(dropped_prefix=k):
                self.rejected(t[k:])

    def test_extended_tokens_are_rejected(self):
        t = self.token
        for suffix in ("A", "AA", "AAA", "AAAA", "-", "_", "=", "==", " ", "\n", "\x00",
                       "\x00junk", "%3D", t):
            with self.subTest(suffix=suffix):
                self.rejected(t + suffix)
        for prefix in ("A", " ", "\x00"):
            with self.subTest(prefix=prefix):
                self.rejected(prefix + t)
        with self.subTest(kind="NUL inside"):
            self.rejected(t[:5] + "\x00" + t[5:])

    def test_garbage_tokens_are_rejected(self):
        rnd = random.Random(42)
        tokens = ["".join(rnd.choice(B64URL) for _ in range(n))
                  for n in (1, 2, 3, 4, 8, 16, 22, 24, 32, 43, 44, 48, 64, 100, 200, 256)]
        tokens += [len(self.token) * "A", len(self.token) * "_", "A" * 10000, "B" * (1 << 20),
                   "not a token", "t09", "books/t09", "\u00e9" * 10, "\U0001F4DA"]
        # Plausible forgeries: the bare cursor, base64url-encoded.
        for cursor in ("t09", "books/t09", "t19"):
            enc = base64.urlsafe_b64encode(cursor.encode()).decode()
            tokens += [enc, enc.rstrip("=")]
        # Standard base64 of the real token's bytes (padding and alphabet differ).
        raw = base64.urlsafe_b64decode(self.token + "=" * (-len(self.token) % 4))
        tokens += [base64.b64encode(raw).decode()]
        if base64.urlsafe_b64encode(raw).decode() != self.token:
            tokens += [base64.urlsafe_b64encode(raw).decode()]
        for token in tokens:
            with self.subTest(token=token[:40], length=len(token)):
                self.rejected(token)

    def test_foreign_tokens_are_rejected(self):
        # A token from another server process is refused, both ways, even though both servers hold
        # the same books...
        self.rejected(self.other_token)
        self.rejected(self.token, self.other_stub)
        # ...while each server's own token works.
        for stub, token in ((self.stub, self.token), (self.other_stub, self.other_token)):
            resp = self.list(10, token, stub)
            self.assertEqual([b.name for b in resp.books],
                             ["books/t%02d" % i for i in range(10, 20)])

    def test_token_works_on_another_connection(self):
        # A token belongs to the server's data set, not to a connection.
        stub = self.server.stub()
        resp = self.list(10, self.token, stub)
        self.assertEqual([b.name for b in resp.books], ["books/t%02d" % i for i in range(10, 20)])

    def test_tokens_of_later_pages_keep_working(self):
        tokens = []
        token = ""
        while True:
            resp = self.list(4, token)
            if not resp.next_page_token:
                break
            token = resp.next_page_token
            tokens.append(token)
        self.assertGreaterEqual(len(tokens), 7)
        for i, token in enumerate(tokens):
            resp = self.list(4, token)
            self.assertEqual([b.name for b in resp.books],
                             ["books/t%02d" % j for j in range(4 * (i + 1), min(4 * (i + 2), 30))])


class PageBytesCapTest(PaginationCase):
    """A page stops early so it fits the 4 MiB default receive limit of gRPC clients."""

    def test_big_books_page_fits_default_client_limit(self):
        def big(i):
            return make_book(display_name=(i + "-") * 100 + "x" * (1024 - 100 * (len(i) + 1)),
                             authors=[(i + "%03d" % k) * 10 + "a" * (512 - 10 * (len(i) + 3))
                                      for k in range(100)],
                             publisher="p" * 512)
        ids = ["big%03d" % i for i in range(90)]   # ~51.5 KiB each, ~4.6 MiB in all
        create_many(self.stub, ids, big, batch=8)
        # This channel has grpcio's default 4 MiB receive limit.
        names, pages = self.walk([1000])
        self.assertEqual(names, ["books/" + i for i in ids])
        self.assertGreaterEqual(pages, 2)
        first = self.list(1000)
        self.assertGreater(len(first.books), 0)
        self.assertLessEqual(first.ByteSize(), 4 * 1024 * 1024)
        self.assertNotEqual(first.next_page_token, "")
        for b in first.books:
            want = big(b.name[len("books/"):])
            want.name = b.name
            self.assertEqual(b, want)


if __name__ == "__main__":
    unittest.main()
