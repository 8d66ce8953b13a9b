"""Wire tests: `buf curl` (the buf CLI, from the npm package @bufbuild/buf pinned in
tests/wire/buf/package-lock.json) against the server with no .proto files at all: everything it
knows comes from server reflection.

The package is installed with `npm ci` into the build tree (a sibling of BOOKS_STUB_DIR, or
BOOKS_BUF_DIR), only when missing or when the lock file changed; several CTests may get there at
once, so the install runs under a file lock into a temporary directory that is renamed into
place. Nothing is written to the source tree. node and npm come from scripts/deps.sh test.

buf/package-lock.json was generated with `npm install --package-lock-only` (npm 11). The registry
reachable where it was made serves only @bufbuild/buf-linux-x64 and -linux-aarch64, so the entries
of the other five platform packages (optional dependencies of @bufbuild/buf, never installed on
Linux) were added by hand, without integrity hashes: npm ci refuses a lock that lacks them.
Regenerate the lock where the whole registry is reachable to get their hashes."""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import uuid

import grpc

import harness
from harness import GetBookRequest

PACKAGE_DIR = os.path.join(harness.HERE, "buf")
BUF_TIMEOUT_S = 120
NPM_TIMEOUT_S = 600


def _install_root():
    explicit = os.environ.get("BOOKS_BUF_DIR")
    if explicit:
        return os.path.abspath(explicit)
    if os.environ.get("BOOKS_STUB_DIR"):
        # CTest: BOOKS_STUB_DIR is <build>/pystubs; install next to it, in the build tree.
        return os.path.join(os.path.dirname(os.path.abspath(os.environ["BOOKS_STUB_DIR"])),
                            "wire-buf")
    # By hand, outside CTest: a private directory, never the source tree.
    return os.path.join(tempfile.gettempdir(), "books-wire-buf-%d" % os.getuid())


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def pinned_version():
    with open(os.path.join(PACKAGE_DIR, "package.json")) as f:
        return json.load(f)["dependencies"]["@bufbuild/buf"]


def _installed(root, lock):
    """True when root holds an install of exactly this lock file."""
    try:
        return (_read(os.path.join(root, ".installed-package-lock.json")) == lock and
                os.path.isfile(os.path.join(root, "node_modules", ".bin", "buf")))
    except FileNotFoundError:
        return False


