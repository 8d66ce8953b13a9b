"""Wire tests: trace-correlated per-RPC log lines.

With a Google Cloud project configured (--project or GOOGLE_CLOUD_PROJECT), a call carrying W3C
`traceparent` or Google's `x-cloud-trace-context` metadata is logged with Cloud Logging's special
fields "logging.googleapis.com/trace" ("projects/PROJECT/traces/TRACE_ID"), ".../spanId" (16
lowercase hex digits) and ".../trace_sampled" (a JSON boolean). traceparent wins over
x-cloud-trace-context. A malformed header adds no trace field and its value never reaches the log.
Without a project there are no trace fields at all.

Each call is a GetBook of a fresh name (NOT_FOUND): the name in the line's status_message finds
the call's own line."""

import json
import time
import unittest
import uuid

import grpc

import harness
import hostile
from harness import GetBookRequest

TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
SAMPLED = "logging.googleapis.com/trace_sampled"
TRACE_KEYS = (TRACE, SPAN, SAMPLED)
GET = "/books.v1.BooksService/GetBook"
PROJECT = "my-project"
LINE_TIMEOUT_S = 30.0
HOST = "127.0.0.1"
SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT",
              "EMERGENCY"}


def trace_id():
    """32 lowercase hex digits, fresh, with letters in it (so case matters) and not all zero."""
    while True:
        t = uuid.uuid4().hex
        if any(c in "abcdef" for c in t) and t.strip("0"):
            return t


def span_id():
    while True:
        s = uuid.uuid4().hex[:16]
        if any(c in "abcdef" for c in s) and s.strip("0"):
            return s


