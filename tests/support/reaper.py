"""The tests' reaper: whatever a test process starts (books-server processes, proxies, PostgreSQL
clusters) is stopped when that process ends, however it ends: a failed assertion, the module's own
time budget (harness.py), SIGKILL from ctest's timeout, or a crash.

Why a process of its own: ctest's timeout kills the test process and its descendants with SIGKILL,
and a cleanup in the test process cannot run then; a PostgreSQL cluster (pg_ctl daemonizes the
postmaster) is not a descendant at all. So the first use starts a small detached Python process
(no gRPC in it) that holds the read end of a pipe; the test process keeps the write end and writes
one line per thing to watch or forget. When the write end closes, which the kernel does however
the test process ended, the reaper kills every process still registered (SIGKILL, after checking
its start time so a reused PID is left alone), stops every cluster still registered
(`pg_ctl stop -m immediate`, then SIGKILL of the postmaster) and removes its directory, says on
stderr what it stopped, and exits.

It also dumps the C stacks of the test process (gdb, when installed) at a deadline the test
process sets: Python's faulthandler shows the Python stacks of a hang, gdb shows where in a C
library (libgrpc, libc's fork) the threads wait.

It is started through `sh -c '... &'`, so it is not a descendant of the test process (ctest's kill
does not reach it), and with subprocess's vfork path (no preexec_fn, user or group): a test
process must never fork(2), see harness.py.

Use (module functions; each starts the reaper on first use):
    watch_process(pid, label) / forget_process(pid)
    watch_group(pgid, label) / forget_group(pgid)
    watch_cluster(root, label) / forget_cluster(root)
    dump_stacks_at(seconds)      gdb's C stacks of this process after `seconds`
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import time

_pipe_w = None
_pid = os.getpid()


def _send(line):
    global _pipe_w
    if _pipe_w is None or _pid != os.getpid():
        _start()
    try:
        os.write(_pipe_w, (line + "\n").encode())
    except OSError:
        pass  # the reaper is gone: nothing more to do here than without it


def _start():
    global _pipe_w, _pid
    r, w = os.pipe()
    os.set_inheritable(r, True)
    # `sh -c 'cmd &'` leaves the reaper orphaned (re-parented to init) once sh exits: ctest's kill
    # of the test process and its descendants does not reach it. Its stderr is the test's.
    launcher = subprocess.Popen(
        ["/bin/sh", "-c", '"$@" &', "sh", sys.executable, os.path.abspath(__file__), "--serve",
         str(r), str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(r,), close_fds=True)
    launcher.wait()
    os.close(r)
    _pipe_w, _pid = w, os.getpid()


def watch_process(pid, label="process"):
    _send("process %d %s" % (pid, label.replace("\n", " ")))


def forget_process(pid):
    _send("forget-process %d" % pid)


def watch_group(pgid, label="process group"):
    """The process group `pgid` (its leader's pid) is killed whole: a Firestore emulator's gcloud
    leaves its JVM running when only gcloud is killed."""
    _send("group %d %s" % (pgid, label.replace("\n", " ")))


def forget_group(pgid):
    _send("forget-group %d" % pgid)


def watch_cluster(root, label="PostgreSQL"):
    _send("cluster %s" % os.path.abspath(root))


def forget_cluster(root):
    _send("forget-cluster %s" % os.path.abspath(root))


def dump_stacks_at(seconds):
    _send("stacks %f" % (time.monotonic() + seconds))


# ---- the reaper process ---------------------------------------------------------------------------

def _start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when PID is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _say(msg):
    sys.stderr.write("[reaper] %s\n" % msg)
    sys.stderr.flush()


def _stop_cluster(root):
    data = os.path.join(root, "data")
    pidfile = os.path.join(data, "postmaster.pid")
    pid = None
    try:
        with open(pidfile) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        pass
    if pid and _start_time(pid) is not None:
        import pgcluster  # beside this file; imports no gRPC
        try:
            pgcluster.run_as_postgres([os.path.join(pgcluster.PG_BIN, "pg_ctl"), "-D", data,
                                       "-m", "immediate", "-w", "-t", "30", "stop"], timeout=40)
        except Exception as e:  # noqa: BLE001: whatever failed, the postmaster goes below
            _say("pg_ctl stop %s: %s" % (data, e))
        if _start_time(pid) is not None:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


def _gdb_stacks(pid):
    gdb = shutil.which("gdb")
    if not gdb or _start_time(pid) is None:
        return
    _say("test process %d still running at its deadline: its C stacks (gdb) follow" % pid)
    subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "info threads",
                    "-ex", "thread apply all bt 40"], stdin=subprocess.DEVNULL,
                   stdout=sys.stderr, stderr=subprocess.STDOUT, timeout=60, check=False)


def serve(fd, owner):
    procs, groups, clusters, stacks_at = {}, {}, [], None
    buf = b""
    while True:
        timeout = None if stacks_at is None else max(0.0, stacks_at - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            _gdb_stacks(owner)
            stacks_at = None
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            word, _, rest = line.decode().partition(" ")
            if word == "process":
                pid, _, label = rest.partition(" ")
                start = _start_time(int(pid))
                if start is not None:
                    procs[int(pid)] = (start, label)
            elif word == "forget-process":
                procs.pop(int(rest), None)
            elif word == "group":
                pgid, _, label = rest.partition(" ")
                groups[int(pgid)] = label
            elif word == "forget-group":
                groups.pop(int(rest), None)
            elif word == "cluster":
                clusters.append(rest)
            elif word == "forget-cluster":
                clusters = [c for c in clusters if c != rest]
            elif word == "stacks":
                stacks_at = float(rest)
    for pid, (start, label) in procs.items():
        if _start_time(pid) == start:
            _say("the test process ended with %s (pid %d) still running: SIGKILL" % (label, pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pgid, label in groups.items():
        try:
            os.killpg(pgid, signal.SIGKILL)
            _say("the test process ended with %s (process group %d) still running: SIGKILL"
                 % (label, pgid))
        except (ProcessLookupError, PermissionError):
            pass
    for root in clusters:
        _say("the test process ended with the PostgreSQL cluster %s still registered: stopping it"
             % root)
        _stop_cluster(root)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--serve":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C to the terminal is for the tests
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    serve(int(sys.argv[2]), int(sys.argv[3]))