def ensure_buf():
    """Returns the path of the buf executable, installing the pinned package when needed."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError("%s not found on PATH (scripts/deps.sh test installs it)" % tool)
    root = _install_root()
    lock = _read(os.path.join(PACKAGE_DIR, "package-lock.json"))
    buf = os.path.join(root, "node_modules", ".bin", "buf")
    if _installed(root, lock):
        return buf
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    with open(root + ".lock", "w") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)   # released when the file is closed
        if _installed(root, lock):               # another test process did it meanwhile
            return buf
        tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".tmp-", dir=parent)
        os.chmod(tmp, 0o755)
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(os.path.join(PACKAGE_DIR, name), os.path.join(tmp, name))
            # --ignore-scripts: @bufbuild/buf's postinstall would only try to download a binary
            # when the platform package is missing; npm ci installs that package (an optional
            # dependency) itself, and the check below proves it.
            res = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"],
                cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, timeout=NPM_TIMEOUT_S)
            if res.returncode != 0:
                raise RuntimeError("npm ci in %s failed (%d):\n%s" % (
                    tmp, res.returncode, res.stdout.decode(errors="replace")[-4000:]))
            tmp_buf = os.path.join(tmp, "node_modules", ".bin", "buf")
            res = subprocess.run([tmp_buf, "--version"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=BUF_TIMEOUT_S)
            if res.returncode != 0 or res.stdout.decode().strip() != pinned_version():
                raise RuntimeError("the installed buf does not run or is not %s (%d): %s" % (
                    pinned_version(), res.returncode, res.stdout.decode(errors="replace")))
            with open(os.path.join(tmp, ".installed-package-lock.json"), "wb") as f:
                f.write(lock)
            # Swap it in: readers outside the lock only ever see a complete install.
            old = None
            if os.path.lexists(root):
                old = tempfile.mkdtemp(prefix=os.path.basename(root) + ".old-", dir=parent)
                os.rename(root, os.path.join(old, "x"))
            os.rename(tmp, root)
            tmp = None
            if old:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return buf


def buf_env(cache_dir):
    env = dict(os.environ)
    # A test's calls must never go through a proxy; buf's cache goes to a private directory.
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            del env[k]
    env["BUF_CACHE_DIR"] = cache_dir
    env["NO_COLOR"] = "1"
    return env


class BufCurlTest(harness.SharedServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.buf = ensure_buf()   # before the server starts: npm may take a while the first time
        cls.cache = tempfile.mkdtemp(prefix="books-wire-bufcache-")
        cls.addClassCleanup(shutil.rmtree, cls.cache, True)
        super().setUpClass()
        cls.url = "http://127.0.0.1:%d" % cls.server.port

    def curl(self, *args, path="", body=None):
        argv = [self.buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge"] + list(args)
        if body is not None:
            argv += ["-d", json.dumps(body)]
        argv.append(self.url + path)
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=buf_env(self.cache),
                             timeout=BUF_TIMEOUT_S)
        return (res.returncode, res.stdout.decode("utf-8", "replace"),
                res.stderr.decode("utf-8", "replace"))

    def curl_ok(self, *args, path="", body=None):
        rc, out, err = self.curl(*args, path=path, body=body)
        self.assertEqual(rc, 0, "buf curl %s %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), path, out, err))
        return out

    def test_buf_version_is_pinned(self):
        res = subprocess.run([self.buf, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=buf_env(self.cache),
                             timeout=BUF_TIMEOUT_S)
        self.assertEqual(res.stdout.decode().strip(), pinned_version())

    def test_list_services_and_methods(self):
        want_methods = {"books.v1.BooksService/GetBook", "books.v1.BooksService/ListBooks",
                        "books.v1.BooksService/CreateBook"}
        for protocol in (None, "grpc-v1", "grpc-v1alpha"):
            with self.subTest(reflect_protocol=protocol):
                extra = ["--reflect-protocol", protocol] if protocol else []
                methods = self.curl_ok("--list-methods", *extra).split()
                self.assertTrue(want_methods <= set(methods), methods)
                self.assertEqual(sorted(m for m in methods
                                        if m.startswith("books.v1.BooksService/")),
                                 sorted(want_methods))
                services = self.curl_ok("--list-services", *extra).split()
                self.assertEqual(set(services), {
                    "books.v1.BooksService", "grpc.health.v1.Health",
                    "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection"})

    def test_create_then_list(self):
        book_id = "via-buf-" + uuid.uuid4().hex[:8]
        body = {"bookId": book_id, "book": {"displayName": "Curled Up \u00e9\u4e66",
                                            "authors": ["Ann Buf", "Bo Curl"],
                                            "publisher": "Reflection House"}}
        out = self.curl_ok(path="/books.v1.BooksService/CreateBook", body=body)
        created = json.loads(out)
        self.assertEqual(created, {"name": "books/" + book_id,
                                   "displayName": "Curled Up \u00e9\u4e66",
                                   "authors": ["Ann Buf", "Bo Curl"],
                                   "publisher": "Reflection House"})
        # The compiled Python stub sees it.
        got = self.stub.GetBook(GetBookRequest(name="books/" + book_id), timeout=30)
        self.assertBookEqual(got, harness.make_book("Curled Up \u00e9\u4e66",
                                                    ["Ann Buf", "Bo Curl"], "Reflection House",
                                                    name="books/" + book_id))
        # ListBooks through buf returns JSON that includes it (walking every page).
        names, token = [], ""
        for _ in range(1000):
            page = json.loads(self.curl_ok(path="/books.v1.BooksService/ListBooks",
                                           body={"pageSize": 100, "pageToken": token}))
            names.extend(b["name"] for b in page.get("books", []))
            token = page.get("nextPageToken", "")
            if not token:
                break
        self.assertIn("books/" + book_id, names)
        # And GetBook through buf.
        got = json.loads(self.curl_ok(path="/books.v1.BooksService/GetBook",
                                      body={"name": "books/" + book_id}))
        self.assertEqual(got, created)

    def test_error_exits_non_zero_with_not_found(self):
        name = "books/no-such-" + uuid.uuid4().hex[:8]
        rc, out, err = self.curl(path="/books.v1.BooksService/GetBook", body={"name": name})
        ctx = "rc=%d\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
        # buf curl: "If the RPC fails ... the exit code [is] the gRPC code, shifted three bits to
        # the left": NOT_FOUND (5) -> 40. The error goes to stderr as JSON, with Connect's
        # lowercase code name.
        self.assertNotEqual(rc, 0, ctx)
        self.assertEqual(rc, grpc.StatusCode.NOT_FOUND.value[0] << 3, ctx)
        self.assertEqual(out.strip(), "", ctx)
        start = err.index("{")
        error = json.loads(err[start:err.rindex("}") + 1])
        self.assertEqual(error.get("code"), "not_found", ctx)
        self.assertIn(name, error.get("message", ""), ctx)
        # The AIP-193 details survive the trip: ErrorInfo and ResourceInfo, decodable.
        details = {d["type"]: d for d in error.get("details", [])}
        self.assertIn("google.rpc.ErrorInfo", details, ctx)
        value = details["google.rpc.ErrorInfo"]["value"]
        info = harness.error_details_pb2.ErrorInfo.FromString(
            base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") +
                                     "=" * (-len(value) % 4)))
        self.assertEqual((info.reason, info.domain), ("BOOK_NOT_FOUND", harness.ERROR_DOMAIN))
        self.assertIn("google.rpc.ResourceInfo", details, ctx)

    def test_invalid_argument_exits_with_its_code(self):
        rc, out, err = self.curl(path="/books.v1.BooksService/CreateBook",
                                 body={"book": {"displayName": "No Authors"}})
        self.assertEqual(rc, grpc.StatusCode.INVALID_ARGUMENT.value[0] << 3, err)
        self.assertIn('"invalid_argument"', err)


if __name__ == "__main__":
    unittest.main()
