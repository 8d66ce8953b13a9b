"""The Books API from Python: grpcio with messages and stubs generated from proto/ by
grpc_tools.protoc (run.sh). Usage: client.py GENERATED_DIR HOST:PORT. Checks what
tests/interop/test_interop.py lists; exits 1 on the first failed expectation."""

import sys

sys.path.insert(0, sys.argv[1])
import grpc
from books.v1 import books_pb2, books_pb2_grpc
from google.rpc import error_details_pb2, status_pb2

PASSED = 0


def fail(what):
    sys.exit("interop-python: FAILED: " + what)


def check(ok, what):
    global PASSED
    if not ok:
        fail(what)
    PASSED += 1


def rich_status(err):
    """google.rpc.Status from the grpc-status-details-bin trailer (AIP-193). Debian 12 has no
    grpcio-status package (grpc_status.rpc_status.from_call), so this is its few lines."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def details_of(status, cls):
    out = []
    for any_msg in status.details:
        if any_msg.Is(cls.DESCRIPTOR):
            m = cls()
            any_msg.Unpack(m)
            out.append(m)
    return out


target = sys.argv[2]
channel = grpc.insecure_channel(target)
stub = books_pb2_grpc.BooksServiceStub(channel)

# 1. Create.
ids = ["interop-%d" % i for i in range(5)]
created = []
for book_id in ids:
    book = books_pb2.Book(display_name="Title " + book_id, authors=["Ann", "Bo"],
                          publisher="Pub")
    got = stub.CreateBook(books_pb2.CreateBookRequest(book=book, book_id=book_id), timeout=10)
    if got.name != "books/" + book_id or got.display_name != book.display_name or \
            list(got.authors) != ["Ann", "Bo"] or got.publisher != "Pub":
        fail("CreateBook answered %s" % got)
    created.append(got)
check(True, "create")

# 2. Get.
got = stub.GetBook(books_pb2.GetBookRequest(name=created[0].name), timeout=10)
check(got == created[0], "GetBook answered %s, want %s" % (got, created[0]))

# 3. List every page.
seen, pages, token = [], 0, ""
while True:
    resp = stub.ListBooks(books_pb2.ListBooksRequest(page_size=2, page_token=token), timeout=10)
    pages += 1
    if len(resp.books) > 2:
        fail("a page of %d books for page_size 2" % len(resp.books))
    seen += [b.name for b in resp.books]
    token = resp.next_page_token
    if not token or pages > 100:
        break
want = sorted(b.name for b in created)
check(sorted(seen) == want and pages >= 3, "ListBooks gave %s in %d pages" % (seen, pages))

# 4. NOT_FOUND with google.rpc.ResourceInfo.
try:
    stub.GetBook(books_pb2.GetBookRequest(name="books/no-such-book"), timeout=10)
    fail("GetBook of a missing book succeeded")
except grpc.RpcError as err:
    status = rich_status(err)
    infos = details_of(status, error_details_pb2.ResourceInfo) if status else []
    check(err.code() == grpc.StatusCode.NOT_FOUND and status.code == 5 and
          any(i.resource_name == "books/no-such-book" and
              i.resource_type == "books.example.com/Book" for i in infos),
          "NOT_FOUND: %s %s" % (err.code(), status))

# 5. INVALID_ARGUMENT with google.rpc.BadRequest.
try:
    stub.CreateBook(books_pb2.CreateBookRequest(
        book=books_pb2.Book(authors=["Ann"], publisher="Pub"), book_id="no-title"), timeout=10)
    fail("CreateBook without a display_name succeeded")
except grpc.RpcError as err:
    status = rich_status(err)
    fields = [v.field for br in details_of(status, error_details_pb2.BadRequest)
              for v in br.field_violations] if status else []
    check(err.code() == grpc.StatusCode.INVALID_ARGUMENT and "book.display_name" in fields,
          "INVALID_ARGUMENT: %s %s" % (err.code(), status))

channel.close()
print("interop-python: %d passed, 0 failed" % PASSED)
