"""A throwaway Patroni cluster for the failover tests: one etcd 3.4 member and N Patroni 3.0 nodes
(Debian's `etcd-server` and `patroni`), each node a Patroni process managing its own PostgreSQL 15
data directory, all on loopback, on free ports, under one directory in /tmp. Nothing here touches
a cluster the machine may already run, and nothing imports gRPC.

As a module (the wire tests):
    c = PatroniCluster.start(n=3)            # etcd, then the nodes; back once healthy (see start)
    c.uri(target_session_attrs="read-write") # postgresql://postgres@127.0.0.1:P1,...:P3/books?...
    old = c.leader(); t_kill = c.kill9_leader()
    name, t_promoted = c.wait_leader(not_=old)
    c.restart_member(old)                    # it rejoins as a replica (pg_rewind, else reinit)
    new, t_promoted = c.switchover()
    c.stop()                                 # idempotent; whatever state the cluster is in
As a command:
    patroni.py start DIR [N]   prints JSON: members, their ports, the multi-host URI; leaves it
                               running (not registered with the reaper: `stop` it)
    patroni.py stop DIR        kills whatever of it still runs and removes DIR
    patroni.py measure [--failovers K] [--switchovers K] [--strict] [--ttl S --loop-wait S
                       --retry-timeout S]
                               failover, switchover and rejoin times, with a write probe (an
                               INSERT through the multi-host URI every 50 ms): "Measured" below
    patroni.py measure-sync [--strict]
                               what synchronous_mode does to writes as nodes die

The settings (Patroni's dynamic configuration, written to etcd at bootstrap):
  * ttl 10, loop_wait 1, retry_timeout 4: Patroni's rule loop_wait + 2 * retry_timeout <= ttl
    holds (1 + 8 <= 10). The leader key is an etcd lease of ttl seconds that the leader renews
    every loop; a killed leader's lease runs out 9-10 s after its last renewal, and that is most
    of an unplanned failover. A leader that cannot update its key in etcd within retry_timeout
    demotes itself, so a small retry_timeout on a loaded 2-core CI machine risks
    failovers nobody asked for, which would make the tests that check who leads flaky. ttl 6,
    loop_wait 1, retry_timeout 2 (start(ttl=6, loop_wait=1, retry_timeout=2)) fails over in
    5.4-6.3 s instead of 9.6-10.5 s; neither saw a spurious failover or a failed write in 120 s
    under 3 CPU hogs and an O_DSYNC writer (ttl 6 with another worktree's ctest -j2 besides, load
    average 12), but the default keeps twice the margin for the runs nobody watches.
  * synchronous_mode: true, synchronous_mode_strict: false (strict=True to change it). With
    synchronous_mode Patroni only fails over to the standby its /sync key in etcd names, so a
    commit the old leader acknowledged is on the new leader; if the leader and that standby die
    together, the third node is not promoted (measured) until one of them is back. Not strict:
    when its last standby dies the leader drops synchronous_standby_names (about one loop:
    writes wait ~1 s) and goes on alone; strict blocks every commit until a standby is back.
    The wire tests want books-server to work through the loss of nodes, and no failover can lose
    an acknowledged commit either way (while the leader is alone its /sync key names no standby,
    so no other node may be promoted), so not strict is the default; start(strict=True) is
    there for a test of the blocking. A Patroni 3.0.2 race, measured: when a replica dies in the
    ~2 s between Patroni naming it in synchronous_standby_names and in /sync (it has just been
    picked because the synchronous standby died), Patroni never clears it, and commits hang
    until a replica is back, strict or not (`patroni.py measure-sync`, case 2b).
  * maximum_lag_on_failover 1 MiB (Patroni's default); in synchronous mode only the synchronous
    standby is a candidate anyway.
  * use_pg_rewind, use_slots, wal_log_hints and data checksums, remove_data_directory_on_rewind_
    failure and ..._on_diverged_timelines: a killed old leader comes back as a replica, by
    pg_rewind when it can and by a fresh pg_basebackup (checkpoint=fast) when it cannot.
  * wal_retrieve_retry_interval 500ms: a replica that asks a new leader for its slot before
    Patroni made it retries after 0.5 s, not 5 s (rejoins and switchovers were 5 s slower).
  * synchronous_commit on, fsync on (what the durability tests rely on), trust on loopback,
    initdb with UTF8, locale C.UTF-8; the `books` database is made by the post_bootstrap script,
    before any replica clones the leader.

Measured here (2 cores; `patroni.py measure --failovers 5 --switchovers 5`, `measure-sync`):
  start (etcd, initdb, two basebackups, synchronous standby named): 6.7-10.2 s
  kill -9 of the leader node -> Patroni on the sync standby takes the key (its log): 9.6-10.4 s;
    -> PostgreSQL promoted (its log) +0.03-0.25 s; -> first INSERT through the URI OK: 9.6-10.6 s
  killed old leader restarted -> streaming again as a replica (always by pg_rewind): 5-11 s
  switchover (POST /switchover) -> promoted: 1.5-2.1 s; no INSERT succeeds for 1.4-1.9 s
  synchronous standby dies (3 -> 2 nodes): commits wait 0.3-1.3 s, then go on (the other
    replica is made synchronous in ~2.5 s); the last replica dies (leader alone): ~1 s wait,
    then writes go on (strict: they block until a standby is back); leader and sync standby die
    together: the third node is not promoted, the sync standby's restart makes it leader (1.6 s)

Never fork (see pgcluster.py and tests/check_no_fork.py): every program runs through subprocess's
vfork path; Patroni runs as `postgres` through setpriv(1). Each Patroni process and etcd start in
a session of their own (start_new_session) and are registered with the reaper as process groups;
Patroni starts its postmaster in yet another session, so each node's directory is also registered
as a cluster (the reaper stops the postmaster named by DIR/<node>/data/postmaster.pid), and the
cluster's own directory last, so that the reaper removes it once all the rest is dead.
"""

