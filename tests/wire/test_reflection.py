"""Wire tests: server reflection, grpc.reflection.v1 and grpc.reflection.v1alpha (bidirectional
streams), with Python stubs generated at test time from Debian's grpc-proto reflection.proto files.

Every test runs once per protocol version. The centrepiece is a client that knows nothing but the
reflection protocol: it asks for the file that defines books.v1.BooksService, loads what it gets
(asking for any missing import on the same stream) into a fresh DescriptorPool, builds the
request and response classes from it and calls ListBooks and CreateBook through a generic
channel.unary_unary."""

import importlib
import queue
import unittest
import uuid

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

import harness

HOSTED = {"books.v1.BooksService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection"}
BOOKS_FILE = "books/v1/books.proto"
FIELD_BEHAVIOR_FILE = "google/api/field_behavior.proto"
RESOURCE_FILE = "google/api/resource.proto"
HEALTH_FILE = "grpc/health/v1/health.proto"
STATUS_FILE = "google/rpc/status.proto"
ERROR_DETAILS_FILE = "google/rpc/error_details.proto"
# google.rpc.Code values, as the protocol's ErrorResponse.error_code uses them.
CODE_INVALID_ARGUMENT = 3
CODE_NOT_FOUND = 5
CALL_TIMEOUT_S = 30

_END = object()


def message_class(desc):
    """The message class for a descriptor from any pool (protobuf >= 4.22 has GetMessageClass;
    Debian 12's 4.21 has MessageFactory.GetPrototype)."""
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def file_of(desc):
    """The FileDescriptor that defines a descriptor (methods and enum values have no .file)."""
    if hasattr(desc, "containing_service"):
        return desc.containing_service.file
    if hasattr(desc, "file"):
        return desc.file
    return desc.type.file   # an enum value


class Stream:
    """One ServerReflectionInfo call fed from a queue, so requests can depend on earlier answers."""

    def __init__(self, stub):
        self._q = queue.Queue()
        self.call = stub.ServerReflectionInfo(self._requests(), timeout=CALL_TIMEOUT_S * 2)

    def _requests(self):
        while True:
            item = self._q.get()
            if item is _END:
                return
            yield item

    def ask(self, request):
        self._q.put(request)
        return next(self.call)

    def finish(self):
        """Half-closes; returns (responses after that, the call's status code)."""
        self._q.put(_END)
        rest = list(self.call)
        return rest, self.call.code()


class ReflectionClient:
    """A client that knows the reflection protocol and nothing about the server's API."""

    def __init__(self, stream, pb2):
        self.stream = stream
        self.pb2 = pb2
        self.pool = descriptor_pool.DescriptorPool()   # fresh: not the stubs' default pool
        self.raw = {}        # file name -> serialized FileDescriptorProto, as received
        self.loaded = set()  # file names added to self.pool
        self.fetched = []    # files asked for by name because a response lacked them

    def files_of(self, response):
        """The files of a FileDescriptorResponse as {name: FileDescriptorProto}; remembers them."""
        which = response.WhichOneof("message_response")
        if which != "file_descriptor_response":
            raise AssertionError("want a file_descriptor_response, got %s: %s" % (which,
                                                                                   response))
        out = {}
        for raw in response.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            out[fdp.name] = fdp
            self.raw.setdefault(fdp.name, raw)
        return out

    def load(self, name):
        """Adds file `name` to the pool, its imports first; an import not received yet is asked
        for with file_by_filename on the same stream."""
        if name in self.loaded:
            return
        if name not in self.raw:
            self.fetched.append(name)
            files = self.files_of(self.stream.ask(self.pb2.ServerReflectionRequest(
                file_by_filename=name)))
            if name not in files:
                raise AssertionError("file_by_filename(%r) answered %s" % (name, sorted(files)))
        fdp = descriptor_pb2.FileDescriptorProto.FromString(self.raw[name])
        for dep in fdp.dependency:
            self.load(dep)
        self.pool.AddSerializedFile(self.raw[name])
        self.loaded.add(name)

    def file_containing_symbol(self, symbol):
        """Asks for the file defining `symbol`, loads it; returns every file received, by name."""
        files = self.files_of(self.stream.ask(self.pb2.ServerReflectionRequest(
            file_containing_symbol=symbol)))
        for name in files:
            self.load(name)
        return files


