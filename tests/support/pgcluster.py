"""A throwaway PostgreSQL cluster for the tests: Debian's PostgreSQL 15 binaries, a data directory
of its own under /tmp, a free port on loopback, run as the unprivileged `postgres` user (initdb
refuses root). Nothing here touches a cluster the machine may already run.

As a module (the wire tests):   c = PgCluster.start(); ... c.uri("books") ...; c.stop()
As a command (scripts/test.sh): pgcluster.py start DIR   -> prints the URI of database "books"
                                pgcluster.py stop DIR
It also does what the fault tests need: kill -9 of the postmaster, restart on the same port and
data, and terminating every backend of a database (a network blip as the server sees it).

The cluster runs with fsync on and synchronous_commit on (PostgreSQL's defaults): the tests check
durability, so the database must keep its own promise.

Never fork: the wire tests import this module into a process that runs gRPC's threads, and a
fork(2) there runs gRPC core's pthread_atfork handler, which joins gRPC's executor threads and can
wait for ever (issue 15: a StartupTest hung in fork() once in ~50 runs). Python's subprocess forks
when given preexec_fn, user, group or extra_groups, and uses vfork(2), which runs no fork
handlers, otherwise; so the PostgreSQL programs run as `postgres` through setpriv(1) (util-linux),
a plain exec. A started cluster is registered with the reaper (reaper.py), which stops it if the
test process dies before stop().
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reaper  # noqa: E402

PG_BIN = os.environ.get("BOOKS_PG_BIN") or sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
START_TIMEOUT_S = 60.0
# Any one command (initdb, pg_ctl, psql): a bound, not an expectation.
COMMAND_TIMEOUT_S = 120.0


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_as_postgres(cmd, timeout=COMMAND_TIMEOUT_S):
    """Runs cmd as the postgres user (we are root in CI; through setpriv, an exec, never a fork
    of this process), or as ourselves when we are not root. Raises CalledProcessError, or
    TimeoutExpired after `timeout` seconds."""
    cwd = None
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
        cwd = "/tmp"
    return subprocess.run(cmd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, cwd=cwd)


class PgCluster:
    def __init__(self, root, port):
        self.root = root
        self.data = os.path.join(root, "data")
        self.sock = os.path.join(root, "sock")
        self.port = port
        self.log = os.path.join(root, "postgres.log")
        self.registered = False

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def start(cls, root=None, port=None, register=True):
        """register: stop the cluster if this process dies without stop() (reaper.py); the
        command form (scripts/test.sh) stops its cluster with a trap instead."""
        root = root or tempfile.mkdtemp(prefix="books-pg-")
        os.makedirs(root, exist_ok=True)
        c = cls(root, port or _free_port())
        c.registered = register
        if register:
            reaper.watch_cluster(root)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(root, pw.pw_uid, pw.pw_gid)
        os.makedirs(c.sock, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(c.sock, pw.pw_uid, pw.pw_gid)
        run_as_postgres([os.path.join(PG_BIN, "initdb"), "-D", c.data, "-U", "postgres",
                         "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-N"])
        with open(os.path.join(c.data, "postgresql.conf"), "a") as conf:
            conf.write("\n# books-server tests\nlisten_addresses = '127.0.0.1'\n"
                       "port = %d\nunix_socket_directories = '%s'\nmax_connections = 200\n"
                       "fsync = on\nsynchronous_commit = on\n" % (c.port, c.sock))
        c._pg_ctl_start()
        run_as_postgres([os.path.join(PG_BIN, "createdb"), "-h", c.sock, "-p", str(c.port),
                         "-U", "postgres", "books"])
        return c

    def _pg_ctl_start(self):
        run_as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                         "-t", str(int(START_TIMEOUT_S)), "start"])

    def stop(self, remove=True):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                run_as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m",
                                 "immediate", "-w", "stop"])
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pid = self.postmaster_pid()
                if pid:
                    os.kill(pid, signal.SIGKILL)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.registered:
                reaper.forget_cluster(self.root)

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def kill9(self):
        """SIGKILL to the postmaster, as a crash would. Its backends notice and exit; the data
        directory keeps whatever was fsync'ed (all committed transactions)."""
        pid = self.postmaster_pid()
        assert pid, "no postmaster running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # The backends of a killed postmaster exit on their own once they notice; wait for the
        # port so that a restart can bind it.
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.05)

    def restart(self):
        """Starts the postmaster again on the same data and port (crash recovery runs first)."""
        pidfile = os.path.join(self.data, "postmaster.pid")
        if os.path.exists(pidfile) and not self._alive(self.postmaster_pid()):
            os.unlink(pidfile)
        self._pg_ctl_start()

    @staticmethod
    def _alive(pid):
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    # -- using it --------------------------------------------------------------------------------

    def uri(self, db="books", **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        return "postgresql://postgres@127.0.0.1:%d/%s%s" % (self.port, db, "?" + q if q else "")

    def psql(self, sql, db="books"):
        """Runs sql, returns its output (unaligned, tuples only)."""
        r = run_as_postgres([os.path.join(PG_BIN, "psql"), "-h", self.sock, "-p", str(self.port),
                             "-U", "postgres", "-d", db, "-X", "-q", "-A", "-t", "-v",
                             "ON_ERROR_STOP=1", "-c", sql])
        return r.stdout.strip()

    def hold_lock(self, db, mode, seconds, table="books"):
        """Another session takes `mode` (e.g. "ACCESS EXCLUSIVE") on `table` and keeps it for
        `seconds`; returns once the lock is granted (at most 30 s), with the session's process
        (registered with the reaper: stop it with release_lock())."""
        cmd = [os.path.join(PG_BIN, "psql"), "-h", self.sock, "-p", str(self.port), "-U",
               "postgres", "-d", db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
               "BEGIN; LOCK TABLE %s IN %s MODE; SELECT pg_sleep(%f); COMMIT" % (table, mode,
                                                                                seconds)]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
        holder = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd="/tmp",
                                  env=dict(os.environ, PGAPPNAME="books-test-lock-%d" % os.getpid()))
        holder.db = db
        reaper.watch_process(holder.pid, "a PostgreSQL lock holder")
        deadline = time.monotonic() + 30
        want = mode.title().replace(" ", "") + "Lock"
        while self.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE c.relname = '%s' AND l.mode = '%s' AND l.granted" % (table, want),
                        db=db) != "1":
            if time.monotonic() > deadline or holder.poll() is not None:
                self.release_lock(holder)
                raise RuntimeError("the lock on %s was not granted" % table)
            time.sleep(0.05)
        return holder

    def release_lock(self, holder):
        """Ends a hold_lock() session now: its backend is terminated (its transaction rolls back
        and the lock goes at once; killing psql alone would leave the backend asleep)."""
        self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE application_name = 'books-test-lock-%d'" % os.getpid(), db=holder.db)
        holder.kill()
        holder.wait(30)
        reaper.forget_process(holder.pid)

    def create_database(self, name, **options):
        """CREATE DATABASE name [OPTION value ...] (e.g. ENCODING="'LATIN1'"); returns its URI."""
        opts = "".join(" %s %s" % kv for kv in options.items())
        self.psql('CREATE DATABASE "%s"%s' % (name, opts), db="postgres")
        return self.uri(name)

    def fresh_database(self, prefix, **options):
        """A new empty database named PREFIX_PID_N (N counts this cluster's); its URI."""
        self._fresh = getattr(self, "_fresh", 0) + 1
        return self.create_database("%s_%d_%d" % (prefix, os.getpid(), self._fresh), **options)

    def terminate_backends(self, db="books"):
        """Ends every other session on db: to a client, its connections just broke."""
        return self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                         "WHERE datname = '%s' AND pid <> pg_backend_pid()" % db, db="postgres")


def main(argv):
    if len(argv) == 3 and argv[1] == "start":
        c = PgCluster.start(root=argv[2], register=False)
        print(c.uri())
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        root = argv[2]
        c = PgCluster(root, 0)
        c.stop(remove=True)
        return 0
    print("usage: pgcluster.py start DIR | stop DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