import calendar
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reaper  # noqa: E402

PG_BIN = os.environ.get("BOOKS_PG_BIN") or "/usr/lib/postgresql/15/bin"
PATRONI = "/usr/bin/patroni"
ETCD = "/usr/bin/etcd"
SCOPE = "books"
# Patroni's dynamic configuration (bootstrap.dcs); start() can override ttl, loop_wait and
# retry_timeout.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4
START_TIMEOUT_S = 90.0        # etcd + initdb + two pg_basebackups + a synchronous standby
FAILOVER_TIMEOUT_S = 45.0     # ttl + promotion, with a margin for a loaded machine
REJOIN_TIMEOUT_S = 90.0       # crash recovery + pg_rewind, or a whole pg_basebackup
COMMAND_TIMEOUT_S = 30.0      # any one psql or HTTP call: a bound, not an expectation
POLL_S = 0.025                # how often the waits look


def missing_packages():
    """The Debian packages this harness needs that are not installed ([] when none): a test fails
    naming them, never skips (scripts/deps.sh test installs them)."""
    return [pkg for prog, pkg in ((PATRONI, "patroni"), (ETCD, "etcd-server"))
            if not shutil.which(prog)]


def require():
    """Raises PatroniError naming what to install when missing_packages() is not empty."""
    missing = missing_packages()
    if missing:
        raise PatroniError("the Patroni cluster needs Debian's %s (apt-get install %s; "
                           "scripts/deps.sh test installs them)" % (" and ".join(missing),
                                                                   " ".join(missing)))


def _free_ports(count):
    """count distinct free loopback ports (all held at once while choosing)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _clean_env(**extra):
    """This process's environment less what would configure etcd, Patroni or libpq behind our
    back (ETCD_*, PATRONI_*, PG*)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ETCD_", "PATRONI_", "PG"))}
    env.update(extra)
    return env


