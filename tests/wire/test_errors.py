"""Wire tests: every error the API promises, with its AIP-193 details (google.rpc.Status in the
grpc-status-details-bin trailer: ErrorInfo, BadRequest, ResourceInfo)."""

import unittest
import uuid

import grpc

import harness
from harness import Book, CreateBookRequest, GetBookRequest, ListBooksRequest, make_book

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def uid(prefix="e"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


BAD_IDS = [
    "A", "Bad_Id", "UPPER", "aB", "-x", "x-", "-", "1abc", "9", "a_b", "a.b", "a b", "a/b", " a",
    "a ", "a\n", "caf\u00e9", "\u65e5\u672c", "a" * 64, "x" + "-" * 62 + "y",
    # Almost-UUID4s (they start with a digit, so only the UUID4 rule could make them valid).
    "12345678-1234-1234-8234-123456789abc",   # version 1
    "12345678-1234-4234-c234-123456789abc",   # variant c
    "12345678-1234-4234-7234-123456789abc",   # variant 7
    "12345678-1234-4234-8234-123456789ABC",   # upper case
    "12345678123442348234123456789abc",       # no hyphens
    "{12345678-1234-4234-8234-123456789abc}",
    "12345678-1234-4234-8234-123456789abcd",  # too long
    "12345678-1234-4234-8234-123456789ab",    # too short
    "abc\x00def",                             # NUL: must not become "abc"
]


class GetBookErrorsTest(harness.SharedServerTestCase):

    def get(self, name):
        return self.stub.GetBook(GetBookRequest(name=name), timeout=10)

    def test_empty_name(self):
        self.expect_error(lambda: self.get(""), INVALID, reason="FIELD_VIOLATION", fields=["name"])

    def test_malformed_names(self):
        names = ["shelves/x", "books/", "books", "books/UPPER", "books/a/b", "books/-a", "books/a-",
                 "books/" + "a" * 64, "books/a_b", "books/caf\u00e9", "books/\u65e5\u672c",
                 "/books/a", "books//a", "Books/a", "books/a ", " books/a", "books/a/", "books/*",
                 "books/%61", "book/a", "booksa", "books/a?x=1", "//books/a",
                 "books/" + "a" * 5000, "x" * 100000]
        names += ["books/" + b for b in BAD_IDS if b]
        for name in names:
            with self.subTest(name=name[:80]):
                self.expect_error(lambda: self.get(name), INVALID, reason="FIELD_VIOLATION",
                                  fields=["name"])

    def test_name_with_embedded_nul_does_not_match_a_shorter_name(self):
        book_id = uid("nul")
        self.stub.CreateBook(CreateBookRequest(book=make_book(), book_id=book_id), timeout=10)
        for name in ("books/%s\x00" % book_id, "books/%s\x00junk" % book_id,
                     "books/\x00" + book_id):
            with self.subTest(name=name):
                self.expect_error(lambda: self.get(name), INVALID, fields=["name"])

    def test_unknown_book(self):
        for name in ("books/" + uid("missing"), "books/" + str(uuid.uuid4()), "books/a",
                     "books/" + "z" * 63):
            with self.subTest(name=name):
                self.expect_error(lambda: self.get(name), grpc.StatusCode.NOT_FOUND,
                                  reason="BOOK_NOT_FOUND", resource_name=name,
                                  metadata={"name": name})


class CreateBookErrorsTest(harness.SharedServerTestCase):

    def create(self, book=None, book_id="", **kw):
        req = CreateBookRequest(book_id=book_id) if book is None else \
            CreateBookRequest(book=book, book_id=book_id)
        return self.stub.CreateBook(req, timeout=10, **kw)

    def test_missing_book(self):
        self.expect_error(lambda: self.create(None, uid()), INVALID, reason="FIELD_VIOLATION",
                          fields=["book"])
        self.expect_error(lambda: self.create(None, ""), INVALID, reason="FIELD_VIOLATION",
                          fields=["book"])

    def test_missing_book_and_bad_book_id_together(self):
        self.expect_error(lambda: self.create(None, "Bad_Id"), INVALID, reason="FIELD_VIOLATION",
                          fields=["book", "book_id"])

    def test_bad_book_ids(self):
        for book_id in BAD_IDS:
            with self.subTest(book_id=book_id):
                self.expect_error(lambda: self.create(make_book(), book_id), INVALID,
                                  reason="FIELD_VIOLATION", fields=["book_id"])
                # Nothing was created under any spelling of it.
                prefix = book_id.split("\x00")[0]
                if harness.ID_RE.match(prefix):
                    self.expect_error(
                        lambda: self.stub.GetBook(GetBookRequest(name="books/" + prefix)),
                        grpc.StatusCode.NOT_FOUND)

    def test_each_missing_required_field(self):
        cases = [
            (make_book(display_name=""), ["book.display_name"]),
            (make_book(authors=[]), ["book.authors"]),
            (make_book(publisher=""), ["book.publisher"]),
            (make_book(authors=[""]), ["book.authors[0]"]),
            (make_book(authors=["ok", "", "fine", ""]), ["book.authors[1]", "book.authors[3]"]),
            (Book(), ["book.display_name", "book.authors", "book.publisher"]),
        ]
        for book, fields in cases:
            with self.subTest(fields=fields):
                book_id = uid()
                self.expect_error(lambda: self.create(book, book_id), INVALID,
                                  reason="FIELD_VIOLATION", fields=fields)
                self.expect_error(
                    lambda: self.stub.GetBook(GetBookRequest(name="books/" + book_id)),
                    grpc.StatusCode.NOT_FOUND)

    def test_all_violations_in_one_error(self):
        self.expect_error(lambda: self.create(Book(), "Bad_Id"), INVALID, reason="FIELD_VIOLATION",
                          fields=["book_id", "book.display_name", "book.authors",
                                  "book.publisher"])
        self.expect_error(
            lambda: self.create(Book(display_name="x" * 1025, authors=["a", ""],
                                     publisher="p" * 513), "-x"),
            INVALID, reason="FIELD_VIOLATION",
            fields=["book_id", "book.display_name", "book.authors[1]", "book.publisher"])

    def test_every_violation_is_reported_even_many(self):
        # 10 empty authors plus missing title and publisher: 12 bad fields, 12 violations.
        authors = ["", "ok"] * 10
        fields = ["book.display_name", "book.publisher"] + \
            ["book.authors[%d]" % i for i in range(0, 20, 2)]
        self.expect_error(lambda: self.create(Book(authors=authors), uid()), INVALID,
                          reason="FIELD_VIOLATION", fields=fields)

    def test_over_long_fields(self):
        cases = [
            (make_book(display_name="x" * 1025), ["book.display_name"]),
            (make_book(display_name="界" * 342), ["book.display_name"]),   # 342 chars, 1026 bytes
            (make_book(publisher="p" * 513), ["book.publisher"]),
            (make_book(publisher="ü" * 257), ["book.publisher"]),        # 257 chars, 514 bytes
            (make_book(authors=["ok", "a" * 513]), ["book.authors[1]"]),
            (make_book(authors=["ü" * 257]), ["book.authors[0]"]),
            (make_book(authors=["author %d" % i for i in range(101)]), ["book.authors"]),
            (make_book(display_name="x" * 100000), ["book.display_name"]),
        ]
        for book, fields in cases:
            with self.subTest(fields=fields, size=len(book.SerializeToString())):
                self.expect_error(lambda: self.create(book, uid()), INVALID,
                                  reason="FIELD_VIOLATION", fields=fields)

    def test_invalid_utf8_in_a_string_field_is_rejected(self):
        # proto3 strings must be UTF-8 (and the proto says "Non-empty UTF-8"). Build the bytes by
        # hand: CreateBookRequest{book{display_name=<ff fe>, authors="a", publisher="p"}, book_id}.
        book_id = uid("utf8")
        book = b"\x12\x02\xff\xfe" + b"\x1a\x01a" + b"\x22\x01p"
        body = b"\x0a" + bytes([len(book)]) + book + b"\x12" + bytes([len(book_id)]) + \
            book_id.encode()
        call = harness.raw_unary(self.channel, "/books.v1.BooksService/CreateBook")
        self.expect_error(lambda: call(body, timeout=10), INVALID)
        # Nothing was stored, so every client can still list (a stored invalid string would make
        # ListBooks responses unparseable for strict clients like this one).
        self.expect_error(lambda: self.stub.GetBook(GetBookRequest(name="books/" + book_id)),
                          grpc.StatusCode.NOT_FOUND)
        harness.list_all(self.stub, page_size=1000)

    def test_already_exists_does_not_overwrite(self):
        book_id = uid("dup")
        original = self.create(make_book("Original", ["First Author"], "First Pub"), book_id)
        name = "books/" + book_id
        self.expect_error(lambda: self.create(make_book("Replacement", ["Other"], "Other Pub"),
                                              book_id),
                          grpc.StatusCode.ALREADY_EXISTS, reason="BOOK_ALREADY_EXISTS",
                          resource_name=name)
        # Same content again is still a conflict, not an idempotent success.
        self.expect_error(lambda: self.create(make_book("Original", ["First Author"], "First Pub"),
                                              book_id),
                          grpc.StatusCode.ALREADY_EXISTS, reason="BOOK_ALREADY_EXISTS",
                          resource_name=name)
        self.assertEqual(self.stub.GetBook(GetBookRequest(name=name), timeout=10), original)

    def test_already_exists_for_a_uuid_id(self):
        book_id = str(uuid.uuid4())
        original = self.create(make_book("uuid original"), book_id)
        self.expect_error(lambda: self.create(make_book("uuid copy"), book_id),
                          grpc.StatusCode.ALREADY_EXISTS, reason="BOOK_ALREADY_EXISTS",
                          resource_name="books/" + book_id)
        self.assertEqual(self.stub.GetBook(GetBookRequest(name="books/" + book_id)), original)

    def test_field_errors_come_before_existence(self):
        book_id = uid("order")
        self.create(make_book(), book_id)
        self.expect_error(lambda: self.create(make_book(publisher=""), book_id), INVALID,
                          reason="FIELD_VIOLATION", fields=["book.publisher"])
        self.expect_error(lambda: self.create(None, book_id), INVALID, fields=["book"])


class ListBooksErrorsTest(harness.SharedServerTestCase):

    def list(self, page_size=0, page_token=""):
        return self.stub.ListBooks(ListBooksRequest(page_size=page_size, page_token=page_token),
                                   timeout=10)

    def test_negative_page_size(self):
        for size in (-1, -2, -1000, -2**31):
            with self.subTest(page_size=size):
                self.expect_error(lambda: self.list(page_size=size), INVALID,
                                  reason="FIELD_VIOLATION", fields=["page_size"])

    def test_garbage_page_tokens(self):
        for token in ("x", "garbage", "AAAA", "!!!!", "a+b/c==", "\u00e9", "\x00", "a\x00b",
                      "A" * 10000):
            with self.subTest(token=token[:20]):
                self.expect_error(lambda: self.list(page_token=token), INVALID,
                                  reason="FIELD_VIOLATION", fields=["page_token"])

    def test_negative_page_size_and_bad_token_together(self):
        # Both are wrong; the error must be a field violation naming them (ideally both at once).
        d = self.expect_error(lambda: self.list(page_size=-1, page_token="garbage"), INVALID,
                              reason="FIELD_VIOLATION")
        fields = d.violation_fields
        self.assertTrue(fields and set(fields) <= {"page_size", "page_token"}
                        and len(fields) == len(set(fields)), d.describe())


class UnknownMethodTest(harness.SharedServerTestCase):

    def test_unknown_methods_are_unimplemented(self):
        for method in ("/books.v1.BooksService/DeleteBook", "/books.v1.BooksService/UpdateBook",
                       "/nope.Svc/X", "/books.v1.BooksService/getbook",
                       "/books.v1.BooksService/GetBook/extra", "/grpc.health.v1.Health/Nope",
                       "/", "/x"):
            with self.subTest(method=method):
                call = harness.raw_unary(self.channel, method)
                # A 5 s deadline: a server that never answers shows up as DEADLINE_EXCEEDED.
                self.expect_error(lambda: call(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED)
        # The channel still works.
        self.expect_error(lambda: self.stub.GetBook(GetBookRequest(name="books/" + uid()),
                                                    timeout=10), grpc.StatusCode.NOT_FOUND)

    def test_unknown_method_with_a_body(self):
        call = harness.raw_unary(self.channel, "/books.v1.BooksService/DeleteBook")
        body = GetBookRequest(name="books/x").SerializeToString()
        self.expect_error(lambda: call(body, timeout=5), grpc.StatusCode.UNIMPLEMENTED)


GARBAGE = [
    b"\xff\xff\xff\xff",
    b"\x08",                        # a tag with no value
    b"\x08\x80",                    # truncated varint
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint longer than 10 bytes
    b"\x0a\x64ab",                  # field 1: length 100, 2 bytes present
    b"\x0a\xff\xff\xff\xff\x0f",    # field 1: length 4 GiB
    b"\x0a",                        # field 1: missing length
    b"\x00",                        # field number 0
    b"\x07",                        # wire type 7
    b"\x0c",                        # end group without start
    bytes(range(256)),
]


class GarbageTest(harness.SharedServerTestCase):

    def check_garbage(self, method, body):
        call = harness.raw_unary(self.channel, method)
        try:
            call(body, timeout=10)
        except grpc.RpcError as e:
            d = harness.error_details(e)
            self.assertIn(e.code(), (INVALID, grpc.StatusCode.INTERNAL), d.describe())
            if e.code() == INVALID:
                self.check_error(e, INVALID, reason="MALFORMED_REQUEST")
            return
        self.fail("%s accepted garbage %r" % (method, body[:20]))

    def assert_still_serving(self):
        self.server.check_alive()
        book_id = uid("alive")
        created = self.stub.CreateBook(CreateBookRequest(book=make_book(), book_id=book_id),
                                       timeout=10)
        self.assertEqual(self.stub.GetBook(GetBookRequest(name=created.name), timeout=10),
                         created)

    def test_garbage_bodies(self):
        for method in ("/books.v1.BooksService/GetBook", "/books.v1.BooksService/CreateBook",
                       "/books.v1.BooksService/ListBooks"):
            for body in GARBAGE:
                with self.subTest(method=method, body=body[:16]):
                    self.check_garbage(method, body)
        self.assert_still_serving()

    def test_wrong_wire_types(self):
        # A known field with an unexpected wire type: protobuf-c rejects the message, Google's
        # parsers keep it as an unknown field. Either is fine; a crash, UNKNOWN or a hang is not.
        cases = [
            ("/books.v1.BooksService/GetBook", b"\x08\x01"),            # name as varint
            ("/books.v1.BooksService/ListBooks", b"\x0a\x01x"),         # page_size as bytes
            ("/books.v1.BooksService/CreateBook", b"\x08\x01"),         # book as varint
            ("/books.v1.BooksService/CreateBook", b"\x0a\x02\x08\x01"), # book.name as varint
            ("/books.v1.BooksService/GetBook", b"\x0b\x0c"),            # name as a group
        ]
        for method, body in cases:
            with self.subTest(method=method, body=body):
                call = harness.raw_unary(self.channel, method)
                try:
                    call(body, timeout=10)
                except grpc.RpcError as e:
                    self.assertIn(e.code(), (INVALID, grpc.StatusCode.INTERNAL),
                                  harness.error_details(e).describe())
                    if e.code() == INVALID:
                        self.check_error(e, INVALID)
        self.assert_still_serving()

    def test_health_garbage(self):
        self.check_garbage("/grpc.health.v1.Health/Check", b"\xff\xff\xff\xff")
        self.assert_still_serving()

    def test_empty_body_is_the_default_message(self):
        # Zero bytes are a valid encoding of every message (all fields default).
        get = harness.raw_unary(self.channel, "/books.v1.BooksService/GetBook")
        self.expect_error(lambda: get(b"", timeout=10), INVALID, fields=["name"])
        create = harness.raw_unary(self.channel, "/books.v1.BooksService/CreateBook")
        self.expect_error(lambda: create(b"", timeout=10), INVALID, fields=["book"])
        lst = harness.raw_unary(self.channel, "/books.v1.BooksService/ListBooks")
        harness.ListBooksResponse.FromString(lst(b"", timeout=10))

    def test_unknown_fields_are_ignored(self):
        # Unknown fields are legal protobuf (forward compatibility): the request is still valid.
        book_id = uid("unk")
        body = CreateBookRequest(book=make_book(), book_id=book_id).SerializeToString()
        body += b"\xf8\x07\x2a" + b"\x82\x08\x03abc"  # fields 127 (varint) and 128 (bytes)
        create = harness.raw_unary(self.channel, "/books.v1.BooksService/CreateBook")
        got = Book.FromString(create(body, timeout=10))
        self.assertEqual(got.name, "books/" + book_id)


def request_of_size(size, book_id="m"):
    """A CreateBookRequest whose encoding is exactly `size` bytes (its title is too long to be
    valid, so a request that gets past the transport comes back INVALID_ARGUMENT)."""
    for n in range(size - 8, size - 40, -1):
        req = CreateBookRequest(book=Book(display_name="x" * n, authors=["a"], publisher="p"),
                                book_id=book_id)
        if req.ByteSize() == size:
            return req
    raise AssertionError("no request of exactly %d bytes" % size)


class DefaultRecvLimitTest(harness.SharedServerTestCase):
    """Default receive limit: 4 MiB."""

    def test_five_mib_request_is_resource_exhausted_and_channel_survives(self):
        big = make_book(display_name="x" * (5 * 1024 * 1024))
        self.expect_error(lambda: self.stub.CreateBook(CreateBookRequest(book=big, book_id=uid()),
                                                       timeout=30),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, details=False)
        # Same channel, next call works.
        book_id = uid("after")
        created = self.stub.CreateBook(CreateBookRequest(book=make_book(), book_id=book_id),
                                       timeout=10)
        self.assertEqual(created.name, "books/" + book_id)
        self.assertEqual(self.stub.GetBook(GetBookRequest(name=created.name), timeout=10), created)

    def test_just_under_the_limit_reaches_validation(self):
        # 4 MiB - 1 KiB: accepted by the transport, then rejected by validation (title too long).
        big = make_book(display_name="x" * (4 * 1024 * 1024 - 1024))
        self.expect_error(lambda: self.stub.CreateBook(CreateBookRequest(book=big, book_id=uid()),
                                                       timeout=30),
                          INVALID, reason="FIELD_VIOLATION", fields=["book.display_name"])


    def test_limit_is_inclusive(self):
        at = request_of_size(4194304)
        self.expect_error(lambda: self.stub.CreateBook(at, timeout=30), INVALID,
                          fields=["book.display_name"])
        over = request_of_size(4194305)
        self.expect_error(lambda: self.stub.CreateBook(over, timeout=30),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, details=False)


class SmallRecvLimitFlagTest(harness.SharedServerTestCase):
    server_args = ("--max-recv-bytes", "2048")

    def test_limit_applies(self):
        big = make_book(display_name="y" * 4096)
        self.expect_error(lambda: self.stub.CreateBook(CreateBookRequest(book=big, book_id=uid()),
                                                       timeout=10),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, details=False)
        # Small requests on the same channel still work.
        created = self.stub.CreateBook(CreateBookRequest(book=make_book(), book_id=uid()),
                                       timeout=10)
        self.assertEqual(self.stub.GetBook(GetBookRequest(name=created.name), timeout=10), created)
        # Just under the limit reaches the service (title of 1500 bytes: a field violation).
        mid = make_book(display_name="z" * 1500)
        self.assertLess(len(CreateBookRequest(book=mid, book_id="m").SerializeToString()), 2048)
        self.expect_error(lambda: self.stub.CreateBook(CreateBookRequest(book=mid, book_id="m"),
                                                       timeout=10),
                          INVALID, fields=["book.display_name"])


    def test_limit_is_inclusive(self):
        at = request_of_size(2048)
        self.expect_error(lambda: self.stub.CreateBook(at, timeout=10), INVALID,
                          fields=["book.display_name"])
        over = request_of_size(2049)
        self.expect_error(lambda: self.stub.CreateBook(over, timeout=10),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, details=False)
        self.stub.CreateBook(CreateBookRequest(book=make_book(), book_id=uid()), timeout=10)


class SmallRecvLimitEnvTest(harness.SharedServerTestCase):
    server_env = {"BOOKS_MAX_RECV_BYTES": "2048"}

    def test_limit_applies(self):
        big = make_book(display_name="y" * 4096)
        self.expect_error(lambda: self.stub.CreateBook(CreateBookRequest(book=big, book_id=uid()),
                                                       timeout=10),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, details=False)
        created = self.stub.CreateBook(CreateBookRequest(book=make_book(), book_id=uid()),
                                       timeout=10)
        self.assertEqual(self.stub.GetBook(GetBookRequest(name=created.name), timeout=10), created)


if __name__ == "__main__":
    unittest.main()