class _ReflectionTests:
    """The tests, for one protocol version (VERSION); mixed into a SharedServerTestCase."""

    VERSION = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pb2 = importlib.import_module("grpc.reflection.%s.reflection_pb2" % cls.VERSION)
        cls.pb2_grpc = importlib.import_module("grpc.reflection.%s.reflection_pb2_grpc" %
                                               cls.VERSION)
        cls.method = "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % cls.VERSION

    # -- helpers -------------------------------------------------------------------------------
    def req(self, **kw):
        if "file_containing_extension" in kw:
            t, n = kw["file_containing_extension"]
            kw["file_containing_extension"] = self.pb2.ExtensionRequest(containing_type=t,
                                                                        extension_number=n)
        return self.pb2.ServerReflectionRequest(**kw)

    def stream(self):
        s = Stream(self.pb2_grpc.ServerReflectionStub(self.channel))
        self.addCleanup(s.call.cancel)
        return s

    def ask_all(self, requests):
        """Sends all requests on one stream, half-closes, returns the responses (status OK)."""
        call = self.pb2_grpc.ServerReflectionStub(self.channel).ServerReflectionInfo(
            iter(list(requests)), timeout=CALL_TIMEOUT_S)
        out = list(call)
        self.assertEqual(call.code(), grpc.StatusCode.OK, call.details())
        return out

    def ask(self, request):
        out = self.ask_all([request])
        self.assertEqual(len(out), 1, out)
        return out[0]

    def file_names(self, resp):
        self.assertEqual(resp.WhichOneof("message_response"), "file_descriptor_response", resp)
        return [descriptor_pb2.FileDescriptorProto.FromString(b).name
                for b in resp.file_descriptor_response.file_descriptor_proto]

    def expect_error_response(self, request, code):
        resp = self.ask(request)
        self.assertEqual(resp.WhichOneof("message_response"), "error_response", resp)
        self.assertEqual(resp.error_response.error_code, code, resp)
        self.assertTrue(resp.error_response.error_message.strip(), resp)
        self.assertEqual(resp.original_request, request)
        return resp

    # -- tests ---------------------------------------------------------------------------------
    def test_list_services(self):
        resp = self.ask(self.req(list_services=""))
        self.assertEqual(resp.WhichOneof("message_response"), "list_services_response", resp)
        names = [s.name for s in resp.list_services_response.service]
        self.assertEqual(len(names), len(set(names)), names)
        self.assertEqual(set(names), HOSTED)
        # The value of list_services is not interpreted (the protocol says "*" or anything).
        resp = self.ask(self.req(list_services="*"))
        self.assertEqual({s.name for s in resp.list_services_response.service}, HOSTED)

    def test_file_containing_symbol(self):
        # symbol -> (file that defines it, how a fresh pool finds it)
        cases = {
            "books.v1.BooksService": (BOOKS_FILE, lambda p: p.FindServiceByName(
                "books.v1.BooksService")),
            "books.v1.BooksService.GetBook": (BOOKS_FILE, lambda p: p.FindServiceByName(
                "books.v1.BooksService").methods_by_name["GetBook"]),
            "books.v1.Book": (BOOKS_FILE, lambda p: p.FindMessageTypeByName("books.v1.Book")),
            "books.v1.CreateBookRequest": (BOOKS_FILE, lambda p: p.FindMessageTypeByName(
                "books.v1.CreateBookRequest")),
            "books.v1.Book.display_name": (BOOKS_FILE, lambda p: p.FindFieldByName(
                "books.v1.Book.display_name")),
            "books.v1.ListBooksResponse.next_page_token": (BOOKS_FILE, lambda p: p.FindFieldByName(
                "books.v1.ListBooksResponse.next_page_token")),
            # A nested enum and one of its values (C++ scoping: values are the enum's siblings).
            "grpc.health.v1.HealthCheckResponse.ServingStatus": (
                HEALTH_FILE, lambda p: p.FindEnumTypeByName(
                    "grpc.health.v1.HealthCheckResponse.ServingStatus")),
            "grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN": (
                HEALTH_FILE, lambda p: p.FindEnumTypeByName(
                    "grpc.health.v1.HealthCheckResponse.ServingStatus").values_by_name[
                        "SERVICE_UNKNOWN"]),
            # A top-level enum, a nested enum in another file, an extension.
            "google.api.FieldBehavior": (FIELD_BEHAVIOR_FILE, lambda p: p.FindEnumTypeByName(
                "google.api.FieldBehavior")),
            "google.api.ResourceDescriptor.History": (RESOURCE_FILE, lambda p: p.FindEnumTypeByName(
                "google.api.ResourceDescriptor.History")),
            "google.api.field_behavior": (FIELD_BEHAVIOR_FILE, lambda p: p.FindExtensionByName(
                "google.api.field_behavior")),
            # The reflection services describe themselves too.
            "grpc.reflection.%s.ServerReflection" % self.VERSION: (
                "grpc/reflection/%s/reflection.proto" % self.VERSION,
                lambda p: p.FindServiceByName("grpc.reflection.%s.ServerReflection" %
                                              self.VERSION)),
            "grpc.health.v1.Health.Watch": (HEALTH_FILE, lambda p: p.FindServiceByName(
                "grpc.health.v1.Health").methods_by_name["Watch"]),
        }
        for symbol, (want_file, find) in cases.items():
            with self.subTest(symbol=symbol):
                client = ReflectionClient(self.stream(), self.pb2)
                files = client.file_containing_symbol(symbol)
                self.assertIn(want_file, files, "file_containing_symbol(%r)" % symbol)
                found = find(client.pool)
                self.assertEqual(file_of(found).name, want_file)
                if not symbol.endswith("SERVICE_UNKNOWN"):   # values have no full_name
                    self.assertEqual(found.full_name, symbol)
                rest, code = client.stream.finish()
                self.assertEqual((rest, code), ([], grpc.StatusCode.OK))

    def test_client_built_from_reflection_calls_books_service(self):
        client = ReflectionClient(self.stream(), self.pb2)
        client.file_containing_symbol("books.v1.BooksService")
        service = client.pool.FindServiceByName("books.v1.BooksService")
        self.assertEqual(sorted(m.name for m in service.methods),
                         ["CreateBook", "GetBook", "ListBooks"])
        # Every import really came from the server: descriptor.proto and the google.api files.
        for name in ("google/protobuf/descriptor.proto", FIELD_BEHAVIOR_FILE, RESOURCE_FILE,
                     "google/api/annotations.proto", "google/api/client.proto"):
            self.assertIn(name, client.loaded)

        def unary(method_name):
            m = service.methods_by_name[method_name]
            req_cls, resp_cls = message_class(m.input_type), message_class(m.output_type)
            self.assertIsNot(req_cls.DESCRIPTOR.file.pool, descriptor_pool.Default())
            call = self.channel.unary_unary("/%s/%s" % (service.full_name, m.name),
                                            request_serializer=req_cls.SerializeToString,
                                            response_deserializer=resp_cls.FromString)
            return lambda body: call(json_format.ParseDict(body, req_cls()),
                                     timeout=CALL_TIMEOUT_S)

        book_id = "refl-%s-%s" % (self.VERSION, uuid.uuid4().hex[:10])
        created = unary("CreateBook")({"bookId": book_id, "book": {
            "displayName": "Reflected", "authors": ["Ann Author", "Bob Writer"],
            "publisher": "Mirror Press"}})
        self.assertEqual(created.DESCRIPTOR.full_name, "books.v1.Book")
        self.assertEqual(json_format.MessageToDict(created), {
            "name": "books/" + book_id, "displayName": "Reflected",
            "authors": ["Ann Author", "Bob Writer"], "publisher": "Mirror Press"})

        # ListBooks, walking every page, finds it.
        list_books, names, token = unary("ListBooks"), [], ""
        for _ in range(10000):
            page = list_books({"pageSize": 50, "pageToken": token})
            names.extend(b.name for b in page.books)
            token = page.next_page_token
            if not token:
                break
        self.assertIn("books/" + book_id, names)

        # GetBook through the dynamic classes, and an error through them.
        got = unary("GetBook")({"name": "books/" + book_id})
        self.assertEqual(got.display_name, "Reflected")
        self.expect_error(lambda: unary("GetBook")({"name": "books/" + book_id + "-no"}),
                          grpc.StatusCode.NOT_FOUND, resource_name="books/" + book_id + "-no")

        # The compiled stubs see the same book.
        self.assertBookEqual(self.stub.GetBook(harness.GetBookRequest(name="books/" + book_id),
                                               timeout=CALL_TIMEOUT_S),
                             harness.make_book("Reflected", ["Ann Author", "Bob Writer"],
                                               "Mirror Press", name="books/" + book_id))
        rest, code = client.stream.finish()
        self.assertEqual((rest, code), ([], grpc.StatusCode.OK))

    def test_error_details_decoded_through_reflection(self):
        """The error trailer (grpc-status-details-bin: google.rpc.Status with ErrorInfo,
        BadRequest, ResourceInfo in Any) decoded with nothing but descriptors reflection sent."""
        client = ReflectionClient(self.stream(), self.pb2)
        for symbol in ("google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.BadRequest",
                       "google.rpc.ResourceInfo", "google.rpc.BadRequest.FieldViolation"):
            with self.subTest(symbol=symbol):
                want = STATUS_FILE if symbol == "google.rpc.Status" else ERROR_DETAILS_FILE
                self.assertIn(want, client.file_containing_symbol(symbol))
                self.assertEqual(client.pool.FindMessageTypeByName(symbol).file.name, want)
        for name, imports in ((STATUS_FILE, "google/protobuf/any.proto"),
                              (ERROR_DETAILS_FILE, "google/protobuf/duration.proto")):
            with self.subTest(file=name):
                names = self.file_names(self.ask(self.req(file_by_filename=name)))
                self.assertEqual(names[0], name)
                self.assertIn(imports, names)
        client.file_containing_symbol("books.v1.BooksService")
        service = client.pool.FindServiceByName("books.v1.BooksService")
        status_cls = message_class(client.pool.FindMessageTypeByName("google.rpc.Status"))
        self.assertIsNot(status_cls.DESCRIPTOR.file.pool, descriptor_pool.Default())

        def fail(method_name, body):
            """Calls through the reflected classes; returns (code, Status, {type: [detail]})."""
            m = service.methods_by_name[method_name]
            req_cls, resp_cls = message_class(m.input_type), message_class(m.output_type)
            call = self.channel.unary_unary("/%s/%s" % (service.full_name, m.name),
                                            request_serializer=req_cls.SerializeToString,
                                            response_deserializer=resp_cls.FromString)
            with self.assertRaises(grpc.RpcError) as cm:
                call(json_format.ParseDict(body, req_cls()), timeout=CALL_TIMEOUT_S)
            raw = [v for k, v in cm.exception.trailing_metadata() or ()
                   if k == "grpc-status-details-bin"]
            self.assertEqual(len(raw), 1, cm.exception.trailing_metadata())
            status = status_cls.FromString(raw[0])
            details = {}
            for any_msg in status.details:
                prefix, _, type_name = any_msg.type_url.rpartition("/")
                self.assertEqual(prefix, "type.googleapis.com", any_msg.type_url)
                cls = message_class(client.pool.FindMessageTypeByName(type_name))
                details.setdefault(type_name, []).append(cls.FromString(any_msg.value))
            self.assertEqual(status.code, cm.exception.code().value[0])
            self.assertEqual(status.message, cm.exception.details())
            return cm.exception.code(), status, details

        missing = "books/refl-missing-%s" % uuid.uuid4().hex[:10]
        code, status, details = fail("GetBook", {"name": missing})
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(sorted(details), ["google.rpc.ErrorInfo", "google.rpc.ResourceInfo"])
        (info,), (res,) = details["google.rpc.ErrorInfo"], details["google.rpc.ResourceInfo"]
        self.assertEqual((info.reason, info.domain), ("BOOK_NOT_FOUND", "books.example.com"))
        self.assertEqual((res.resource_type, res.resource_name),
                         ("books.example.com/Book", missing))
        self.assertIn(missing, status.message)

        code, status, details = fail("CreateBook", {"bookId": "Not_Valid", "book": {
            "displayName": "", "authors": ["Ann", ""]}})
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(sorted(details), ["google.rpc.BadRequest", "google.rpc.ErrorInfo"])
        fields = sorted(v.field for v in details["google.rpc.BadRequest"][0].field_violations)
        self.assertEqual(fields, ["book.authors[1]", "book.display_name", "book.publisher",
                                  "book_id"])
        for v in details["google.rpc.BadRequest"][0].field_violations:
            self.assertTrue(v.description.strip(), v)
        self.assertEqual(details["google.rpc.ErrorInfo"][0].domain, "books.example.com")
        rest, code = client.stream.finish()
        self.assertEqual((rest, code), ([], grpc.StatusCode.OK))

    def test_file_by_filename(self):
        resp = self.ask(self.req(file_by_filename=BOOKS_FILE))
        names = self.file_names(resp)
        self.assertIn(BOOKS_FILE, names)
        fdp = descriptor_pb2.FileDescriptorProto.FromString(
            resp.file_descriptor_response.file_descriptor_proto[names.index(BOOKS_FILE)])
        self.assertEqual(fdp.package, "books.v1")
        self.assertEqual([s.name for s in fdp.service], ["BooksService"])
        self.assertIn(FIELD_BEHAVIOR_FILE, fdp.dependency)

        resp = self.ask(self.req(file_by_filename=FIELD_BEHAVIOR_FILE))
        names = self.file_names(resp)
        self.assertIn(FIELD_BEHAVIOR_FILE, names)
        fdp = descriptor_pb2.FileDescriptorProto.FromString(
            resp.file_descriptor_response.file_descriptor_proto[names.index(FIELD_BEHAVIOR_FILE)])
        self.assertEqual(fdp.package, "google.api")
        self.assertEqual([(e.name, e.number, e.extendee) for e in fdp.extension],
                         [("field_behavior", 1052, ".google.protobuf.FieldOptions")])

        # Both load into a fresh pool through a client that fetches what is missing.
        client = ReflectionClient(self.stream(), self.pb2)
        client.load(BOOKS_FILE)
        self.assertEqual(client.pool.FindFileByName(BOOKS_FILE).package, "books.v1")
        self.assertIn(FIELD_BEHAVIOR_FILE, client.loaded)

    def test_unknown_names_are_not_found(self):
        cases = [
            self.req(file_by_filename="no/such/file.proto"),
            self.req(file_by_filename="books/v1/books.proto "),
            self.req(file_by_filename="books/v1/Books.proto"),
            self.req(file_by_filename=""),
            self.req(file_containing_symbol="no.such.Symbol"),
            self.req(file_containing_symbol="books.v1.NoSuchMessage"),
            self.req(file_containing_symbol="books.v1.BooksService.NoSuchMethod"),
            self.req(file_containing_symbol="books.v1.Book.no_such_field"),
            self.req(file_containing_symbol="books.v1.books"),
            self.req(file_containing_symbol="books"),
            self.req(file_containing_symbol=""),
            self.req(file_containing_symbol="x" * 5000),
            self.req(file_containing_symbol='"},{\\u0000\u00e9'),
            self.req(file_containing_extension=("google.protobuf.FieldOptions", 99999)),
            self.req(file_containing_extension=("no.such.Type", 1052)),
            self.req(all_extension_numbers_of_type="no.such.Type"),
        ]
        for request in cases:
            with self.subTest(request=str(request)[:80]):
                self.expect_error_response(request, CODE_NOT_FOUND)

    def test_empty_request_is_invalid_argument(self):
        for request in (self.req(), self.req(host="localhost")):
            with self.subTest(request=str(request)):
                self.expect_error_response(request, CODE_INVALID_ARGUMENT)

    def test_all_extension_numbers_of_type(self):
        resp = self.ask(self.req(all_extension_numbers_of_type="google.protobuf.FieldOptions"))
        self.assertEqual(resp.WhichOneof("message_response"), "all_extension_numbers_response",
                         resp)
        ext = resp.all_extension_numbers_response
        self.assertEqual(ext.base_type_name, "google.protobuf.FieldOptions")
        numbers = list(ext.extension_number)
        self.assertEqual(len(numbers), len(set(numbers)), numbers)
        self.assertTrue({1052, 1055} <= set(numbers), numbers)
        # google.api.resource (1053) extends MessageOptions, not FieldOptions.
        resp = self.ask(self.req(all_extension_numbers_of_type="google.protobuf.MessageOptions"))
        self.assertIn(1053, resp.all_extension_numbers_response.extension_number)
        # A message nothing extends: an empty list, not an error.
        resp = self.ask(self.req(all_extension_numbers_of_type="books.v1.Book"))
        self.assertEqual(resp.WhichOneof("message_response"), "all_extension_numbers_response",
                         resp)
        self.assertEqual(list(resp.all_extension_numbers_response.extension_number), [])

    def test_file_containing_extension(self):
        for (containing, number), want in (
                (("google.protobuf.FieldOptions", 1052), FIELD_BEHAVIOR_FILE),
                (("google.protobuf.FieldOptions", 1055), RESOURCE_FILE),
                (("google.protobuf.MessageOptions", 1053), RESOURCE_FILE)):
            with self.subTest(containing=containing, number=number):
                client = ReflectionClient(self.stream(), self.pb2)
                files = client.files_of(client.stream.ask(self.req(
                    file_containing_extension=(containing, number))))
                self.assertIn(want, files)
                for name in files:
                    client.load(name)
                exts = client.pool.FindFileByName(want).extensions_by_name.values()
                self.assertIn((number, "google.protobuf." + containing.split(".")[-1]),
                              [(e.number, e.containing_type.full_name) for e in exts])
                self.assertEqual(client.stream.finish(), ([], grpc.StatusCode.OK))

    def test_original_request_echoed(self):
        requests = [
            self.req(host="books.example.com", list_services=""),
            self.req(file_by_filename=BOOKS_FILE),
            self.req(host="h", file_containing_symbol="books.v1.Book"),
            self.req(file_containing_extension=("google.protobuf.FieldOptions", 1052)),
            self.req(all_extension_numbers_of_type="google.protobuf.FieldOptions"),
            self.req(file_by_filename="no/such.proto"),
            self.req(host="only-a-host"),
        ]
        for request in requests:
            with self.subTest(request=str(request)[:80]):
                resp = self.ask(request)
                self.assertTrue(resp.HasField("original_request"), resp)
                self.assertEqual(resp.original_request, request)

    def test_many_requests_on_one_stream_answered_in_order(self):
        kinds = [
            (self.req(list_services=""), "list_services_response"),
            (self.req(file_containing_symbol="books.v1.BooksService"), "file_descriptor_response"),
            (self.req(file_by_filename="no/such.proto"), "error_response"),
            (self.req(all_extension_numbers_of_type="google.protobuf.FieldOptions"),
             "all_extension_numbers_response"),
            (self.req(file_by_filename=FIELD_BEHAVIOR_FILE), "file_descriptor_response"),
            (self.req(), "error_response"),
            (self.req(file_containing_extension=("google.protobuf.FieldOptions", 1055)),
             "file_descriptor_response"),
        ]
        sent = [kinds[i % len(kinds)] for i in range(40)]
        # All at once, then half-close.
        responses = self.ask_all(r for r, _ in sent)
        self.assertEqual(len(responses), len(sent))
        for i, ((request, kind), resp) in enumerate(zip(sent, responses)):
            self.assertEqual(resp.original_request, request, "response %d out of order" % i)
            self.assertEqual(resp.WhichOneof("message_response"), kind, "response %d" % i)
        # One at a time, each waiting for the previous answer.
        s = self.stream()
        for i, (request, kind) in enumerate(sent[:10]):
            resp = s.ask(request)
            self.assertEqual(resp.original_request, request, "response %d" % i)
            self.assertEqual(resp.WhichOneof("message_response"), kind, "response %d" % i)
        self.assertEqual(s.finish(), ([], grpc.StatusCode.OK))

    def test_garbage_message_ends_the_stream(self):
        raw = self.channel.stream_stream(self.method, request_serializer=harness.identity,
                                         response_deserializer=harness.identity)
        good = self.req(list_services="").SerializeToString()
        cases = {
            "bad tag varint": [b"\xff\xff\xff\xff\xff\xff"],
            "truncated string": [b"\x1a\x05ab"],
            "length beyond the message": [b"\x3a\xff\xff\xff\xff\x0f"],
            "invalid UTF-8 in a string": [b"\x1a\x02\xff\xfe"],
            "wrong wire type for a string": [b"\x18\x01"],
            "garbage after a good message": [good, b"\xff\xff\xff\xff\xff"],
            "garbage between good messages": [good, b"\x22\x80", good],
        }
        for label, messages in cases.items():
            with self.subTest(case=label):
                call = raw(iter(messages), timeout=CALL_TIMEOUT_S)
                got = []
                try:
                    for m in call:
                        got.append(m)
                except grpc.RpcError as e:
                    code = e.code()
                else:
                    code = grpc.StatusCode.OK
                self.assertNotEqual(code, grpc.StatusCode.OK,
                                    "a garbage message was accepted (%d responses)" % len(got))
                self.assertNotIn(code, (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE),
                                 call.details())
                # Whatever was answered before the garbage is a valid response.
                for m in got:
                    self.pb2.ServerReflectionResponse.FromString(m)
                self.server.check_alive()
        # The server keeps serving: reflection, health and the API.
        self.assertEqual(self.ask(self.req(list_services="")).WhichOneof("message_response"),
                         "list_services_response")
        self.assertEqual(self.server.health(self.channel).Check(
            harness.health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S).status,
            harness.health_pb2.HealthCheckResponse.SERVING)
        self.expect_code(lambda: self.stub.GetBook(harness.GetBookRequest(name="books/none"),
                                                   timeout=CALL_TIMEOUT_S),
                         grpc.StatusCode.NOT_FOUND)


class ReflectionV1Test(_ReflectionTests, harness.SharedServerTestCase):
    VERSION = "v1"


class ReflectionV1alphaTest(_ReflectionTests, harness.SharedServerTestCase):
    VERSION = "v1alpha"


if __name__ == "__main__":
    unittest.main()
