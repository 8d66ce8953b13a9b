"""Client interop (issue 18): a client in another language, generated from proto/ alone with that
language's Debian (or npm) toolchain, against the real books-server binary.

One CTest per language (tests/CMakeLists.txt, label "interop"), each this module with
BOOKS_INTEROP_LANG set to a directory of tests/interop/. The server is started here on a free
loopback port (`--port 0`, memory: store) through the wire tests' harness, which also stops it by
PID and fails the test unless it exits 0 on SIGTERM. The language's run.sh then generates the code
from the protos, compiles it and runs its client against the server; it exits non-zero on any failed
expectation, and when a toolchain it needs is missing (never a silent skip).

What every client checks, the same in each language (client.* beside run.sh):
  1. CreateBook of 5 books with chosen ids: each answer has the name "books/{book_id}" and the
     fields sent;
  2. GetBook of the first: equal to what CreateBook answered;
  3. ListBooks with page_size 2, following next_page_token until it is empty: at least 3 pages,
     each created book exactly once, no page larger than 2;
  4. GetBook of a book that does not exist: NOT_FOUND, and grpc-status-details-bin decoded into a
     google.rpc.Status whose google.rpc.ResourceInfo names the book and its type;
  5. CreateBook without a display_name: INVALID_ARGUMENT, and a google.rpc.BadRequest whose
     field_violations name "book.display_name".
and prints "interop-<lang>: 5 passed, 0 failed" at the end.

Environment: BOOKS_INTEROP_LANG (cpp, go, java, node, python), BOOKS_INTEROP_WORK (the build
directory each language generates and compiles into; default a temp dir), and the wire harness's
(BOOKS_SERVER, BOOKS_SOURCE_DIR, GOOGLEAPIS_PROTO_DIR, ...).
Run by hand: cd tests/interop && BOOKS_INTEROP_LANG=go /usr/bin/python3 -m unittest -v test_interop
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "wire"))
import harness  # noqa: E402

LANG = os.environ.get("BOOKS_INTEROP_LANG", "")
# What run.sh may take, generation and compilation included; a cold Go or C++ build is the slowest
# (about a minute on 2 cores). The module's own budget (BOOKS_WIRE_TIMEOUT_S) is larger.
CLIENT_TIMEOUT_S = float(os.environ.get("BOOKS_INTEROP_CLIENT_TIMEOUT_S") or 240)


class InteropTest(harness.WireTestCase):
    def test_client(self):
        script = os.path.join(HERE, LANG, "run.sh")
        if not LANG or not os.path.isfile(script):
            self.fail("BOOKS_INTEROP_LANG=%r names no tests/interop/<lang>/run.sh" % LANG)
        work = os.environ.get("BOOKS_INTEROP_WORK")
        if not work:
            work = tempfile.mkdtemp(prefix="books-interop-%s-" % LANG)
            self.addCleanup(shutil.rmtree, work, True)
        os.makedirs(work, exist_ok=True)
        server = self.start_server("--store", "memory:", label="interop " + LANG)
        env = dict(os.environ)
        env.update({
            "BOOKS_INTEROP_TARGET": "127.0.0.1:%d" % server.port,
            "BOOKS_SOURCE_DIR": harness.SOURCE_DIR,
            "GOOGLEAPIS_PROTO_DIR": harness.GOOGLEAPIS_PROTO_DIR,
            # No proxy may route the client's calls elsewhere (each language reads these).
            "no_proxy": "*", "NO_PROXY": "*",
        })
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
            env.pop(var, None)
        started = time.monotonic()
        try:
            res = subprocess.run(["sh", script, work], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=CLIENT_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            out = (e.output or b"").decode(errors="replace")
            self.fail("%s: run.sh did not finish within %.0f s\n%s" % (LANG, CLIENT_TIMEOUT_S,
                                                                       out[-8000:]))
        out = res.stdout.decode(errors="replace")
        sys.stdout.write(out)
        sys.stdout.write("interop %s: run.sh took %.1f s\n" % (LANG, time.monotonic() - started))
        self.assertEqual(res.returncode, 0, "%s client failed (exit %d)\n%s" % (
            LANG, res.returncode, out[-8000:]))
        # The client's own summary, so a run.sh that exits 0 without running the client fails.
        self.assertIn("interop-%s: 5 passed, 0 failed" % LANG, out)
        server.check_alive()


if __name__ == "__main__":
    unittest.main()
