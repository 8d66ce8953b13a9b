"""Wire tests: CreateBook / GetBook round trips (AIP-131, AIP-133, AIP-203) over real gRPC."""

import unittest
import uuid

import grpc

import harness
from harness import Book, CreateBookRequest, GetBookRequest, make_book


def uid(prefix="b"):
    """A fresh, valid AIP-122 id, so tests sharing one server never collide."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


class CreateGetTest(harness.SharedServerTestCase):

    def create(self, book, book_id=""):
        return self.stub.CreateBook(CreateBookRequest(book=book, book_id=book_id), timeout=10)

    def get(self, name):
        return self.stub.GetBook(GetBookRequest(name=name), timeout=10)

    def test_create_then_get_returns_the_book_exactly(self):
        book_id = uid()
        book = make_book("The C Programming Language", ["Brian W. Kernighan", "Dennis M. Ritchie"],
                         "Prentice Hall")
        created = self.create(book, book_id)
        want = Book(name="books/" + book_id, display_name=book.display_name,
                    authors=book.authors, publisher=book.publisher)
        self.assertEqual(created, want)
        self.assertEqual(self.get("books/" + book_id), want)
        # And again: a read does not change anything.
        self.assertEqual(self.get("books/" + book_id), want)

    def test_authors_keep_their_order_and_duplicates(self):
        book_id = uid()
        authors = ["Zed", "Amy", "Mia", "Amy", "bob"]
        created = self.create(make_book(authors=authors), book_id)
        self.assertEqual(list(created.authors), authors)
        self.assertEqual(list(self.get(created.name).authors), authors)

    def test_empty_book_id_assigns_a_uuid4(self):
        a = self.create(make_book("first"))
        b = self.create(make_book("second"))
        for created in (a, b):
            self.assertTrue(created.name.startswith("books/"), created.name)
            self.assertRegex(created.name[len("books/"):], harness.UUID4_RE)
            self.assertEqual(self.get(created.name), created)
        self.assertNotEqual(a.name, b.name)

    def test_many_assigned_ids_are_distinct_uuid4(self):
        names = set()
        for i in range(50):
            created = self.create(make_book("uuid %d" % i))
            self.assertRegex(created.name[len("books/"):], harness.UUID4_RE)
            names.add(created.name)
        self.assertEqual(len(names), 50)

    def test_client_supplied_name_is_ignored(self):
        # AIP-203: OUTPUT_ONLY fields are ignored on input, never an error.
        book_id = uid()
        decoy = "books/" + uid("decoy")
        created = self.create(make_book(name=decoy), book_id)
        self.assertEqual(created.name, "books/" + book_id)
        self.expect_error(lambda: self.get(decoy), grpc.StatusCode.NOT_FOUND,
                          reason="BOOK_NOT_FOUND", resource_name=decoy)

    def test_client_supplied_name_is_ignored_without_book_id(self):
        for junk in ("books/" + uid("decoy"), "not a name at all!", "books/UPPER", "x" * 2000):
            with self.subTest(name=junk[:40]):
                created = self.create(make_book(name=junk))
                self.assertRegex(created.name[len("books/"):], harness.UUID4_RE)
                self.assertEqual(self.get(created.name).display_name, "A Title")

    def test_valid_ids(self):
        ids = ["a", "z9", "a-b", "x" + "-" * 61 + "y", "a" * 63, "b" + "0" * 62,
               str(uuid.uuid4()), "12345678-1234-4234-8234-123456789abc",
               "00000000-0000-4000-b000-000000000000", "ffffffff-ffff-4fff-afff-ffffffffffff"]
        for book_id in ids:
            with self.subTest(book_id=book_id):
                try:
                    created = self.create(make_book(), book_id)
                except grpc.RpcError as e:
                    self.fail("book_id %r rejected: %s" % (book_id,
                                                          harness.error_details(e).describe()))
                self.assertEqual(created.name, "books/" + book_id)
                self.assertEqual(self.get("books/" + book_id), created)

    def test_unicode_round_trips_exactly(self):
        texts = {
            "cjk": "红楼梦 / 源氏物語 / 삼국유사",
            "emoji": "📚🐍 \U0001F469\u200D\U0001F4BB family "
                     "\U0001F468\u200D\U0001F469\u200D\U0001F467",
            "combining": "e\u0301 a\u0308 Z\u0351\u0362\u0338",
            "nfc_vs_nfd": "\u00e9 vs e\u0301",
            "rtl": "עברית العربية \u202Eevil\u202C",
            "mixed": "Ελληνικά Кириллица ḁ ﷺ \uFEFF \U0010FFFD",
            "controls": "tab\tnewline\nquote\"backslash\\",
        }
        for label, text in texts.items():
            with self.subTest(label=label):
                book = make_book(display_name=text, authors=[text, "plain", text[::-1]],
                                 publisher=text + " Press")
                created = self.create(book, uid())
                self.assertEqual(created.display_name, text)
                self.assertEqual(list(created.authors), [text, "plain", text[::-1]])
                self.assertEqual(created.publisher, text + " Press")
                got = self.get(created.name)
                self.assertEqual(got, created)
                self.assertEqual(got.display_name.encode("utf-8"), text.encode("utf-8"))

    def test_nfc_and_nfd_titles_are_not_normalized(self):
        nfc = self.create(make_book(display_name="Caf\u00e9"), uid())
        nfd = self.create(make_book(display_name="Cafe\u0301"), uid())
        self.assertEqual(self.get(nfc.name).display_name, "Caf\u00e9")
        self.assertEqual(self.get(nfd.name).display_name, "Cafe\u0301")

    def test_embedded_nul_is_never_silently_truncated(self):
        # U+0000 is valid UTF-8 in a proto3 string. The server may reject it (INVALID_ARGUMENT
        # naming the field) but must never store a shortened string.
        cases = [
            ("book.display_name", make_book(display_name="before\x00after")),
            ("book.publisher", make_book(publisher="Pub\x00lisher")),
            ("book.authors[1]", make_book(authors=["ok", "Au\x00thor"])),
        ]
        for field, book in cases:
            with self.subTest(field=field):
                book_id = uid("nul")
                try:
                    created = self.create(book, book_id)
                except grpc.RpcError as e:
                    self.check_error(e, grpc.StatusCode.INVALID_ARGUMENT, fields=[field])
                    self.expect_error(lambda: self.get("books/" + book_id),
                                      grpc.StatusCode.NOT_FOUND, resource_name="books/" + book_id)
                    continue
                want = Book(name="books/" + book_id, display_name=book.display_name,
                            authors=book.authors, publisher=book.publisher)
                self.assertEqual(created, want)
                self.assertEqual(self.get(want.name), want)

    def test_field_size_limits_are_inclusive_and_in_bytes(self):
        # Exactly at the limits (counted in UTF-8 bytes): accepted and returned unchanged.
        title = "界" * 341 + "a"                      # 1024 bytes
        author = "ü" * 256                            # 512 bytes
        publisher = "p" * 511 + "x"                   # 512 bytes
        authors = [author] + ["author %d" % i for i in range(99)]  # 100 entries
        self.assertEqual(len(title.encode()), 1024)
        self.assertEqual(len(author.encode()), 512)
        book = make_book(title, authors, publisher)
        created = self.create(book, uid("limits"))
        self.assertEqual(created.display_name, title)
        self.assertEqual(list(created.authors), authors)
        self.assertEqual(created.publisher, publisher)
        self.assertEqual(self.get(created.name), created)

    def test_get_is_consistent_across_channels(self):
        created = self.create(make_book("shared"), uid())
        for _ in range(3):
            ch = self.server.channel()
            self.assertEqual(self.server.stub(ch).GetBook(GetBookRequest(name=created.name),
                                                          timeout=10), created)

    def test_created_book_appears_in_list(self):
        created = self.create(make_book("listed"), uid("list"))
        books, _ = harness.list_all(self.stub, page_size=1000)
        matches = [b for b in books if b.name == created.name]
        self.assertEqual(matches, [created])


if __name__ == "__main__":
    unittest.main()