def strings_in(obj):
    """Every string (keys and values) in a parsed JSON value."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


class TraceLogMixin:
    """Helpers for a test case with a server in self.server (or passed explicitly)."""

    def get_with(self, server, metadata, channel=None):
        """A GetBook of a fresh name with `metadata` (NOT_FOUND); returns the name."""
        name = "books/t-" + uuid.uuid4().hex[:16]
        stub = server.stub(channel) if channel is not None else server.stub()
        self.expect_code(lambda: stub.GetBook(GetBookRequest(name=name), metadata=metadata,
                                              timeout=30), grpc.StatusCode.NOT_FOUND)
        return name

    def lines_for(self, server, names):
        """The GetBook line of each call (by name); polls until all are written."""
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while True:
            found = {}
            for line in server.rpc_lines(GET):
                for n in names:
                    if '"%s"' % n in line.get("status_message", ""):
                        self.assertNotIn(n, found, "two lines for one call: %s" % line)
                        found[n] = line
            if len(found) == len(names):
                return [found[n] for n in names]
            if time.monotonic() > deadline:
                self.fail("lines for %d of %d calls within %.0f s\n%s" % (
                    len(found), len(names), LINE_TIMEOUT_S, server.output_tail()))
            time.sleep(harness.POLL_INTERVAL_S)

    def line_with(self, server, metadata):
        return self.lines_for(server, [self.get_with(server, metadata)])[0]

    def assert_trace(self, line, trace, span, sampled, project=PROJECT):
        self.assertEqual(line.get("method"), GET, line)
        self.assertEqual(line.get("code"), "NOT_FOUND", line)
        self.assertEqual(line.get(TRACE), "projects/%s/traces/%s" % (project, trace), line)
        if span is None:
            self.assertNotIn(SPAN, line)
        else:
            self.assertEqual(line.get(SPAN), span, line)
        self.assertIs(line.get(SAMPLED), sampled, line)   # a JSON boolean, not a string

    def assert_no_trace(self, line):
        for key in TRACE_KEYS:
            self.assertNotIn(key, line)
        self.assertFalse([k for k in line if k.startswith("logging.googleapis.com/")], line)


class TraceWithProjectTest(TraceLogMixin, harness.SharedServerTestCase):
    server_args = ("--project", PROJECT)

    def test_traceparent(self):
        for flags, sampled in (("01", True), ("00", False), ("03", True), ("02", False),
                               ("ff", True), ("fe", False)):
            with self.subTest(flags=flags):
                t, s = trace_id(), span_id()
                line = self.line_with(self.server, [("traceparent", "00-%s-%s-%s" % (t, s,
                                                                                   flags))])
                self.assert_trace(line, t, s, sampled)

    def test_traceparent_later_version(self):
        # W3C Trace Context: a version above 00 is parsed by its first four fields; more fields
        # may follow after a dash.
        for version, tail in (("01", ""), ("cc", "-what-the-future-will-be-like"),
                              ("fe", "-x")):
            with self.subTest(version=version, tail=tail):
                t, s = trace_id(), span_id()
                line = self.line_with(self.server, [("traceparent", "%s-%s-%s-01%s" % (
                    version, t, s, tail))])
                self.assert_trace(line, t, s, True)

    def test_x_cloud_trace_context(self):
        cases = [
            # (header value built from the trace id, span id in the log, sampled)
            ("{t}/12345678901234567890;o=1", "ab54a98ceb1f0ad2", True),
            ("{t}/1;o=0", "0000000000000001", False),
            ("{t}/18446744073709551615;o=1", "ffffffffffffffff", True),
            ("{t}/255", "00000000000000ff", False),
            ("{T}/4096;o=1", "0000000000001000", True),   # the trace id is stored lowercase
            ("{t}", None, False),
            ("{t};o=1", None, True),
        ]
        for template, span, sampled in cases:
            with self.subTest(value=template):
                t = trace_id()
                value = template.format(t=t, T=t.upper())
                line = self.line_with(self.server, [("x-cloud-trace-context", value)])
                self.assert_trace(line, t, span, sampled)

    def test_traceparent_wins_over_x_cloud_trace_context(self):
        for order in ("traceparent first", "x-cloud-trace-context first"):
            with self.subTest(order=order):
                t1, s1, t2 = trace_id(), span_id(), trace_id()
                md = [("traceparent", "00-%s-%s-00" % (t1, s1)),
                      ("x-cloud-trace-context", "%s/77;o=1" % t2)]
                if order != "traceparent first":
                    md.reverse()
                line = self.line_with(self.server, md)
                self.assert_trace(line, t1, s1, False)
                self.assertNotIn(t2, json.dumps(line))

    def test_calls_without_trace_headers_have_no_trace_fields(self):
        line = self.line_with(self.server, [("x-other", "00-%s-%s-01" % (trace_id(),
                                                                         span_id()))])
        self.assert_no_trace(line)
        line = self.line_with(self.server, None)
        self.assert_no_trace(line)
        # Health checks (the harness's own calls) carry none either.
        for l in self.server.rpc_lines("/grpc.health.v1.Health/Check"):
            self.assert_no_trace(l)

    def test_malformed_headers_are_ignored_and_never_logged(self):

        def tp(fmt):
            # A fresh trace id in every case, so the log can be searched for it afterwards.
            t, s = trace_id(), span_id()
            return fmt.format(t=t, s=s, T=t.upper(), S=s.upper()), [t, s]

        cases = []
        for fmt in (
                "00-{t}-{s}",                         # no flags
                "00-{t}-{s}-1",                       # flags too short
                "00-{t}-{s}-011",                     # flags too long
                "00-{t}-{s}-01-extra",                # version 00 is exactly 55 characters
                "00-{t}-{s}-01 ",                     # trailing junk
                "00-{t}{t}-{s}-01",                   # trace id 64 digits
                "00-{s}-{s}-01",                      # trace id 16 digits
                "00-{t}-{t}-01",                      # span id 32 digits
                "0-0{t}-{s}-01", "000-{t}-{s}-01",    # version of the wrong length
                "00-{T}-{s}-01",                      # uppercase trace id
                "00-{t}-{S}-01",                      # uppercase span id
                "00-{t}-{s}-0A",                      # uppercase flags
                "0A-{t}-{s}-01",                      # uppercase version
                "ff-{t}-{s}-01",                      # version ff is invalid
                "0g-{t}-{s}-01",                      # non-hex version
                "00-{t}-{s}-0g",                      # non-hex flags
                "00_{t}_{s}_01",                      # wrong separators
                "00-{t}-{s}-01-",                     # a dash and nothing after it
                "cc-{t}-{s}-01x",                     # later version: field 5 must follow a dash
                "00-%s-{s}-01" % ("0" * 32),          # all-zero trace id
                "00-{t}-%s-01" % ("0" * 16),          # all-zero span id
                '00-"{t}"-{s}-01',                    # quotes
                '00-{t}-{s}-01","%s":"projects/evil/traces/{t}' % TRACE,   # JSON injection
                "00-{t}\\-{s}-01",                    # backslash
                "00-{t}-{s}-01\\\"",
                "00-\\u0041{t}-{s}-01",
        ):
            value, secrets = tp(fmt)
            cases.append(("traceparent", value, secrets))
        for fmt in (
                "{t}/", "{t}/;o=1",                   # a slash and no span id
                "{t}/99999999999999999999999;o=1",    # huge decimal
                "{t}/18446744073709551616;o=1",       # 2^64: one too many
                "{t}/-5;o=1", "{t}/+5;o=1", "{t}/5a;o=1", "{t}/0x10;o=1",
                "{t}/5;o=2", "{t}/5;o=", "{t}/5;o=11", "{t}/5;x=1", "{t}/5;o=1;", "{t}/5 ;o=1",
                "{t}/5;O=1", "{t}5;o=1", "{t}0/5;o=1",
                "%s/5;o=1" % ("0" * 32),              # all-zero trace id
                "{s}/5;o=1",                          # trace id too short
                "g{s}{s}/5;o=1",
                '"{t}"/5;o=1', "{t}\\/5;o=1", '{t}/5;o=1"', '{t}/5;o=1","%s":"x' % SPAN,
        ):
            value, secrets = tp(fmt)
            cases.append(("x-cloud-trace-context", value, secrets))
        for value in ('"', '\\', '\\"', '","a":"', "}{", "abc\"def\\ghi", "%00%0a", "null",
                      "{}", "x" * 4000):
            cases.append(("traceparent", value, []))
            cases.append(("x-cloud-trace-context", value, []))
        # Both present and both malformed.
        value, secrets = tp("00-{T}-{s}-01")
        cases.append(("both", value, secrets))

        names = []
        for header, value, _ in cases:
            md = ([("traceparent", value), ("x-cloud-trace-context", value[3:35] + "/x")]
                  if header == "both" else [(header, value)])
            names.append(self.get_with(self.server, md, channel=self.channel))
        lines = self.lines_for(self.server, names)
        stdout = self.server.stdout_bytes()
        logged = [s for l in self.server.log_lines() for s in strings_in(l)]
        for (header, value, secrets), line in zip(cases, lines):
            with self.subTest(header=header, value=value[:80]):
                self.assert_no_trace(line)
                for needle in [value] + secrets + [x.upper() for x in secrets]:
                    if len(needle) < 3:   # too short to mean anything when found
                        continue
                    self.assertNotIn(needle.encode(), stdout, "found in stdout")
                    self.assertFalse([s for s in logged if needle in s],
                                     "found in a decoded log string")


class TraceProjectSettingTest(TraceLogMixin, harness.WireTestCase):

    def test_project_from_environment(self):
        for project in ("env-project-1", "example.com:legacy-project"):
            with self.subTest(project=project):
                s = self.start_server(env={"GOOGLE_CLOUD_PROJECT": project})
                t, sp = trace_id(), span_id()
                line = self.line_with(s, [("traceparent", "00-%s-%s-01" % (t, sp))])
                self.assert_trace(line, t, sp, True, project=project)
                s.stop_and_check()

    def test_flag_overrides_environment(self):
        s = self.start_server("--project", "flag-project",
                              env={"GOOGLE_CLOUD_PROJECT": "env-project"})
        t = trace_id()
        line = self.line_with(s, [("x-cloud-trace-context", "%s/10;o=1" % t)])
        self.assert_trace(line, t, "000000000000000a", True, project="flag-project")

    def test_no_project_no_trace_fields(self):
        # GOOGLE_CLOUD_PROJECT="" is "not set" (and keeps a developer's own setting out).
        s = self.start_server(env={"GOOGLE_CLOUD_PROJECT": ""})
        t1, s1, t2 = trace_id(), span_id(), trace_id()
        names = [self.get_with(s, [("traceparent", "00-%s-%s-01" % (t1, s1))]),
                 self.get_with(s, [("x-cloud-trace-context", "%s/5;o=1" % t2)]),
                 self.get_with(s, [("traceparent", "00-%s-%s-01" % (t1, s1)),
                                   ("x-cloud-trace-context", "%s/5;o=1" % t2)])]
        for line in self.lines_for(s, names):
            self.assert_no_trace(line)
        s.stop_and_check()
        for line in s.log_lines(strict=True):
            self.assert_no_trace(line)
        self.assertNotIn(t1.encode(), s.stdout_bytes())
        self.assertNotIn(t2.encode(), s.stdout_bytes())

    def run_to_exit(self, args=(), env=None):
        """Starts the server expecting it to exit by itself; returns (code, stdout, stderr)."""
        s = self.start_server(*args, env=env, wait=False)
        s.expect_clean_exit = False
        rc = s.wait(harness.STARTUP_TIMEOUT_S)
        if rc is None:
            s.stop()
            self.fail("server did not exit with %s %s\n%s" % (args, env, s.output_tail()))
        s.stop()
        s.check_clean()
        return rc, s.stdout_bytes().decode("utf-8", "replace"), s.stderr_text()

    def test_bad_project_exits_2(self):
        bad = ["Bad Project", "UPPER", "1starts-with-digit", "-leading-dash", "under_score",
               'quote"d', "back\\slash", "x" * 101, "p/q", "\u00e9t\u00e9"]
        for value in bad:
            with self.subTest(env=value):
                rc, out, err = self.run_to_exit(env={"GOOGLE_CLOUD_PROJECT": value})
                self.assertEqual(rc, 2, "stdout:\n%s\nstderr:\n%s" % (out, err))
                self.assertIn("GOOGLE_CLOUD_PROJECT", err)
                self.assertNotIn('"message":"listening"', out)
        for value in ("Bad Project", "UPPER"):
            with self.subTest(flag=value):
                rc, out, err = self.run_to_exit(("--project", value))
                self.assertEqual(rc, 2, "stdout:\n%s\nstderr:\n%s" % (out, err))
                self.assertIn("--project", err)


class OneLogStreamTest(TraceLogMixin, harness.WireTestCase):
    """Every line the server writes, on stdout and on stderr, is one JSON object with a Cloud
    Logging severity: gRPC core's own lines too (gpr_log, GRPC_TRACE), also under hostile input;
    and a call whose client's deadline passed is logged as DEADLINE_EXCEEDED."""

    def assert_one_json_stream(self, s):
        """After the server has exited: every line of both streams parses, with a severity."""
        self.assertIsNotNone(s.poll(), "the server must have exited")
        for name, data in (("stdout", s.stdout_bytes()),
                           ("stderr", s.stderr_text().encode("utf-8"))):
            for i, raw in enumerate(data.split(b"\n")):
                if not raw:
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except ValueError as e:
                    self.fail("%s line %d is not JSON (%s): %r" % (name, i + 1, e, raw[:300]))
                self.assertIsInstance(obj, dict, raw[:300])
                self.assertIn(obj.get("severity"), SEVERITIES, "%s line %d: %r" % (
                    name, i + 1, raw[:300]))
                self.assertTrue(obj.get("time"), raw[:300])
        return s.log_lines(strict=True)

    def raw_conn(self, s):
        c = hostile.RawConn(HOST, s.port, timeout=10)
        self.addCleanup(c.close)
        c.start()
        c.pump_until(lambda: hostile.S_MAX_HEADER_LIST_SIZE in c.server_settings, 5.0)
        return c

    def raw_get(self, c, sid, extra=(), content_type=b"application/grpc", body=True):
        block = hostile.header_block(hostile.request_headers(hostile.GET_BOOK, c.authority, extra,
                                                             content_type=content_type))
        data = hostile.frame(hostile.HEADERS, hostile.FLAG_END_HEADERS, sid, block)
        if body:
            data += hostile.frame(hostile.DATA, hostile.FLAG_END_STREAM, sid, hostile.grpc_frame(
                hostile.get_book_bytes("books/one-stream-%d" % sid)))
        c.send(data)
        c.pump_until(lambda: c.outcome(sid) is not None or c.closed, 10.0)
        return c.outcome(sid)

    def hostile_input(self, s):
        """A wrong content-type, metadata over the per-call limit, metadata over core's limit (the
        connection is dropped), a request whose deadline passes before its message: returns the
        outcomes."""
        out = {}
        c = self.raw_conn(s)
        out["content-type"] = self.raw_get(c, 1, content_type=b"text/html; charset=utf-8")
        out["expired"] = self.raw_get(c, 3, extra=[("grpc-timeout", "100m")], body=False)
        stub = s.stub()
        with self.assertRaises(grpc.RpcError) as cm:
            stub.GetBook(GetBookRequest(name="books/big"), timeout=30,
                         metadata=[("x-big", "v" * 70000)])
        out["over the per-call limit"] = cm.exception.code().name
        c2 = self.raw_conn(s)
        out["over core's limit"] = self.raw_get(c2, 1, extra=[("x-huge", "v" * 200000)]) or (
            "CLOSED" if c2.closed else None)
        # The server still serves.
        self.expect_code(lambda: stub.GetBook(GetBookRequest(name="books/after"), timeout=30),
                         grpc.StatusCode.NOT_FOUND)
        return out

    def test_hostile_input_leaves_only_json_lines(self):
        # Core at its default verbosity (ERROR): what an operator sees in production.
        s = self.start_server(env={"GRPC_VERBOSITY": "", "GRPC_TRACE": ""})
        out = self.hostile_input(s)
        self.assertEqual(out["content-type"], "NOT_FOUND", out)   # 1.51 serves it anyway
        self.assertEqual(out["expired"], "DEADLINE_EXCEEDED", out)
        self.assertEqual(out["over the per-call limit"], "RESOURCE_EXHAUSTED", out)
        s.stop_and_check()
        lines = self.assert_one_json_stream(s)
        self.assertEqual(s.stderr_text(), "")
        core = [l for l in lines if l.get("logger") == "grpc-core"]
        # Core's complaint about the content-type, which 1.51 writes to stderr as plain text,
        # is a JSON line with its source location.
        ct = [l for l in core if "content-type" in l["message"]]
        self.assertTrue(ct, core)
        self.assertEqual(ct[0]["severity"], "ERROR", ct[0])
        self.assertTrue(ct[0]["file"].endswith("hpack_parser.cc"), ct[0])
        self.assertIsInstance(ct[0]["line"], int)
        self.assertEqual({l["severity"] for l in core}, {"ERROR"}, core)

    def test_core_debug_and_trace_lines_are_json(self):
        # GRPC_TRACE output goes through gpr_log at INFO (so it needs GRPC_VERBOSITY); with
        # everything on, core writes hundreds of lines, and still none is plain text.
        s = self.start_server("--log-level", "debug",
                              env={"GRPC_VERBOSITY": "DEBUG", "GRPC_TRACE": "http,api"})
        self.hostile_input(s)
        s.stop_and_check()
        lines = self.assert_one_json_stream(s)
        self.assertEqual(s.stderr_text(), "")
        core = [l for l in lines if l.get("logger") == "grpc-core"]
        self.assertGreater(len(core), 50)
        self.assertTrue({"DEBUG", "INFO"} <= {l["severity"] for l in core},
                        {l["severity"] for l in core})
        # The http tracer's frame lines and the api tracer's calls are among them.
        self.assertTrue([l for l in core if "chttp2" in l["file"]], core[:5])
        self.assertTrue([l for l in core if "grpc_server_request" in l["message"]], core[:5])

    def test_deadline_passed_logged_as_deadline_exceeded(self):
        s = self.start_server(env={"GRPC_VERBOSITY": "", "GRPC_TRACE": ""})
        c = self.raw_conn(s)
        # Headers with a 100 ms deadline and no message: core hands the call over when the
        # deadline ends the wait for its message.
        self.assertEqual(self.raw_get(c, 1, extra=[("grpc-timeout", "100m")], body=False),
                         "DEADLINE_EXCEEDED")
        # A request message that never completes (its DATA frame cut short).
        block = hostile.header_block(hostile.request_headers(
            hostile.GET_BOOK, c.authority, [("grpc-timeout", "100m")]))
        body = hostile.grpc_frame(hostile.get_book_bytes("books/cut-short"))
        c.send(hostile.frame(hostile.HEADERS, hostile.FLAG_END_HEADERS, 3, block) +
               hostile.frame(hostile.DATA, 0, 3, body[:-3]))
        c.pump_until(lambda: c.outcome(3) is not None or c.closed, 10.0)
        self.assertEqual(c.outcome(3), "DEADLINE_EXCEEDED")
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while True:
            got = [l for l in s.rpc_lines(GET) if l.get("code") != "NOT_FOUND"]
            if len(got) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(harness.POLL_INTERVAL_S)
        self.assertEqual(len(got), 2, s.output_tail())
        for line in got:
            self.assertEqual(line["code"], "DEADLINE_EXCEEDED", line)
            self.assertIn("client's deadline passed before the request arrived",
                          line["status_message"], line)
        self.assertFalse([l for l in s.rpc_lines() if l.get("code") == "CANCELLED"],
                         s.output_tail())


if __name__ == "__main__":
    unittest.main()
