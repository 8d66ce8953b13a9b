"""The self-test of tests/support/fsfront.py, the fault-injecting front for the Firestore emulator:
each fault through a Python client built from the same generated stubs, against a real emulator
(one for the module), and books-server's firestore: store through the front once.

  - forwarding: documents, NOT_FOUND with the emulator's message, a RunQuery stream, metadata
    passed on (checked through a second front), a foreign document planted with fsdocs;
  - deny: PERMISSION_DENIED / UNAUTHENTICATED with production's message, then forwarded again;
  - throttle: about `share` of the writes refused, the same ones for the same seed, reads spared;
  - fail_first_reads: the first attempt of each distinct read fails, its retry is served;
    fail_reads(n): the next n;
  - size: a request of 10,485,761 bytes is refused with production's message and not forwarded,
    one of exactly 10,485,760 is split and applied;
  - split: a 6 MiB BatchWrite in parts of at most 4 MiB, each Write's bytes intact, every document
    written, statuses merged in write order (a taken name in the second part);
  - Commit over 4 MiB: refused by the emulator by default, written with commit_over_limit="split";
  - apply_then_drop: the client gets UNAVAILABLE (or DEADLINE_EXCEEDED at its deadline), the
    document is written;
  - delay, stats and reset_stats.
"""

import os
import sys
import threading
import time
import unittest
import uuid

import grpc

import harness

sys.path.insert(0, os.path.join(harness.SOURCE_DIR, "tests", "support"))
import fsdocs  # noqa: E402
import fsemulator  # noqa: E402
import fsfront  # noqa: E402

STUBS = fsfront.firestore_stubs()
fs = STUBS.firestore_pb2
SC = grpc.StatusCode

PROJECT = "fsfront-self"
DB = "projects/%s/databases/(default)" % PROJECT
DOCS = DB + "/documents"
METADATA = (("authorization", "Bearer owner"), ("google-cloud-resource-prefix", DB),
            ("x-goog-request-params", "project_id=%s&database_id=(default)" % PROJECT))
EMULATOR = None
_counter = [0]


def setUpModule():
    global EMULATOR
    EMULATOR = fsemulator.Emulator.start()


def tearDownModule():
    if EMULATOR:
        EMULATOR.stop()


def fresh_collection():
    _counter[0] += 1
    return "f%d_%d" % (os.getpid(), _counter[0])


def update(collection, doc_id, text="x", exists=None):
    w = fs.Write(update=fs.Document(name="%s/%s/%s" % (DOCS, collection, doc_id),
                                    fields={"text": fs.Value(string_value=text)}))
    if exists is not None:
        w.current_document.exists = exists
    return w


def batch_write(writes):
    return fs.BatchWriteRequest(database=DB, writes=list(writes))


def commit(writes):
    return fs.CommitRequest(database=DB, writes=list(writes))


def get_request(collection, doc_id):
    return fs.GetDocumentRequest(name="%s/%s/%s" % (DOCS, collection, doc_id))


def query(collection):
    return fs.RunQueryRequest(parent=DOCS, structured_query=fs.StructuredQuery(
        **{"from": [fs.StructuredQuery.CollectionSelector(collection_id=collection)]}))


def big_writes(collection, n, size, prefix="big"):
    """n writes of about `size` bytes each (the emulator takes a field of up to 1,048,487)."""
    return [update(collection, "%s-%02d" % (prefix, i), chr(ord("a") + i % 26) * size)
            for i in range(n)]


