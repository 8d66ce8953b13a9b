"""Google's Firestore emulator for the tests: started on a free loopback port in a process group
of its own, and stopped by killing that whole group (gcloud leaves the emulator's JVM running when
only gcloud is killed). A started emulator is registered with the reaper (reaper.py), which kills
the group if the test process dies first.

    em = Emulator.start()      # blocks until it answers (about 20 s), else raises
    em.host                    # "127.0.0.1:PORT", for FIRESTORE_EMULATOR_HOST
    em.reset("demo-books")     # deletes every document of that project's (default) database
    em.stop()

From a shell (scripts/test.sh): `fsemulator.py start DIR` prints host:port and keeps the group's
id in DIR; `fsemulator.py stop DIR` kills the group. No gRPC here: importable anywhere.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reaper  # noqa: E402

GCLOUD = os.environ.get("BOOKS_GCLOUD", "gcloud")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, proc, port, log_path):
        self.proc, self.port, self.log_path = proc, port, log_path
        self.host = "127.0.0.1:%d" % port

    @classmethod
    def start(cls, port=None, log_path=None, timeout=90, register=True):
        """A free port is only free until someone takes it: with no port given, an emulator that
        could not bind its port is started again on another, up to three times."""
        for attempt in range(1 if port else 3):
            try:
                return cls._start(port or free_port(), log_path, timeout, register)
            except RuntimeError:
                if port or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start(cls, port, log_path, timeout, register):
        log_path = log_path or "/tmp/books-fsemulator-%d.log" % port
        log = open(log_path, "wb")
        # start_new_session: setsid() in the child (no fork handlers: see check_no_fork.py), so
        # the group's id is gcloud's pid and killpg reaches the JVM it starts.
        proc = subprocess.Popen([GCLOUD, "emulators", "firestore", "start",
                                 "--host-port=127.0.0.1:%d" % port, "--quiet"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        em = cls(proc, port, log_path)
        if register:
            reaper.watch_group(proc.pid, "the Firestore emulator on port %d" % port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            # Ready when it says so in its own log (an answer on the port alone could come from
            # another process that took the port first) and answers on the port.
            with open(log_path, "rb") as f:
                running = b"Dev App Server is now running" in f.read()
            try:
                with urllib.request.urlopen("http://%s/" % em.host, timeout=2) as r:
                    if running and r.status == 200:
                        return em
            except OSError:
                pass
            time.sleep(0.5)
        em.stop()
        with open(log_path, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        raise RuntimeError("the Firestore emulator did not start on port %d: %s" % (port, tail))

    def reset(self, project):
        req = urllib.request.Request(
            "http://%s/emulator/v1/projects/%s/databases/(default)/documents" % (self.host, project),
            method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()

    def stop(self):
        kill_group(self.proc.pid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        reaper.forget_group(self.proc.pid)


def kill_group(pgid):
    """SIGTERM to the group, SIGKILL to what is left after 5 s."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv):
    if len(argv) == 3 and argv[1] == "start":
        os.makedirs(argv[2], exist_ok=True)
        em = Emulator.start(log_path=os.path.join(argv[2], "emulator.log"), register=False)
        with open(os.path.join(argv[2], "pgid"), "w") as f:
            f.write("%d\n" % em.proc.pid)
        print(em.host)
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        try:
            with open(os.path.join(argv[2], "pgid")) as f:
                kill_group(int(f.read().strip()))
        except (OSError, ValueError):
            pass
        return 0
    sys.stderr.write("usage: fsemulator.py start DIR | stop DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
