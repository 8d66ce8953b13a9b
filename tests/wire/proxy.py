"""nghttpx (Debian's nghttp2-proxy) in front of a books-server, configured from the project's own
docs/nghttpx.conf (the configuration the README recommends for self-hosting), with only its
frontend and backend ports changed: the hostile suite runs through exactly what users deploy.

    px = Nghttpx(backend_port).start()   # px.port: where clients connect
    ...
    px.stop()                            # by PID; raises if it had died

Loopback only; the log goes to a temporary file (px.log) that stop() removes unless keep=True.
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.environ.get("BOOKS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
CONF = os.path.join(SOURCE_DIR, "docs", "nghttpx.conf")
NGHTTPX = os.environ.get("BOOKS_NGHTTPX") or "/usr/sbin/nghttpx"
START_TIMEOUT_S = 30.0
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "support"))
import reaper  # noqa: E402: stops nghttpx if the test process dies without stop()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    return os.access(NGHTTPX, os.X_OK)


class Nghttpx:
    def __init__(self, backend_port):
        self.backend_port = backend_port
        self.port = None
        self.proc = None
        self.dir = None
        self.log = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="books-nghttpx-")
        self.log = os.path.join(self.dir, "nghttpx.log")
        with open(CONF) as f:
            conf = f.read()
        for _ in range(20):
            self.port = _free_port()
            text = re.sub(r"(?m)^frontend=.*$", "frontend=127.0.0.1,%d;no-tls" % self.port, conf)
            text = re.sub(r"(?m)^backend=.*$",
                          "backend=127.0.0.1,%d;;proto=h2" % self.backend_port, text)
            text += "\nerrorlog-file=%s\naccesslog-file=/dev/null\n" % self.log
            path = os.path.join(self.dir, "nghttpx.conf")
            with open(path, "w") as f:
                f.write(text)
            self.proc = subprocess.Popen([NGHTTPX, "--conf=" + path], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            reaper.watch_process(self.proc.pid, "nghttpx")
            if self._wait_listening():
                return self
            self._kill()  # lost the port to someone else: try another
        raise RuntimeError("nghttpx did not start; log:\n" + self.log_text())

    def _wait_listening(self):
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return True
            time.sleep(0.02)
        return False

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            reaper.forget_process(self.proc.pid)

    def stop(self, keep=False):
        died = self.proc.poll() is not None
        if not died:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finishes what it forwards
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        if not keep and self.dir:
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            os.rmdir(self.dir)
        if died:
            raise RuntimeError("nghttpx had died (exit %s)" % self.proc.returncode)