class FrontTestCase(unittest.TestCase):
    front_options = {}

    def setUp(self):
        self.front = fsfront.Front(**self.front_options)
        self.addCleanup(self.front.stop)
        self.front.start(EMULATOR.host)
        self.channel = grpc.insecure_channel(self.front.host, options=[
            ("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20)])
        self.addCleanup(self.channel.close)
        self.stub = STUBS.firestore_pb2_grpc.FirestoreStub(self.channel)
        self.collection = fresh_collection()

    def call(self, method, request, timeout=30):
        fn = getattr(self.stub, method)
        if method == "RunQuery":
            return list(fn(request, metadata=METADATA, timeout=timeout))
        return fn(request, metadata=METADATA, timeout=timeout)

    def refused(self, method, request, timeout=30):
        """The call's RpcError (fails the test when it succeeds)."""
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(method, request, timeout)
        return cm.exception

    def put(self, doc_id, text="x"):
        self.call("Commit", commit([update(self.collection, doc_id, text)]))

    def text_of(self, doc_id):
        return self.call("GetDocument", get_request(self.collection, doc_id)).fields[
            "text"].string_value


class ForwardingTest(FrontTestCase):

    def test_documents_errors_and_streams_are_forwarded(self):
        self.put("a", "alpha")
        self.put("b", "beta")
        self.assertEqual(self.text_of("a"), "alpha")
        e = self.refused("GetDocument", get_request(self.collection, "none"))
        self.assertEqual(e.code(), SC.NOT_FOUND)
        self.assertEqual(e.details(), "Document (%s/%s/none) not found." % (DOCS, self.collection))
        names = [r.document.name for r in self.call("RunQuery", query(self.collection))
                 if r.HasField("document")]
        self.assertEqual(names, ["%s/%s/%s" % (DOCS, self.collection, i) for i in ("a", "b")])
        st = self.front.stats()
        self.assertEqual(st["Commit"]["calls"], 2)
        self.assertEqual(st["Commit"]["codes"], {"OK": 2})
        self.assertEqual(st["GetDocument"]["codes"], {"OK": 1, "NOT_FOUND": 1})
        self.assertEqual(st["RunQuery"]["codes"], {"OK": 1})
        self.assertEqual(st["RunQuery"]["sizes"], [query(self.collection).ByteSize()])
        self.assertEqual(st["GetDocument"]["forwarded"], 2)
        self.assertEqual(self.front.calls(), 5)
        self.assertEqual(self.front.codes(), {"OK": 4, "NOT_FOUND": 1})
        self.front.reset_stats()
        self.assertEqual(self.front.calls(), 0)
        self.assertEqual(self.front.max_request_size(), 0)
        self.assertEqual(set(self.front.faults().values()), {0})

    def test_metadata_is_passed_on(self):
        # A second front behind the first sees what the first passed on.
        behind = fsfront.Front()
        self.addCleanup(behind.stop)
        behind.start(EMULATOR.host)
        ahead = fsfront.Front()
        self.addCleanup(ahead.stop)
        with grpc.insecure_channel(ahead.start(behind.host),
                                   options=[("grpc.enable_http_proxy", 0)]) as ch:
            stub = STUBS.firestore_pb2_grpc.FirestoreStub(ch)
            stub.Commit(commit([update(self.collection, "m")]), metadata=METADATA, timeout=30)
            list(stub.RunQuery(query(self.collection), metadata=METADATA, timeout=30))
        for method in ("Commit", "RunQuery"):
            md = behind.last_metadata(method)
            for key, value in METADATA:
                self.assertEqual(md.get(key), value, (method, md))
            self.assertEqual(md, ahead.last_metadata(method))
        self.assertIsNone(behind.last_metadata("GetDocument"))

    def test_a_planted_foreign_document_reads_back(self):
        fsdocs.put_document(EMULATOR.host, PROJECT, self.collection, "odd",
                            {"display_name": "T", "authors": 7, "publisher": None,
                             "tags": ["a", 1, True], "raw": fsdocs.Raw({"doubleValue": 1.5})})
        d = self.call("GetDocument", get_request(self.collection, "odd"))
        self.assertEqual(d.fields["authors"].integer_value, 7)
        self.assertEqual(d.fields["display_name"].string_value, "T")
        self.assertEqual(d.fields["raw"].double_value, 1.5)
        self.assertEqual(fsdocs.get_document(EMULATOR.host, PROJECT, self.collection, "odd")[
            "fields"]["authors"], {"integerValue": "7"})
        fsdocs.delete_document(EMULATOR.host, PROJECT, self.collection, "odd")
        self.assertIsNone(fsdocs.get_document(EMULATOR.host, PROJECT, self.collection, "odd"))

    def test_other_methods_are_unimplemented(self):
        fn = self.channel.unary_unary("/google.firestore.v1.Firestore/ListDocuments")
        with self.assertRaises(grpc.RpcError) as cm:
            fn(b"", timeout=10)
        self.assertEqual(cm.exception.code(), SC.UNIMPLEMENTED)


class DenyTest(FrontTestCase):

    def test_denied_then_forwarded_again(self):
        self.put("d", "before")
        self.front.deny(1.0)
        t0 = time.monotonic()
        for method, req in (("GetDocument", get_request(self.collection, "d")),
                            ("RunQuery", query(self.collection)),
                            ("Commit", commit([update(self.collection, "d", "during")])),
                            ("BatchWrite", batch_write([update(self.collection, "d", "during")]))):
            e = self.refused(method, req)
            self.assertEqual((e.code(), e.details()),
                             (SC.PERMISSION_DENIED, "Missing or insufficient permissions."))
        self.assertLess(time.monotonic() - t0, 1.0, "the checks outlasted the window")
        harness.wait_for(lambda: time.monotonic() - t0 > 1.0, timeout=5, what="the window's end")
        self.assertEqual(self.text_of("d"), "before")  # nothing denied was applied
        self.put("d", "after")
        self.assertEqual(self.text_of("d"), "after")
        self.assertEqual(self.front.faults()["denied"], 4)
        self.assertEqual(self.front.codes()["PERMISSION_DENIED"], 4)
        self.assertEqual(self.front.stats()["GetDocument"]["forwarded"], 2)

    def test_unauthenticated_and_clear(self):
        self.front.deny(None, code=SC.UNAUTHENTICATED, methods="GetDocument")
        e = self.refused("GetDocument", get_request(self.collection, "x"))
        self.assertEqual(e.code(), SC.UNAUTHENTICATED)
        self.assertTrue(e.details().startswith("Request had invalid authentication credentials."))
        self.put("x")  # only GetDocument is denied
        self.front.clear()
        self.assertEqual(self.text_of("x"), "x")


class ThrottleTest(FrontTestCase):
    N = 120

    def pattern(self, seed, share=0.3):
        """Which of N writes (alternately Commit and BatchWrite) went through; checks the stats."""
        self.front.reset_stats()
        self.front.throttle(share, 60, seed=seed)
        out = []
        for i in range(self.N):
            method = "BatchWrite" if i % 2 else "Commit"
            req = (batch_write if i % 2 else commit)([update(self.collection, "t%03d" % i)])
            try:
                self.call(method, req)
                out.append(True)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), SC.RESOURCE_EXHAUSTED)
                self.assertEqual(e.details(), fsfront.MESSAGES[SC.RESOURCE_EXHAUSTED])
                out.append(False)
        self.front.clear()
        st = self.front.stats()
        self.assertEqual(self.front.faults()["throttled"], out.count(False))
        want = {"OK": out.count(True), "RESOURCE_EXHAUSTED": out.count(False)}
        self.assertEqual(self.front.codes(), {k: v for k, v in want.items() if v})
        # A refused write was not forwarded.
        self.assertEqual(st["Commit"]["forwarded"] + st["BatchWrite"]["forwarded"],
                         out.count(True))
        return out

    def test_share_is_about_right_and_seeded(self):
        first = self.pattern(seed=7)
        refused = first.count(False)
        self.assertTrue(0.15 * self.N <= refused <= 0.45 * self.N, refused)
        self.assertEqual(self.pattern(seed=7), first)
        self.assertNotEqual(self.pattern(seed=8), first)
        self.assertEqual(self.pattern(seed=1, share=1.0), [False] * self.N)
        self.assertEqual(self.pattern(seed=1, share=0.0), [True] * self.N)

    def test_reads_are_spared_and_the_window_ends(self):
        self.put("r")
        self.front.throttle(1.0, 0.5)
        e = self.refused("Commit", commit([update(self.collection, "r", "no")]))
        self.assertEqual(e.code(), SC.RESOURCE_EXHAUSTED)
        self.assertEqual(self.text_of("r"), "x")  # reads: forwarded
        time.sleep(0.6)
        self.put("r", "yes")
        self.assertEqual(self.text_of("r"), "yes")


class FailReadsTest(FrontTestCase):

    def test_first_attempt_of_each_read_fails(self):
        self.put("a")
        self.put("b")
        self.front.fail_first_reads()
        for req in (get_request(self.collection, "a"), get_request(self.collection, "b")):
            e = self.refused("GetDocument", req)
            self.assertEqual((e.code(), e.details()),
                             (SC.UNAVAILABLE, "The service is currently unavailable."))
            self.assertEqual(self.call("GetDocument", req).fields["text"].string_value, "x")
            self.assertEqual(self.call("GetDocument", req).fields["text"].string_value, "x")
        q = query(self.collection)
        self.assertEqual(self.refused("RunQuery", q).code(), SC.UNAVAILABLE)
        self.assertEqual(len([r for r in self.call("RunQuery", q) if r.HasField("document")]), 2)
        self.put("c")  # writes: never
        self.assertEqual(self.front.faults()["failed_reads"], 3)
        self.assertEqual(self.front.stats()["GetDocument"]["codes"], {"UNAVAILABLE": 2, "OK": 4})
        self.front.fail_first_reads(code=SC.DEADLINE_EXCEEDED)  # forgets what it saw
        self.assertEqual(self.refused("GetDocument", get_request(self.collection, "a")).code(),
                         SC.DEADLINE_EXCEEDED)

    def test_the_next_n_reads_fail(self):
        self.put("a")
        self.front.fail_reads(2, code=SC.ABORTED)
        req = get_request(self.collection, "a")
        for _ in range(2):
            self.assertEqual(self.refused("GetDocument", req).code(), SC.ABORTED)
        self.assertEqual(self.text_of("a"), "x")
        self.front.fail_reads(1, methods="RunQuery")
        self.assertEqual(self.text_of("a"), "x")
        self.assertEqual(self.refused("RunQuery", query(self.collection)).code(), SC.UNAVAILABLE)
        self.assertEqual(len(self.call("RunQuery", query(self.collection))), 1)


def sized_batch_write(collection, total, prefix):
    """A BatchWriteRequest of exactly `total` bytes: writes under 1 MB, the last one padded."""
    n = total // 1000000 + 1
    req = batch_write(big_writes(collection, n, total // n - 300, prefix))
    for _ in range(5):
        last = req.writes[-1].update.fields["text"]
        diff = total - req.ByteSize()
        if diff == 0:
            return req
        last.string_value = last.string_value + "z" * diff if diff > 0 else \
            last.string_value[:diff]
    raise AssertionError("could not make a request of %d bytes" % total)


class SizeLimitTest(FrontTestCase):

    def test_over_ten_mib_is_refused_exactly_as_production(self):
        req = sized_batch_write(self.collection, 10485761, "over")
        self.assertEqual(req.ByteSize(), 10485761)
        e = self.refused("BatchWrite", req, timeout=60)
        self.assertEqual((e.code(), e.details()), (
            SC.INVALID_ARGUMENT, "Request payload size exceeds the limit: 10485760 bytes."))
        st = self.front.stats()["BatchWrite"]
        self.assertEqual((st["forwarded"], st["max_size"], st["sizes"]), (0, 10485761, [10485761]))
        self.assertEqual(self.front.faults()["too_large"], 1)
        self.assertIsNone(fsdocs.get_document(EMULATOR.host, PROJECT, self.collection, "over-00"))

    def test_exactly_ten_mib_is_taken(self):
        req = sized_batch_write(self.collection, 10485760, "at")
        resp = self.call("BatchWrite", req, timeout=60)
        self.assertEqual([s.code for s in resp.status], [0] * len(req.writes))
        self.assertEqual(self.front.max_request_size("BatchWrite"), 10485760)
        self.assertEqual(self.front.faults()["split_parts"], 3)
        self.assertEqual(self.text_of("at-00"), req.writes[0].update.fields["text"].string_value)
        self.assertEqual(len(self.text_of("at-%02d" % (len(req.writes) - 1))),
                         len(req.writes[-1].update.fields["text"].string_value))


class SplitTest(FrontTestCase):

    def test_split_keeps_each_write_byte_for_byte(self):
        w = update("c", "u", "v" * 1000)
        unknown = b"\x32\x03abc"  # field 6 (update_transforms in the full API): not in the subset
        raw_write = w.SerializeToString() + unknown
        entry = b"\x12" + _varint(len(raw_write)) + raw_write
        head = fs.BatchWriteRequest(database=DB).SerializeToString()
        labels = b"\x1a\x08\x0a\x01k\x12\x03val"  # field 3, labels: {"k": "val"}
        data = head + entry * 10 + labels
        parts = fsfront.split_writes(data, 3500)
        self.assertEqual(len(parts), 4)
        kept = []
        for p in parts:
            self.assertLessEqual(len(p), 3500)
            fields = fsfront.top_level_fields(p)
            self.assertEqual(p[fields[0][1]:fields[0][2]], head)
            self.assertEqual(p[fields[1][1]:fields[1][2]], labels)  # head fields come first
            kept += [p[s:e] for number, s, e in fields if number == 2]
        self.assertEqual(kept, [entry] * 10)
        back = fs.BatchWriteRequest.FromString(parts[0])
        self.assertEqual(back.writes[0].SerializeToString(), raw_write)  # unknown field kept
        self.assertEqual(fsfront.split_writes(data, len(data)), [data])
        # A single write over the limit: a part of its own.
        self.assertEqual(len(fsfront.split_writes(head + entry * 3, 100)), 3)

    def test_commit_responses_merge(self):
        r1 = fs.CommitResponse(write_results=[fs.WriteResult()] * 2)
        r1.commit_time.seconds, r1.commit_time.nanos = 5, 7
        r2 = fs.CommitResponse(write_results=[fs.WriteResult()])
        r2.commit_time.seconds = 9
        merged = fs.CommitResponse.FromString(fsfront.merge_responses(
            "Commit", [r1.SerializeToString(), r2.SerializeToString()]))
        self.assertEqual(len(merged.write_results), 3)
        self.assertEqual((merged.commit_time.seconds, merged.commit_time.nanos), (9, 0))

    def test_six_mib_batch_write_is_split_and_applied(self):
        self.put("big-03", "taken")  # exists: false on it fails in the second part
        writes = big_writes(self.collection, 6, 1000000)
        writes[3].current_document.exists = False
        writes.append(update(self.collection, "small", "s"))
        req = batch_write(writes)
        self.assertGreater(req.ByteSize(), 6000000)
        resp = self.call("BatchWrite", req, timeout=60)
        self.assertEqual(len(resp.write_results), 7)
        self.assertEqual([s.code for s in resp.status],
                         [0, 0, 0, SC.ALREADY_EXISTS.value[0], 0, 0, 0])
        self.assertFalse(resp.write_results[3].HasField("update_time"))
        self.assertTrue(all(resp.write_results[i].HasField("update_time")
                            for i in (0, 1, 2, 4, 5, 6)))
        f = self.front.faults()
        self.assertEqual((f["split_calls"], f["split_parts"]), (1, 2))
        st = self.front.stats()["BatchWrite"]
        self.assertEqual((st["calls"], st["forwarded"], st["codes"], st["max_size"]),
                         (1, 2, {"OK": 1}, req.ByteSize()))
        for i, w in enumerate(writes):
            doc_id = w.update.name.rsplit("/", 1)[1]
            want = "taken" if i == 3 else w.update.fields["text"].string_value
            self.assertEqual(self.text_of(doc_id), want, doc_id)

    def test_the_threshold_is_the_emulators_limit(self):
        # 4,194,304 bytes: the emulator takes it whole; one byte more: split in two.
        for total, parts in ((4194304, 0), (4194305, 2)):
            self.front.reset_stats()
            req = sized_batch_write(self.collection, total, "t%d" % total)
            resp = self.call("BatchWrite", req, timeout=60)
            self.assertEqual([s.code for s in resp.status], [0] * len(req.writes))
            self.assertEqual(self.front.faults()["split_parts"], parts)
            self.assertEqual(self.front.max_request_size(), total)

    def test_commit_over_four_mib_is_refused_by_the_emulator(self):
        req = commit(big_writes(self.collection, 5, 1000000))
        e = self.refused("Commit", req, timeout=60)
        self.assertEqual(e.code(), SC.RESOURCE_EXHAUSTED)
        self.assertEqual(e.details(), "gRPC message exceeds maximum size 4194304: %d" %
                         req.ByteSize())
        self.assertEqual(self.front.faults()["split_calls"], 0)


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


class SplitCommitTest(FrontTestCase):
    front_options = {"commit_over_limit": "split"}

    def test_commit_over_four_mib_is_split_when_asked(self):
        req = commit(big_writes(self.collection, 5, 1000000))
        resp = self.call("Commit", req, timeout=60)
        self.assertEqual(len(resp.write_results), 5)
        self.assertTrue(resp.HasField("commit_time"))
        self.assertEqual(self.front.faults()["split_parts"], 2)
        self.assertEqual(self.text_of("big-04"), req.writes[4].update.fields["text"].string_value)


class DropTest(FrontTestCase):

    def test_write_applied_reply_lost(self):
        self.front.apply_then_drop()
        req = commit([update(self.collection, "lost", "made", exists=False)])
        e = self.refused("Commit", req)
        self.assertEqual((e.code(), e.details()), (SC.UNAVAILABLE, "Socket closed"))
        self.assertEqual(self.text_of("lost"), "made")
        # The retry meets the write the lost reply made.
        self.assertEqual(self.refused("Commit", req).code(), SC.ALREADY_EXISTS)
        self.assertEqual(self.front.faults()["dropped"], 1)
        self.assertEqual(self.front.stats()["Commit"]["codes"],
                         {"UNAVAILABLE": 1, "ALREADY_EXISTS": 1})

    def test_batch_write_dropped_at_the_deadline(self):
        self.front.apply_then_drop(2, methods="BatchWrite", code=SC.DEADLINE_EXCEEDED)
        for i in range(2):
            t0 = time.monotonic()
            e = self.refused("BatchWrite", batch_write([update(self.collection, "dl%d" % i)]),
                             timeout=0.8)
            self.assertEqual(e.code(), SC.DEADLINE_EXCEEDED)
            self.assertGreater(time.monotonic() - t0, 0.7)
            self.assertEqual(self.text_of("dl%d" % i), "x")
        resp = self.call("BatchWrite", batch_write([update(self.collection, "dl2")]))
        self.assertEqual([s.code for s in resp.status], [0])
        self.assertEqual(self.front.codes("BatchWrite"), {"DEADLINE_EXCEEDED": 2, "OK": 1})


class DelayTest(FrontTestCase):

    def test_delay(self):
        self.put("a")
        self.front.delay(400, methods="GetDocument")
        t0 = time.monotonic()
        self.text_of("a")
        self.assertGreaterEqual(time.monotonic() - t0, 0.39)
        e = self.refused("GetDocument", get_request(self.collection, "a"), timeout=0.1)
        self.assertEqual(e.code(), SC.DEADLINE_EXCEEDED)
        t0 = time.monotonic()
        self.put("b")  # not delayed
        self.assertLess(time.monotonic() - t0, 0.39)
        self.assertEqual(self.front.faults()["delayed"], 2)
        # The call whose deadline passed in the delay was not forwarded.
        harness.wait_for(lambda: sum(self.front.codes("GetDocument").values()) == 2, timeout=5,
                         what="the late call's end")
        self.assertEqual(self.front.codes("GetDocument"), {"OK": 1, "DEADLINE_EXCEEDED": 1})
        self.assertEqual(self.front.stats()["GetDocument"]["forwarded"], 1)


class ConcurrencyTest(FrontTestCase):

    def test_faults_switched_while_calls_are_in_flight(self):
        outcomes, stop = [], threading.Event()

        def writer(k):
            i = 0
            while not stop.is_set() and i < 400:
                try:
                    self.call("Commit", commit([update(self.collection, "c%d-%d" % (k, i))]))
                    outcomes.append("OK")
                except grpc.RpcError as e:
                    outcomes.append(e.code().name)
                i += 1

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        try:
            for _ in range(10):
                self.front.deny(None)
                time.sleep(0.05)
                self.front.clear("deny")
                self.front.throttle(0.5, None)
                time.sleep(0.05)
                self.front.clear()
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assertLessEqual(set(outcomes), {"OK", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"})
        self.assertEqual(len(set(outcomes)), 3, {k: outcomes.count(k) for k in set(outcomes)})
        codes = self.front.codes("Commit")
        self.assertEqual(sum(codes.values()), len(outcomes))
        self.assertEqual(codes, {k: outcomes.count(k) for k in set(outcomes)})
        self.assertEqual(self.front.stats()["Commit"]["forwarded"], outcomes.count("OK"))


class BooksServerThroughFrontTest(FrontTestCase, harness.WireTestCase):
    """books-server's C client through the front: its calls arrive, with its metadata, and a
    denied window is seen and recovered from."""

    def test_books_server_through_the_front(self):
        srv = self.start_server(env={
            "BOOKS_STORE": "firestore://%s?collection=%s" % (PROJECT, self.collection),
            "FIRESTORE_EMULATOR_HOST": self.front.host}, label="fs-front")
        stub = srv.stub()
        made = stub.CreateBook(harness.CreateBookRequest(
            book_id="via-front", book=harness.make_book("T", ["A"], "P")), timeout=30)
        self.assertEqual(stub.GetBook(harness.GetBookRequest(name=made.name), timeout=30), made)
        listed = stub.ListBooks(harness.ListBooksRequest(page_size=10), timeout=30)
        self.assertEqual([b.name for b in listed.books], [made.name])
        st = self.front.stats()
        self.assertGreaterEqual(st["BatchWrite"]["calls"] + st["Commit"]["calls"], 1)
        self.assertGreaterEqual(st["RunQuery"]["calls"], 1)
        for method in ("GetDocument", "RunQuery"):
            md = self.front.last_metadata(method)
            self.assertIsNotNone(md, method)
            self.assertEqual(md.get("authorization"), "Bearer owner")
            self.assertEqual(md.get("google-cloud-resource-prefix"), DB)
            self.assertEqual(md.get("x-goog-request-params"),
                             "project_id=%s&database_id=(default)" % PROJECT)
        # Denied: a create fails (reads may be served from the store's cache, writes never are).
        self.front.deny(None)
        with self.assertRaises(grpc.RpcError):
            stub.CreateBook(harness.CreateBookRequest(
                book_id="denied", book=harness.make_book("D", ["A"], "P")), timeout=5)
        self.assertGreaterEqual(self.front.faults()["denied"], 1)
        self.assertGreaterEqual(self.front.codes().get("PERMISSION_DENIED", 0), 1)
        self.front.clear()
        self.assertEqual(stub.GetBook(harness.GetBookRequest(name=made.name), timeout=30), made)
        fresh = stub.CreateBook(harness.CreateBookRequest(
            book_id="after-deny", book=harness.make_book("U", ["B"], "Q"),
            request_id=str(uuid.uuid4())), timeout=30)
        self.assertEqual(fresh.display_name, "U")


if __name__ == "__main__":
    unittest.main()