def _start_time(pid):
    """/proc/PID/stat's start time, or None when PID is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid):
    """The pids whose parent is pid (a postmaster's backends: each calls setsid(), so they are
    not in the postmaster's process group)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _killpg(pgid):
    if pgid and pgid > 1 and pgid != os.getpgrp():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def http(method, url, body=None, timeout=1.0):
    """(status, body as JSON or text), or (None, error) when nothing answered. Bounded."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def psql_run(conninfo, sql, timeout=COMMAND_TIMEOUT_S):
    """psql -c sql against conninfo (a URI or key=value string): a CompletedProcess (check it
    yourself). Runs as this user over TCP (trust on loopback); PG* variables are not passed on."""
    return subprocess.run(
        [os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-d", conninfo, "-c", sql],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
        env=_clean_env(), cwd="/tmp")


class PatroniError(RuntimeError):
    pass


class Member:
    def __init__(self, cluster, name, pg_port, api_port):
        self.name = name
        self.root = os.path.join(cluster.root, name)
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        self.config = os.path.join(self.root, "patroni.json")
        self.log = os.path.join(self.root, "patroni.log")
        self.pg_port = pg_port
        self.api_port = api_port
        self.pid = None       # the Patroni process (its process group's id too)
        self.start = None     # its /proc start time: a PID reused later is not ours
        self.proc = None      # the Popen, when this process started it

    @property
    def api(self):
        return "http://127.0.0.1:%d" % self.api_port

    def uri(self, db="books", **params):
        q = "&".join("%s=%s" % kv for kv in params.items() if kv[1] is not None)
        return "postgresql://postgres@127.0.0.1:%d/%s%s" % (self.pg_port, db, "?" + q if q else "")

    def patroni_alive(self):
        return bool(self.pid) and _start_time(self.pid) == self.start

    def postmaster_pid(self):
        """The running postmaster of this node's data directory, or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        if _start_time(pid) is None or self.data not in _cmdline(pid):
            return None
        return pid

    def state(self):
        return {"pg_port": self.pg_port, "api_port": self.api_port, "pid": self.pid,
                "start": self.start}


class PatroniCluster:
    def __init__(self, root, n, etcd_ports, member_ports, strict=False, ttl=TTL,
                 loop_wait=LOOP_WAIT, retry_timeout=RETRY_TIMEOUT, register=True):
        self.root = root
        self.n = n
        self.etcd_client, self.etcd_peer = etcd_ports
        self.etcd_dir = os.path.join(root, "etcd")
        self.etcd_log = os.path.join(root, "etcd.log")
        self.etcd_pid = self.etcd_start = None
        self.etcd_proc = None
        self.strict = strict
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.registered = register
        self.nodes = {}
        for i, (pg, api) in enumerate(member_ports):
            m = Member(self, "pg%d" % i, pg, api)
            self.nodes[m.name] = m
        self.last_promotion = None
        self.stopped = False

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def start(cls, n=3, root=None, strict=False, ttl=TTL, loop_wait=LOOP_WAIT,
              retry_timeout=RETRY_TIMEOUT, register=True, timeout=START_TIMEOUT_S):
        """Starts etcd and n Patroni nodes pg0..pg{n-1}; returns once there is a leader with
        n-1 replicas streaming from it, one of them synchronous (in pg_stat_replication and in
        Patroni's synchronous-standby key), and `books` exists; at most `timeout` seconds, else
        stops everything and raises PatroniError. register: the reaper stops it all if this
        process dies (the command form leaves it running until `stop`)."""
        if loop_wait + 2 * retry_timeout > ttl:
            raise ValueError("Patroni needs loop_wait + 2 * retry_timeout <= ttl")
        root = root or tempfile.mkdtemp(prefix="books-patroni-")
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)  # mkdtemp's 0700 would keep the postgres user out
        ports = _free_ports(2 + 2 * n)
        c = cls(root, n, ports[:2], list(zip(ports[2::2], ports[3::2])), strict=strict, ttl=ttl,
                loop_wait=loop_wait, retry_timeout=retry_timeout, register=register)
        if register:
            # Nodes first, the whole directory last: the reaper stops clusters in this order,
            # and each node's postmaster.pid must still be there when it is its turn.
            for m in c.nodes.values():
                reaper.watch_cluster(m.root, "Patroni node %s" % m.name)
            reaper.watch_cluster(root, "Patroni cluster")
        t0 = time.time()
        deadline = time.monotonic() + timeout
        try:
            c._write_configs()
            c._start_etcd(deadline)
            for m in c.nodes.values():
                c._launch(m)
            c.wait_replicas(timeout=max(1.0, deadline - time.monotonic()))
            c.started_in = time.time() - t0
        except BaseException:
            c.stop()
            raise
        return c

    def _write_configs(self):
        pw = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        script = os.path.join(self.root, "post_bootstrap.sh")
        with open(script, "w") as f:
            # Patroni runs it once, on the node that ran initdb, with a connection string to it.
            f.write("#!/bin/sh\nexec %s -X -q -v ON_ERROR_STOP=1 -d \"$1\" "
                    "-c 'CREATE DATABASE books'\n" % os.path.join(PG_BIN, "psql"))
        os.chmod(script, 0o755)
        hba = ["local all all trust", "host all all 127.0.0.1/32 trust",
               "host replication all 127.0.0.1/32 trust"]
        for m in self.nodes.values():
            for d in (m.root, m.sock):
                os.makedirs(d, exist_ok=True)
                if pw:
                    os.chown(d, pw.pw_uid, pw.pw_gid)
            cfg = {
                "scope": SCOPE,
                "name": m.name,
                "log": {"level": "INFO"},
                "restapi": {"listen": "127.0.0.1:%d" % m.api_port,
                            "connect_address": "127.0.0.1:%d" % m.api_port},
                "etcd3": {"hosts": ["127.0.0.1:%d" % self.etcd_client], "protocol": "http"},
                "bootstrap": {
                    "dcs": {
                        "ttl": self.ttl, "loop_wait": self.loop_wait,
                        "retry_timeout": self.retry_timeout,
                        "maximum_lag_on_failover": 1048576,
                        "synchronous_mode": True,
                        "synchronous_mode_strict": self.strict,
                        "postgresql": {
                            "use_pg_rewind": True,
                            "use_slots": True,
                            "remove_data_directory_on_rewind_failure": True,
                            "remove_data_directory_on_diverged_timelines": True,
                            "parameters": {
                                "wal_level": "replica", "hot_standby": "on",
                                "wal_log_hints": "on", "max_wal_senders": 10,
                                "max_replication_slots": 10, "wal_keep_size": "128MB",
                                "max_connections": 200, "synchronous_commit": "on",
                                "fsync": "on", "log_line_prefix": "%m [%p] ",
                                "log_timezone": "UTC",
                                # A standby whose primary has no slot for it yet (a new
                                # leader makes them on its next loop) tries again after this,
                                # not after the default 5 s.
                                "wal_retrieve_retry_interval": "500ms",
                            },
                        },
                    },
                    "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
                    "post_bootstrap": script,
                },
                "postgresql": {
                    "listen": "127.0.0.1:%d" % m.pg_port,
                    "connect_address": "127.0.0.1:%d" % m.pg_port,
                    "data_dir": m.data,
                    "bin_dir": PG_BIN,
                    "pgpass": os.path.join(m.root, "pgpass"),
                    "authentication": {"superuser": {"username": "postgres"},
                                       "replication": {"username": "postgres"},
                                       "rewind": {"username": "postgres"}},
                    "parameters": {"unix_socket_directories": m.sock},
                    "pg_hba": hba,
                    "basebackup": [{"checkpoint": "fast"}],
                },
                "watchdog": {"mode": "off"},
                "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                         "nosync": False},
            }
            with open(m.config, "w") as f:
                json.dump(cfg, f, indent=1)  # YAML reads JSON
        self._save_state()

    def _start_etcd(self, deadline):
        os.makedirs(self.etcd_dir, exist_ok=True)
        peer = "http://127.0.0.1:%d" % self.etcd_peer
        client = "http://127.0.0.1:%d" % self.etcd_client
        cmd = [ETCD, "--name", "etcd0", "--data-dir", os.path.join(self.etcd_dir, "data"),
               "--listen-client-urls", client, "--advertise-client-urls", client,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", "etcd0=" + peer, "--initial-cluster-state", "new",
               "--initial-cluster-token", "books-test-%d-%d" % (os.getpid(), self.etcd_client),
               "--logger", "zap", "--log-outputs", "stderr"]
        with open(self.etcd_log, "ab") as log:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, env=_clean_env(), cwd=self.etcd_dir)
        self.etcd_proc, self.etcd_pid, self.etcd_start = p, p.pid, _start_time(p.pid)
        if self.registered:
            reaper.watch_group(p.pid, "etcd (Patroni cluster %s)" % self.root)
        self._save_state()
        while time.monotonic() < deadline:
            status, body = http("GET", client + "/health", timeout=0.5)
            if status == 200 and isinstance(body, dict) and body.get("health") == "true":
                return
            if p.poll() is not None:
                raise PatroniError("etcd exited %s: see %s" % (p.returncode, self.etcd_log))
            time.sleep(0.05)
        raise PatroniError("etcd not healthy in time: see %s" % self.etcd_log)

    def _launch(self, m):
        cmd = [PATRONI, m.config]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
        with open(m.log, "ab") as log:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, cwd=m.root,
                                 env=_clean_env(HOME=m.root, PYTHONDONTWRITEBYTECODE="1"))
        m.proc, m.pid, m.start = p, p.pid, _start_time(p.pid)
        if self.registered:
            reaper.watch_group(p.pid, "Patroni %s (%s)" % (m.name, self.root))
        self._save_state()

    def _save_state(self):
        state = {"etcd": {"pid": self.etcd_pid, "start": self.etcd_start,
                          "client_port": self.etcd_client, "peer_port": self.etcd_peer},
                 "n": self.n, "strict": self.strict,
                 "members": {name: m.state() for name, m in self.nodes.items()}}
        tmp = os.path.join(self.root, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.rename(tmp, os.path.join(self.root, "state.json"))

    @classmethod
    def load(cls, root):
        """The cluster a `patroni.py start DIR` left in DIR (to stop it, or use it)."""
        with open(os.path.join(root, "state.json")) as f:
            st = json.load(f)
        names = sorted(st["members"])
        c = cls(root, st["n"], (st["etcd"]["client_port"], st["etcd"]["peer_port"]),
                [(st["members"][k]["pg_port"], st["members"][k]["api_port"]) for k in names],
                strict=st["strict"], register=False)
        c.etcd_pid, c.etcd_start = st["etcd"]["pid"], st["etcd"]["start"]
        for k in names:
            c.nodes[k].pid, c.nodes[k].start = st["members"][k]["pid"], st["members"][k]["start"]
        return c

    def _kill_member(self, m):
        """SIGKILL to the node's Patroni process group (Patroni and whatever it runs: pg_rewind,
        pg_basebackup), its postmaster and the postmaster's children (every backend: they are
        in process groups of their own), one right after the other; returns once all are gone
        (at most 10 s)."""
        pm = m.postmaster_pid()
        kids = _children(pm) if pm else []
        if m.pid:
            _killpg(m.pid)
        for pid in ([pm] if pm else []) + kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if m.proc is not None:
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not m.patroni_alive() and not any(_start_time(p) for p in [pm] + kids if p):
                break
            time.sleep(0.02)
        if self.registered and m.pid:
            reaper.forget_group(m.pid)
        m.pid = m.start = m.proc = None
        self._save_state()

    def stop(self):
        """Kills every node (Patroni and PostgreSQL) and etcd, whatever state they are in, and
        removes the directory. Idempotent."""
        if self.stopped:
            return
        for m in self.nodes.values():
            if m.pid:
                _killpg(m.pid)  # first every Patroni, so that none restarts its postmaster
        for m in self.nodes.values():
            self._kill_member(m)
        if self.etcd_pid:
            _killpg(self.etcd_pid)
            if self.etcd_proc is not None:
                try:
                    self.etcd_proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            if self.registered:
                reaper.forget_group(self.etcd_pid)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.registered:
            for m in self.nodes.values():
                reaper.forget_cluster(m.root)
            reaper.forget_cluster(self.root)
        self.stopped = True

    # -- looking at it ---------------------------------------------------------------------------

    def uri(self, db="books", **params):
        """The libpq multi-host URI naming every node, pg0 first:
        postgresql://postgres@127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2/books?params. By default
        target_session_attrs=read-write (libpq tries the hosts in turn until one takes writes)
        and connect_timeout=2 (per host); pass name=None to leave one out."""
        params = dict({"target_session_attrs": "read-write", "connect_timeout": "2"}, **params)
        q = "&".join("%s=%s" % kv for kv in params.items() if kv[1] is not None)
        hosts = ",".join("127.0.0.1:%d" % m.pg_port for m in self.nodes.values())
        return "postgresql://postgres@%s/%s%s" % (hosts, db, "?" + q if q else "")

    def member_uri(self, name, db="books", **params):
        """One node's URI (no target_session_attrs unless given)."""
        return self.nodes[name].uri(db, **params)

    def _live(self, exclude=None):
        return [m for m in self.nodes.values() if m.patroni_alive() and m.name != exclude]

    def cluster_view(self, timeout=1.0):
        """Patroni's GET /cluster from the first live node that answers, or None."""
        for m in self._live():
            status, body = http("GET", m.api + "/cluster", timeout=timeout)
            if status == 200 and isinstance(body, dict):
                return body
        return None

    def members_view(self):
        """[{name, role ('leader', 'sync_standby', 'replica'), state, host, port, timeline,
        lag, alive (its Patroni runs), pg_port, api_port}] for every node, from /cluster; a
        node /cluster does not list (dead for longer than its ttl) has role None."""
        view = self.cluster_view() or {}
        listed = {x.get("name"): x for x in view.get("members", [])}
        out = []
        for m in self.nodes.values():
            d = dict(listed.get(m.name, {"name": m.name, "role": None, "state": None}))
            d.update(alive=m.patroni_alive(), pg_port=m.pg_port, api_port=m.api_port)
            out.append(d)
        return out

    def members(self):
        """The names of the nodes, pg0..pg{n-1}."""
        return list(self.nodes.keys())

    def leader(self):
        """The name of the node that holds Patroni's leader key now (GET /cluster), or None."""
        view = self.cluster_view()
        for x in (view or {}).get("members", []):
            if x.get("role") == "leader":
                return x["name"]
        return None

    def sync_standby(self):
        view = self.cluster_view()
        for x in (view or {}).get("members", []):
            if x.get("role") == "sync_standby":
                return x["name"]
        return None

    def psql(self, member, sql, db="books", timeout=COMMAND_TIMEOUT_S):
        """sql on that node; its output (unaligned, tuples only). Raises PatroniError."""
        r = psql_run(self.nodes[member].uri(db, connect_timeout="2"), sql, timeout=timeout)
        if r.returncode != 0:
            raise PatroniError("psql on %s: %s" % (member, r.stderr.strip()))
        return r.stdout.strip()

    def psql_primary(self, sql, db="books", timeout=COMMAND_TIMEOUT_S):
        """sql through the multi-host URI with target_session_attrs=read-write (whichever node
        takes writes now, as books-server would find it); its output. Raises PatroniError."""
        r = psql_run(self.uri(db), sql, timeout=timeout)
        if r.returncode != 0:
            raise PatroniError("psql on the primary: %s" % r.stderr.strip())
        return r.stdout.strip()

    def in_recovery(self, member):
        """pg_is_in_recovery() on that node: True, False, or None (no answer)."""
        r = psql_run(self.nodes[member].uri("postgres", connect_timeout="1"),
                     "SELECT pg_is_in_recovery()", timeout=5)
        if r.returncode != 0:
            return None
        return {"t": True, "f": False}.get(r.stdout.strip())

    # -- waiting ---------------------------------------------------------------------------------

    def wait_leader(self, not_=None, timeout=FAILOVER_TIMEOUT_S, give_up=None):
        """Waits for a node other than `not_` whose PostgreSQL is out of recovery (takes writes)
        and which holds Patroni's leader key; returns (name, promoted_at), promoted_at the
        time.time() at which pg_is_in_recovery() was first seen false there: every live node
        but `not_` is asked every ~25 ms (plus a psql start each, ~10 ms), so it is 10-60 ms
        late. Patroni's REST API says "leader" (GET /leader 200) a little later than that in a
        switchover (0.3 s measured): that is only checked after, with the same deadline.
        log_times() reads from the logs, to the millisecond, when Patroni took the key and when
        PostgreSQL finished promoting. Raises PatroniError after `timeout` seconds, or as soon
        as give_up() (when given) returns a reason."""
        deadline = time.monotonic() + timeout
        name = None
        while name is None:
            reason = give_up and give_up()
            if reason:
                raise PatroniError(reason)
            for m in self._live(exclude=not_):
                if self.in_recovery(m.name) is False:
                    name, at = m.name, time.time()
                    break
            else:
                if time.monotonic() > deadline:
                    raise PatroniError("no leader other than %s after %.0f s (leader: %s)" %
                                       (not_, timeout, self.leader()))
                time.sleep(POLL_S)
        while True:
            status, _ = http("GET", self.nodes[name].api + "/leader", timeout=0.5)
            if status == 200:
                lock_seen = time.time()
                break
            if time.monotonic() > deadline:
                raise PatroniError("%s is out of recovery but Patroni does not call it the "
                                   "leader after %.0f s" % (name, timeout))
            time.sleep(POLL_S)
        self.last_promotion = {"name": name, "promoted_at": at, "leader_api_at": lock_seen}
        return name, at

    def replication(self, leader=None):
        """pg_stat_replication on the leader: {application_name: (state, sync_state)}."""
        leader = leader or self.leader()
        if not leader:
            return {}
        try:
            out = self.psql(leader, "SELECT application_name, state, sync_state "
                                    "FROM pg_stat_replication", db="postgres", timeout=5)
        except (PatroniError, subprocess.TimeoutExpired):
            return {}
        rows = [line.split("|") for line in out.splitlines() if line]
        return {r[0]: (r[1], r[2]) for r in rows if len(r) == 3}

    def wait_replicas(self, count=None, timeout=REJOIN_TIMEOUT_S):
        """Waits until the leader has `count` replicas streaming (default: every other node
        whose Patroni runs), one of them synchronous in PostgreSQL and named Patroni's
        sync_standby (the one a failover may promote); returns the leader's name. Raises
        PatroniError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            want = count if count is not None else len(self._live()) - 1
            view = self.cluster_view()
            roles = {x.get("name"): x.get("role") for x in (view or {}).get("members", [])}
            leader = next((k for k, v in roles.items() if v == "leader"), None)
            if leader and self.in_recovery(leader) is False:
                rep = self.replication(leader)
                streaming = [k for k, v in rep.items() if v[0] == "streaming"]
                sync = [k for k, v in rep.items() if v == ("streaming", "sync")]
                last = (leader, rep, roles)
                if len(streaming) >= want and (want == 0 or (
                        sync and any(roles.get(s) == "sync_standby" for s in sync))):
                    return leader
            if time.monotonic() > deadline:
                raise PatroniError("replicas not streaming after %.0f s (want %d): leader, "
                                   "pg_stat_replication, roles = %r" % (timeout, want, last))
            time.sleep(0.1)

    def wait_member_streaming(self, name, timeout=REJOIN_TIMEOUT_S):
        """Waits until `name` streams from the leader (pg_stat_replication says so); returns the
        time.time() it was first seen so. Raises PatroniError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.leader()
            if leader and leader != name and \
                    self.replication(leader).get(name, ("",))[0] == "streaming":
                return time.time()
            if time.monotonic() > deadline:
                raise PatroniError("%s not streaming from the leader (%s) after %.0f s: see %s"
                                   % (name, leader, timeout, self.nodes[name].log))
            time.sleep(0.05)

    # -- faults ----------------------------------------------------------------------------------

    def kill9(self, name):
        """SIGKILL the whole node `name` at once (Patroni, postmaster, backends); returns the
        time.time() just before the first kill."""
        m = self.nodes[name]
        t = time.time()
        self._kill_member(m)
        return t

    def kill9_leader(self):
        """kill9() of the node that is leader now: an unplanned failover begins. Returns the
        time of the kill; self.killed names the node."""
        name = self.leader()
        if not name:
            raise PatroniError("no leader to kill")
        self.killed = name
        return self.kill9(name)

    def restart_member(self, name, wait=True, timeout=REJOIN_TIMEOUT_S):
        """Starts the (killed) node's Patroni again on its data directory and ports. A former
        leader rejoins as a replica: crash recovery, then pg_rewind against the new leader, or
        a new pg_basebackup when rewinding fails. wait: returns the time it was first seen
        streaming from the leader (wait_member_streaming); else None at once."""
        m = self.nodes[name]
        if m.patroni_alive():
            raise PatroniError("%s is running" % name)
        pm = m.postmaster_pid()
        if pm:
            raise PatroniError("%s's postmaster %d still runs" % (name, pm))
        self._launch(m)
        if wait:
            return self.wait_member_streaming(name, timeout=timeout)
        return None

    def switchover(self, candidate=None, timeout=FAILOVER_TIMEOUT_S):
        """A planned switchover through the leader's REST API (POST /switchover {leader,
        candidate}; with candidate None Patroni chooses, which in synchronous mode is the
        synchronous standby). Returns (new leader, promoted_at) as wait_leader() does; the
        request's own time is in self.last_promotion["requested_at"]. The old leader comes back
        as a replica on its own: wait_replicas() waits for it."""
        old = self.leader()
        if not old:
            raise PatroniError("no leader")
        body = {"leader": old}
        if candidate:
            body["candidate"] = candidate
        # Patroni answers the POST once the switchover is over: it is sent from a thread, so
        # that wait_leader() sees the promotion when it happens.
        answer = []
        poster = threading.Thread(target=lambda: answer.append(http(
            "POST", self.nodes[old].api + "/switchover", body, timeout=timeout)), daemon=True)

        def refused():
            if answer and answer[0][0] not in (200, 202):
                return "switchover %s -> %s: %s %s" % (old, candidate, answer[0][0], answer[0][1])
            return None
        t = time.time()
        poster.start()
        try:
            name, at = self.wait_leader(not_=old, timeout=timeout, give_up=refused)
        finally:
            poster.join(timeout)
        if not answer or refused():
            raise PatroniError(refused() or "switchover: Patroni did not answer in %.0f s"
                               % timeout)
        if candidate and name != candidate:
            raise PatroniError("switchover went to %s, not %s" % (name, candidate))
        self.last_promotion["requested_at"] = t
        return name, at

    # -- logs ------------------------------------------------------------------------------------

    _PATRONI_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (\w+): (.*)$")
    _PG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) UTC \[\d+\] (\w+):\s+(.*)$")

    def log_lines(self, name, since=0.0):
        """(time.time(), source 'patroni'|'postgres', level, message) for each line of the node's
        log (Patroni's and its PostgreSQL's stderr, one file) stamped at or after `since`."""
        out = []
        try:
            with open(self.nodes[name].log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return out
        for line in lines:
            mp = self._PATRONI_TS.match(line)
            mg = self._PG_TS.match(line)
            if mp:  # Patroni logs local time
                t = time.mktime(time.strptime(mp.group(1), "%Y-%m-%d %H:%M:%S"))
                t += int(mp.group(2)) / 1000.0
                rec = (t, "patroni", mp.group(3), mp.group(4))
            elif mg:  # log_timezone UTC
                t = calendar.timegm(time.strptime(mg.group(1), "%Y-%m-%d %H:%M:%S"))
                t += int(mg.group(2)) / 1000.0
                rec = (t, "postgres", mg.group(3), mg.group(4))
            else:
                continue
            if rec[0] >= since:
                out.append(rec)
        return out

    def log_times(self, name, since=0.0):
        """From the node's log after `since`: {"lock": when Patroni took the leader key
        ("promoted self to leader by acquiring session lock", or "...manual failover" for a
        switchover), "ready": when its PostgreSQL said "database system is ready to accept
        connections" after that, i.e. the end of the promotion}; a missing one is None."""
        lock = ready = None
        for t, src, _, msg in self.log_lines(name, since):
            if lock is None and src == "patroni" and (
                    "promoted self to leader" in msg or "acquired session lock as a leader" in msg):
                lock = t
            elif lock is not None and ready is None and src == "postgres" and \
                    "database system is ready to accept connections" in msg:
                ready = t
        return {"lock": lock, "ready": ready}

    def describe(self):
        return {"root": self.root, "uri": self.uri(),
                "etcd": "http://127.0.0.1:%d" % self.etcd_client,
                "members": {k: {"pg_port": m.pg_port, "api_port": m.api_port,
                                "uri": m.uri()} for k, m in self.nodes.items()}}


# ---- measuring (patroni.py measure) ---------------------------------------------------------------

class WriteProbe:
    """A thread that INSERTs one row every `interval` s through the cluster's multi-host URI
    (a fresh psql each time, as a client that reconnects would) and records
    (started, finished, server port or None when it failed) per try. Bounded: stop() ends it,
    and it ends by itself after `limit_s`."""

    def __init__(self, cluster, interval=0.05, limit_s=900.0, table="probe"):
        self.c, self.interval, self.limit_s, self.table = cluster, interval, limit_s, table
        self.tries = []
        self._stop = threading.Event()
        self.c.psql_primary("CREATE TABLE IF NOT EXISTS %s (id bigserial PRIMARY KEY, "
                            "port int, at timestamptz DEFAULT clock_timestamp())" % table)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        end = time.monotonic() + self.limit_s
        uri = self.c.uri(connect_timeout="1")
        while not self._stop.is_set() and time.monotonic() < end:
            t0 = time.time()
            port = None
            try:
                r = psql_run(uri, "INSERT INTO %s (port) SELECT inet_server_port() "
                                  "RETURNING port" % self.table, timeout=10)
                if r.returncode == 0 and r.stdout.strip().isdigit():
                    port = int(r.stdout.strip())
            except subprocess.TimeoutExpired:
                pass
            self.tries.append((t0, time.time(), port))
            self._stop.wait(max(0.0, self.interval - (time.time() - t0)))

    def first_ok_after(self, t, port=None, timeout=60.0):
        """finished-time of the first successful INSERT started after t (on `port`, when
        given); waits for it at most `timeout` s, else None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s, f, p in list(self.tries):
                if p and s > t and (port is None or p == port):
                    return f
            time.sleep(0.02)
        return None

    def last_ok_before(self, t, port=None):
        """finished-time of the last successful INSERT finished before t (on `port`)."""
        oks = [f for s, f, p in list(self.tries) if p and f < t and (port is None or p == port)]
        return max(oks) if oks else None

    def acknowledged(self):
        return sum(1 for _, _, p in self.tries if p)

    def stop(self):
        self._stop.set()
        self.thread.join(15)


def _stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return "min %.2f  median %.2f  max %.2f  (n=%d)" % (min(xs), sorted(xs)[len(xs) // 2],
                                                       max(xs), len(xs))


def measure(failovers=5, switchovers=5, strict=False, ttl=TTL, loop_wait=LOOP_WAIT,
            retry_timeout=RETRY_TIMEOUT, out=sys.stdout):
    def say(*a):
        print(*a, file=out, flush=True)
    t0 = time.time()
    c = PatroniCluster.start(strict=strict, ttl=ttl, loop_wait=loop_wait,
                             retry_timeout=retry_timeout)
    say("start: %.2f s (ttl %d loop_wait %d retry_timeout %d strict %s)" %
        (time.time() - t0, ttl, loop_wait, retry_timeout, strict))
    res = {k: [] for k in ("lock_log", "ready_log", "promoted_seen", "write", "rejoin",
                           "sw_promoted", "sw_write", "sw_gap", "sw_ready_log", "sw_replicas")}
    try:
        probe = WriteProbe(c)
        for i in range(failovers):
            old = c.leader()
            time.sleep(1.0 + (i % 3) * 0.37)  # kills at different points of the loop
            tk = c.kill9_leader()
            name, at = c.wait_leader(not_=old)
            tw = probe.first_ok_after(tk)
            lt = c.log_times(name, since=tk)
            rj_t0 = time.time()
            c.restart_member(old)
            rj = time.time() - rj_t0
            c.wait_replicas()
            rewound = any("running pg_rewind from" in m
                          for _, _, _, m in c.log_lines(old, since=rj_t0))
            basebackup = any("replica has been created using basebackup" in m or
                             "trying to bootstrap from leader" in m
                             for _, _, _, m in c.log_lines(old, since=rj_t0))
            row = dict(lock_log=lt["lock"] and lt["lock"] - tk,
                       ready_log=lt["ready"] and lt["ready"] - tk, promoted_seen=at - tk,
                       write=tw and tw - tk, rejoin=rj)
            for k, v in row.items():
                res[k].append(v)
            say("failover %d: %s -> %s  lock(log) %s  ready(log) %s  out-of-recovery(seen) "
                "%.2f  first write %s  rejoin %.2f s%s%s" % (
                    i + 1, old, name, _f(row["lock_log"]), _f(row["ready_log"]),
                    row["promoted_seen"], _f(row["write"]), rj,
                    " (pg_rewind)" if rewound else "", " (basebackup)" if basebackup else ""))
        for i in range(switchovers):
            old = c.leader()
            time.sleep(1.0)
            name, at = c.switchover()
            tr = c.last_promotion["requested_at"]
            tw = probe.first_ok_after(tr, port=c.nodes[name].pg_port)
            last_old = probe.last_ok_before(tw or time.time(), port=c.nodes[old].pg_port)
            lt = c.log_times(name, since=tr)
            c.wait_replicas()
            row = dict(sw_promoted=at - tr, sw_write=tw and tw - tr,
                       sw_gap=tw and last_old and tw - last_old,
                       sw_ready_log=lt["ready"] and lt["ready"] - tr,
                       sw_replicas=time.time() - tr)
            for k, v in row.items():
                res[k].append(v)
            say("switchover %d: %s -> %s  ready(log) %s  out-of-recovery(seen) %.2f  first "
                "write on it %s  (no write for %s)  healthy again (2 streaming, 1 sync) %.2f s" % (
                    i + 1, old, name, _f(row["sw_ready_log"]), row["sw_promoted"],
                    _f(row["sw_write"]), _f(row["sw_gap"]), row["sw_replicas"]))
        probe.stop()
        oks = probe.acknowledged()
        say("probe: %d inserts, %d failed" % (len(probe.tries), len(probe.tries) - oks))
        rows = c.psql_primary("SELECT count(*) FROM probe")
        say("probe rows in the table: %s; inserts acknowledged: %d%s" % (
            rows, oks, "" if int(rows) >= oks else "  LOST ACKNOWLEDGED WRITES"))
        say("\nkill -> Patroni took the leader key (log):     " + _stats(res["lock_log"]))
        say("kill -> PostgreSQL ready, promoted (log):       " + _stats(res["ready_log"]))
        say("kill -> pg_is_in_recovery() false (polled):     " + _stats(res["promoted_seen"]))
        say("kill -> first INSERT through the URI succeeded: " + _stats(res["write"]))
        say("old leader restarted -> streaming again:        " + _stats(res["rejoin"]))
        say("switchover request -> promoted (log):           " + _stats(res["sw_ready_log"]))
        say("switchover request -> out of recovery (polled): " + _stats(res["sw_promoted"]))
        say("switchover request -> first INSERT on the new:  " + _stats(res["sw_write"]))
        say("switchover: no INSERT succeeded for:            " + _stats(res["sw_gap"]))
        say("switchover request -> healthy again (2+1 sync):  " + _stats(res["sw_replicas"]))
    finally:
        c.stop()
    return res


def measure_sync(strict=False, out=sys.stdout):
    """What synchronous_mode does to writes when nodes die (patroni.py measure-sync)."""
    def say(*a):
        print(*a, file=out, flush=True)

    def write(timeout):
        """one INSERT through the URI: (seconds it took, ok)."""
        t = time.time()
        try:
            r = psql_run(c.uri(connect_timeout="1"), "INSERT INTO w DEFAULT VALUES",
                         timeout=timeout)
            return time.time() - t, r.returncode == 0
        except subprocess.TimeoutExpired:
            return time.time() - t, False

    c = PatroniCluster.start(strict=strict)
    say("strict=%s; leader %s, sync standby %s" % (strict, c.leader(), c.sync_standby()))
    try:
        c.psql_primary("CREATE TABLE w (id bigserial PRIMARY KEY)")
        leader = c.leader()
        sync = c.sync_standby()
        other = [m for m in c.members() if m not in (leader, sync)][0]
        say("write, all 3 up: %.3f s ok=%s" % write(10))
        # 1. the synchronous standby dies: commits wait until Patroni names the other one.
        tk = c.kill9(sync)
        d, ok = write(30)
        say("1 dead (sync standby %s): a write right after the kill took %.2f s ok=%s" % (
            sync, time.time() - tk, ok))
        c.wait_replicas(count=1, timeout=30)
        say("   %.2f s after the kill the synchronous standby is %s" % (
            time.time() - tk, c.sync_standby()))
        # 2. the other replica dies too: the leader is alone.
        tk = c.kill9(other)
        d, ok = write(20)
        say("2 dead (leader %s alone): a write right after the kill took %.2f s ok=%s; "
            "synchronous_standby_names=%r" % (leader, time.time() - tk, ok, c.psql(
                leader, "SHOW synchronous_standby_names")))
        if not ok:
            d2, ok2 = write(5)
            say("   another write: %.2f s ok=%s" % (d2, ok2))
        t = time.time()
        c.restart_member(sync)
        say("restarted %s: streaming after %.2f s" % (sync, time.time() - t))
        d, ok = write(30)
        say("   then a write: %.2f s ok=%s" % (d, ok))
        c.restart_member(other)
        c.wait_replicas()
        # 2b. the same, but the second replica dies in the ~2 s between Patroni putting it in
        # synchronous_standby_names and in its /sync key (ha.py process_sync_replication).
        leader, sync = c.leader(), c.sync_standby()
        other = [m for m in c.members() if m not in (leader, sync)][0]
        c.kill9(sync)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and c.psql(
                leader, "SHOW synchronous_standby_names", db="postgres") != other:
            time.sleep(0.02)
        tk = c.kill9(other)
        d, ok = write(20)
        say("2 dead, the second while Patroni was making it synchronous: a write right after "
            "took %.2f s ok=%s; synchronous_standby_names=%r, Patroni's sync standby %s" % (
                time.time() - tk, ok, c.psql(leader, "SHOW synchronous_standby_names"),
                c.sync_standby()))
        t = time.time()
        c.restart_member(sync)
        d, ok = write(30)
        say("   restarted %s (%.2f s): then a write: %.2f s ok=%s" % (sync, time.time() - t,
                                                                       d, ok))
        c.restart_member(other)
        c.wait_replicas()
        # 3. the leader and the synchronous standby die at once: the async replica left must
        # not be promoted (it may lack acknowledged commits).
        leader, sync = c.leader(), c.sync_standby()
        other = [m for m in c.members() if m not in (leader, sync)][0]
        tk = c.kill9(leader)
        c.kill9(sync)
        promoted = None
        try:
            promoted = c.wait_leader(not_=leader, timeout=c.ttl + 10)
        except PatroniError:
            pass
        say("leader %s and sync standby %s killed: %s promoted within ttl+10 s: %s" % (
            leader, sync, other, promoted))
        t = time.time()
        c.restart_member(sync, wait=False)
        name, at = c.wait_leader(not_=leader, timeout=60)
        say("restarted %s: leader now %s, %.2f s after its restart" % (sync, name, at - t))
        d, ok = write(30)
        say("   then a write: %.2f s ok=%s" % (d, ok))
    finally:
        c.stop()


def _f(x):
    return "n/a" if x is None else "%.2f" % x


def main(argv):
    if len(argv) in (3, 4) and argv[1] == "start":
        c = PatroniCluster.start(n=int(argv[3]) if len(argv) == 4 else 3, root=argv[2],
                                 register=False)
        d = c.describe()
        d["leader"] = c.leader()
        d["started_in_s"] = round(c.started_in, 2)
        print(json.dumps(d, indent=1))
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        if os.path.exists(os.path.join(argv[2], "state.json")):
            PatroniCluster.load(argv[2]).stop()
        else:
            shutil.rmtree(argv[2], ignore_errors=True)
        return 0
    if len(argv) >= 2 and argv[1] == "measure":
        import argparse
        ap = argparse.ArgumentParser(prog="patroni.py measure")
        ap.add_argument("--failovers", type=int, default=5)
        ap.add_argument("--switchovers", type=int, default=5)
        ap.add_argument("--strict", action="store_true")
        ap.add_argument("--ttl", type=int, default=TTL)
        ap.add_argument("--loop-wait", type=int, default=LOOP_WAIT)
        ap.add_argument("--retry-timeout", type=int, default=RETRY_TIMEOUT)
        a = ap.parse_args(argv[2:])
        measure(a.failovers, a.switchovers, a.strict, a.ttl, a.loop_wait, a.retry_timeout)
        return 0
    if len(argv) in (2, 3) and argv[1] == "measure-sync":
        measure_sync(strict=argv[2:] == ["--strict"])
        return 0
    print("usage: patroni.py start DIR [N] | stop DIR | measure [options] | "
          "measure-sync [--strict]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
