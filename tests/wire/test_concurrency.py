"""Wire tests: many clients at once. Eight threads, each with its own channel, create books
concurrently while readers page through the collection; afterwards every book is there exactly
once, whole, and every walk taken during the writes was in order without repeats."""

import threading
import unittest

import grpc

import harness
from harness import CreateBookRequest, GetBookRequest, ListBooksRequest, make_book

WRITERS = 8
PER_WRITER = 200


def book_for(w, i):
    return make_book("Title %d/%d \u00e9\U0001F4DA" % (w, i), ["Author %d" % w, "Co %d" % i],
                     "Publisher %d" % w)


class ConcurrentCreateTest(harness.SharedServerTestCase):

    def test_concurrent_creators_lose_nothing(self):
        errors = []
        start = threading.Barrier(WRITERS + 2)
        writers_done = threading.Event()
        walks = []

        def writer(w):
            ch = harness.insecure_channel(self.server.port)
            try:
                stub = harness.books_pb2_grpc.BooksServiceStub(ch)
                start.wait(60)
                for i in range(PER_WRITER):
                    book_id = "w%d-%04d" % (w, i)
                    got = stub.CreateBook(CreateBookRequest(book=book_for(w, i), book_id=book_id),
                                          timeout=60)
                    if got.name != "books/" + book_id:
                        errors.append("writer %d: created %r as %r" % (w, book_id, got.name))
                    if i % 50 == 0:
                        back = stub.GetBook(GetBookRequest(name=got.name), timeout=60)
                        if back != got:
                            errors.append("writer %d: GetBook(%s) = %r" % (w, got.name, back))
            except Exception as e:  # noqa: BLE001 -- any failure is reported by the main thread
                errors.append("writer %d: %r" % (w, e))
            finally:
                ch.close()

        def reader(r):
            # Walks the collection again and again while writers run: each walk must be in strict
            # order (no book twice, no step back), whatever is inserted meanwhile.
            ch = harness.insecure_channel(self.server.port)
            try:
                stub = harness.books_pb2_grpc.BooksServiceStub(ch)
                start.wait(60)
                while True:
                    last_walk = writers_done.is_set()
                    names, token = [], ""
                    while True:
                        resp = stub.ListBooks(ListBooksRequest(page_size=37 + r, page_token=token),
                                              timeout=60)
                        names.extend(b.name for b in resp.books)
                        token = resp.next_page_token
                        if not token:
                            break
                    if any(a >= b for a, b in zip(names, names[1:])):
                        errors.append("reader %d: walk not strictly increasing" % r)
                    walks.append(len(names))
                    if last_walk:
                        return
            except Exception as e:  # noqa: BLE001
                errors.append("reader %d: %r" % (r, e))
            finally:
                ch.close()

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        readers = [threading.Thread(target=reader, args=(r,)) for r in range(2)]
        for t in threads + readers:
            t.start()
        for t in threads:
            t.join(600)
        writers_done.set()
        for t in readers:
            t.join(600)
        self.assertFalse(any(t.is_alive() for t in threads + readers), "client threads hung")
        self.assertEqual(errors, [])
        self.assertTrue(walks)

        books, _ = harness.list_all(self.stub, page_size=1000)
        self.assertEqual(len(books), len({b.name for b in books}), "duplicates in ListBooks")
        books = [b for b in books if b.name.startswith("books/w")]   # not the race-* books
        names = [b.name for b in books]
        want = sorted("books/w%d-%04d" % (w, i) for w in range(WRITERS) for i in range(PER_WRITER))
        self.assertEqual(len(names), len(set(names)), "duplicates in ListBooks")
        self.assertEqual(sorted(set(want) - set(names)), [], "books lost")
        self.assertEqual(names, want)
        for b in books:
            w, i = b.name[len("books/w"):].split("-")
            want_book = book_for(int(w), int(i))
            want_book.name = b.name
            self.assertEqual(b, want_book)

    def test_concurrent_creates_of_one_id_exactly_one_wins(self):
        results = []
        lock = threading.Lock()
        start = threading.Barrier(WRITERS)

        def racer(w):
            ch = harness.insecure_channel(self.server.port)
            try:
                stub = harness.books_pb2_grpc.BooksServiceStub(ch)
                start.wait(60)
                for i in range(20):
                    try:
                        stub.CreateBook(CreateBookRequest(book=book_for(w, i),
                                                          book_id="race-%02d" % i), timeout=60)
                        code = "OK"
                    except grpc.RpcError as e:
                        code = e.code().name
                    with lock:
                        results.append((i, w, code))
            finally:
                ch.close()

        threads = [threading.Thread(target=racer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assertEqual(len(results), 20 * WRITERS)
        for i in range(20):
            codes = [c for (j, _, c) in results if j == i]
            self.assertEqual(codes.count("OK"), 1, "race-%02d: %s" % (i, codes))
            self.assertEqual(codes.count("ALREADY_EXISTS"), WRITERS - 1, codes)
            winner = [w for (j, w, c) in results if j == i and c == "OK"][0]
            got = self.stub.GetBook(GetBookRequest(name="books/race-%02d" % i), timeout=10)
            want = book_for(winner, i)
            want.name = "books/race-%02d" % i
            self.assertEqual(got, want, "the stored book is not the winner's")


if __name__ == "__main__":
    unittest.main()
