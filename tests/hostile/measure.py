#!/usr/bin/python3
"""Measures what hostile input does to a books-server: for each attack of tests/wire/hostile.py,
a fresh server, a well-behaved client running beside the attack, the server's memory, and whether
it is still healthy (and exits 0 on SIGTERM) afterwards. Prints a Markdown table.

    /usr/bin/python3 tests/hostile/measure.py --server 'CMD' [--attacks a,b,...] [--out FILE.md]
        [--json FILE.json] [--scale 1.0] [--rss-limit-mib 3072]

CMD is run with `bash -c 'CMD --port 0'` (PORT and BOOKS_* are removed from its environment, as
the wire tests do; put settings in CMD itself, e.g. 'BOOKS_THREADS=1 build/books-server'). The
bound port is read from the JSON "listening" log line; the server's PID is the process under
bash that listens on it (bash usually execs it directly).

For each attack:
  1. start a fresh server, wait for health SERVING, seed 5 books with CreateBook;
  2. start a well-behaved client on its own channel: GetBook in a loop, every latency and error;
  3. run the attack (its own bounds: count and wall time, at most ~60 s), sampling the server's
     VmRSS/VmHWM from /proc/PID/status every 20 ms; past --rss-limit-mib the attack is told to
     stop, past that limit + 2 GiB the server is killed (SIGKILL) to protect the machine;
  4. afterwards: alive? health Check SERVING? the seeded books unchanged? SIGTERM and the exit
     code (SIGKILL when it does not exit within grace + 30 s).
Columns: the attacker's view (hostile.summarize), peak RSS (max of VmRSS samples and VmHWM),
RSS growth (peak minus the RSS just before the attack), RSS at the end, the good client's p50/p99
latency of the calls it started during the attack, its errors, the state after, the exit code.

Attack names: see --list. Use Debian's /usr/bin/python3 (python3-grpcio, python3-h2)."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WIRE = os.path.abspath(os.path.join(HERE, "..", "wire"))
sys.path.insert(0, WIRE)

import hostile  # noqa: E402  (imports harness, which generates the stubs)
import proxy  # noqa: E402

HOST = "127.0.0.1"
MiB = 1 << 20

# The bounds measure.py runs each attack with (the brief's sizes); --scale shrinks the counts.
MEASURE_BOUNDS = {
    "page_tokens": dict(max_len=420, max_seconds=60),
    "violation_flood": dict(authors=1_300_000, bad_fields=5000, concurrency=48, max_seconds=60),
    "compression_bomb": dict(inflated=256 * MiB, max_seconds=60),
    "random_bytes": dict(per_method=300, max_seconds=60),
    "oversized_metadata": dict(big_value=MiB, many=10000, held_connections=8, held_streams=100,
                               held_value=MiB, hold_s=5, max_seconds=60),
    "idle_connections": dict(count=3000, hold_s=10, max_seconds=60),
    "bodiless_streams": dict(connections=100, hold_s=10, max_seconds=60),
    "rapid_reset": dict(connections=4, streams_per_conn=25000, max_seconds=40),
    "continuation_flood": dict(total_bytes=10 * MiB, connections=4, hold_s=5, max_seconds=50),
    "ping_flood": dict(pings=50000, max_seconds=40),
    "odd_paths": dict(max_seconds=60),
}
SCALED = {"authors", "bad_fields", "concurrency", "inflated", "per_method", "many", "count",
          "connections", "streams_per_conn", "total_bytes", "pings", "held_connections",
          "held_streams", "held_value", "big_value"}


def scaled(bounds, scale):
    out = dict(bounds)
    if scale != 1.0:
        for k in SCALED & set(out):
            out[k] = max(1, int(out[k] * scale))
    return out


# ---------------------------------------------------------------------------------------------
# The server.

def clean_env():
    env = dict(os.environ)
    for k in list(env):
        if k == "PORT" or k.startswith("BOOKS_"):
            del env[k]
    return env


def read_status(pid):
    """(VmRSS kB, VmHWM kB) or None when the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            vals[k] = int(v.split()[0])
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def listening_inodes(port):
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            pass
    return inodes


def owns_socket(pid, inodes):
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        pass
    return False


class Server:
    def __init__(self, cmd, label):
        self.cmd = cmd
        self.label = label
        self.dir = tempfile.mkdtemp(prefix="books-hostile-")
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.proc = None
        self.pid = None
        self.port = None

    def start(self, timeout=60):
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(["bash", "-c", self.cmd + " --port 0"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env=clean_env(),
                                     start_new_session=True, close_fds=True)
        out.close()
        err.close()
        deadline = time.monotonic() + timeout
        while self.port is None:
            for line in self.stdout().splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("message") == "listening" and \
                        isinstance(obj.get("port"), int):
                    self.port = obj["port"]
                    break
            if self.port is None:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited with %s before \"listening\"\n%s" %
                                       (self.proc.returncode, self.tail()))
                if time.monotonic() > deadline:
                    raise RuntimeError("no \"listening\" line within %d s\n%s" % (timeout,
                                                                                 self.tail()))
                time.sleep(0.02)
        self.pid = self._find_pid()
        while hostile.health_status(HOST, self.port, timeout=2) != "SERVING":
            if not self.running():
                raise RuntimeError("server died while starting\n" + self.tail())
            if time.monotonic() > deadline:
                raise RuntimeError("server not SERVING within %d s\n%s" % (timeout, self.tail()))
            time.sleep(0.05)
        return self

    def _find_pid(self):
        """The process (bash itself or a descendant) that owns the listening socket."""
        inodes = listening_inodes(self.port)
        todo, seen = [self.proc.pid], []
        while todo:
            p = todo.pop(0)
            seen.append(p)
            if inodes and owns_socket(p, inodes):
                return p
            todo += children(p)
        return seen[-1]

    def running(self):
        if self.proc.poll() is not None:
            return False
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=3000):
        return "--- stderr (tail):\n%s\n--- stdout (tail):\n%s" % (self.stderr()[-n:],
                                                                    self.stdout()[-n:])

    def kill(self):
        if self.running():
            os.kill(self.pid, signal.SIGKILL)

    def stop(self, grace_s=8 + 30):
        """SIGTERM by PID; SIGKILL when it does not exit in grace_s. Returns (exit description,
        killed)."""
        killed = False
        if self.proc.poll() is None and self.running():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                killed = True
                self.kill()
                self.proc.wait(30)
        else:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                if self.proc.poll() is None:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(30)
        return describe_exit(self.proc.returncode, self.pid != self.proc.pid), killed

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def describe_exit(rc, via_bash):
    if rc is None:
        return "?"
    if rc < 0:
        return "%d (%s)" % (rc, signal.Signals(-rc).name)
    if via_bash and rc > 128 and rc - 128 < 65:
        try:
            return "%d (%s)" % (rc, signal.Signals(rc - 128).name)
        except ValueError:
            pass
    return str(rc)


class RssSampler(threading.Thread):
    def __init__(self, pid, limit_kib, kill_kib, stop_attack, on_kill, interval=0.02):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.limit_kib = limit_kib
        self.kill_kib = kill_kib
        self.stop_attack = stop_attack
        self.on_kill = on_kill
        self.interval = interval
        self.done = threading.Event()
        self.peak_rss = 0
        self.peak_hwm = 0
        self.last_rss = 0
        self.samples = 0
        self.limit_hit = None
        self.killed_at = None

    def run(self):
        t0 = time.monotonic()
        while not self.done.is_set():
            st = read_status(self.pid)
            if st is None or st == (0, 0):
                break
            rss, hwm = st
            self.samples += 1
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_hwm = max(self.peak_hwm, hwm)
            if rss > self.limit_kib and self.limit_hit is None:
                self.limit_hit = (round(time.monotonic() - t0, 2), rss)
                self.stop_attack.set()
            if rss > self.kill_kib and self.killed_at is None:
                self.killed_at = (round(time.monotonic() - t0, 2), rss)
                self.on_kill()
            self.done.wait(self.interval)

    def stop(self):
        self.done.set()
        self.join(5)


# ---------------------------------------------------------------------------------------------
# One attack.

def measure_one(cmd, name, bounds, rss_limit_mib, log=print, via_nghttpx=False):
    fn = hostile.ATTACKS[name]
    row = {"attack": name, "bounds": bounds}
    srv = Server(cmd, name)
    px = None
    try:
        srv.start()
        # Everything the clients do goes to `port`: the server's own, or nghttpx's in front.
        port = srv.port
        if via_nghttpx:
            px = proxy.Nghttpx(srv.port).start()
            port = px.port
        books = hostile.seed_books(HOST, port, n=5)
        base = read_status(srv.pid)
        row["rss_before_kib"] = base[0] if base else None
        stop_attack = threading.Event()
        sampler = RssSampler(srv.pid, rss_limit_mib * 1024, (rss_limit_mib + 2048) * 1024,
                             stop_attack, srv.kill)
        sampler.start()
        good = hostile.GoodClient(HOST, port, books).start()
        holder = {}

        def run():
            try:
                holder["result"] = fn(HOST, port, stop=stop_attack, **bounds)
            except Exception as e:  # an attacker bug must not hide the other measurements
                import traceback
                holder["error"] = "%s\n%s" % (e, traceback.format_exc()[-2000:])

        t0 = time.monotonic()
        th = threading.Thread(target=run, name="attack-" + name, daemon=True)
        th.start()
        th.join(bounds.get("max_seconds", 60) + 30)
        if th.is_alive():
            stop_attack.set()
            th.join(30)
            row["overran"] = True
        t1 = time.monotonic()
        time.sleep(1.0)                 # let the server settle; the sampler keeps watching
        good.stop()
        lat, errs = good.window(t0, t1)
        row["good_calls"] = len(lat)
        row["good_p50_ms"] = hostile.percentile(lat, 50)
        row["good_p99_ms"] = hostile.percentile(lat, 99)
        row["good_max_ms"] = max(lat) if lat else None
        row["good_errors"] = dict(errs)
        row["good_mismatches"] = len(good.mismatches)
        row["result"] = holder.get("result")
        row["attack_error"] = holder.get("error")
        row["alive"] = srv.running()
        if row["alive"]:
            health = None
            for _ in range(3):
                health = hostile.health_status(HOST, port, timeout=5)
                if health == "SERVING":
                    break
            row["health"] = health
            row["book_problems"] = hostile.check_books(HOST, port, books, timeout=5) \
                if health == "SERVING" else ["not checked: health %s" % health]
        else:
            row["health"] = "dead"
            row["book_problems"] = ["server dead"]
        end = read_status(srv.pid)
        sampler.stop()
        row["rss_end_kib"] = end[0] if end else None
        row["peak_rss_kib"] = max(sampler.peak_rss, sampler.peak_hwm, end[1] if end else 0)
        row["rss_limit_hit"] = sampler.limit_hit
        row["killed_for_rss"] = sampler.killed_at
        if px:
            px.stop()
            px = None
        row["exit"], row["sigkilled_after_sigterm"] = srv.stop()
        row["stderr_tail"] = srv.stderr()[-3000:]
        if not row["alive"] or row["sigkilled_after_sigterm"] or \
                not row["exit"].startswith("0"):
            log("---- %s: server %s; exit %s\n%s" % (
                name, "died during the attack" if not row["alive"] else "ended badly",
                row["exit"], srv.tail()))
    except Exception as e:
        row["setup_error"] = repr(e)
        log("---- %s: measurement failed: %r" % (name, e))
        try:
            srv.kill()
            srv.proc.wait(10)
        except Exception:
            pass
    finally:
        if px:
            try:
                px.stop()
            except Exception:
                pass
        srv.cleanup()
    return row


# ---------------------------------------------------------------------------------------------
# The table.

def mib(kib):
    return "%.0f" % (kib / 1024.0) if kib is not None else "?"


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_ms(v):
    return "?" if v is None else ("%.1f" % v if v < 100 else "%.0f" % v)


def row_cells(r):
    res = r.get("result")
    if r.get("setup_error"):
        saw = "measurement failed: " + r["setup_error"]
    elif r.get("attack_error"):
        saw = "attacker error: " + r["attack_error"].splitlines()[0]
    else:
        saw = hostile.summarize(res or {}, width=600)
    if r.get("rss_limit_hit"):
        saw += "; RSS passed the limit at %.1f s (%s MiB): attack told to stop" % (
            r["rss_limit_hit"][0], mib(r["rss_limit_hit"][1]))
    if r.get("killed_for_rss"):
        saw += "; server SIGKILLed at %s MiB" % mib(r["killed_for_rss"][1])
    if r.get("overran"):
        saw += "; attack overran its bound"
    peak = r.get("peak_rss_kib")
    growth = (peak - r["rss_before_kib"]) if peak and r.get("rss_before_kib") else None
    good = "%s / %s (n=%s, max %s)" % (fmt_ms(r.get("good_p50_ms")), fmt_ms(r.get("good_p99_ms")),
                                       r.get("good_calls", 0), fmt_ms(r.get("good_max_ms")))
    errs = r.get("good_errors") or {}
    err_txt = ", ".join("%s×%d" % kv for kv in errs.items()) or "0"
    if r.get("good_mismatches"):
        err_txt += ", %d wrong answers" % r["good_mismatches"]
    if "alive" not in r:
        after = "?"
    elif not r["alive"]:
        after = "DEAD"
    else:
        after = "alive, health %s" % r.get("health")
        probs = r.get("book_problems") or []
        after += ", books intact" if not probs else ", books: " + "; ".join(probs)[:120]
    exit_txt = r.get("exit", "?")
    if r.get("sigkilled_after_sigterm"):
        exit_txt += " (no exit after SIGTERM: SIGKILLed)"
    return [r["attack"], saw, mib(peak), mib(growth) if growth is not None else "?",
            mib(r.get("rss_end_kib")), good, err_txt, after, exit_txt]


HEADER = ["attack", "what the attacker saw", "peak RSS MiB", "RSS growth MiB", "RSS at end MiB",
          "good client p50 / p99 ms during the attack", "good-client errors",
          "alive / health after", "exit code after SIGTERM"]


def table(rows):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        lines.append("| " + " | ".join(cell(c) for c in row_cells(r)) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="the server command; ' --port 0' is appended")
    ap.add_argument("--attacks", default="", help="comma-separated (default: all)")
    ap.add_argument("--out", help="also write the Markdown table (and details) here")
    ap.add_argument("--json", help="write every measurement (attack results included) as JSON")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the attacks' counts")
    ap.add_argument("--rss-limit-mib", type=int, default=3072,
                    help="tell an attack to stop when the server's RSS passes this (default "
                    "3072); the server is SIGKILLed at this + 2048")
    ap.add_argument("--via-nghttpx", action="store_true",
                    help="attack through nghttpx configured from docs/nghttpx.conf (as the README "
                    "recommends for self-hosting); RSS is still the server's")
    ap.add_argument("--bounds", default="",
                    help="override bounds of the attacks, NAME=INT,... (e.g. "
                    "connections=64,total_bytes=67108864 for a bigger CONTINUATION flood)")
    ap.add_argument("--list", action="store_true", help="list the attacks and their bounds")
    args = ap.parse_args(argv)
    if args.list:
        for name in hostile.ATTACKS:
            print("%-20s %s" % (name, MEASURE_BOUNDS.get(name, {})))
        return 0
    if not args.server:
        ap.error("--server is required")
    names = [a.strip() for a in args.attacks.split(",") if a.strip()] or list(hostile.ATTACKS)
    for n in names:
        if n not in hostile.ATTACKS:
            ap.error("unknown attack %r; known: %s" % (n, ", ".join(hostile.ATTACKS)))
    hostile.raise_nofile()
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    overrides = {}
    for kv in filter(None, (x.strip() for x in args.bounds.split(","))):
        k, _, v = kv.partition("=")
        overrides[k] = float(v) if "." in v else int(v)
    for name in names:
        bounds = scaled(MEASURE_BOUNDS.get(name, {}), args.scale)
        bounds.update({k: v for k, v in overrides.items() if k in bounds})
        print("== %s %s" % (name, bounds), flush=True)
        t = time.monotonic()
        r = measure_one(args.server, name, bounds, args.rss_limit_mib,
                        via_nghttpx=args.via_nghttpx)
        r["measure_s"] = round(time.monotonic() - t, 1)
        rows.append(r)
        print("   " + " | ".join(cell(c) for c in row_cells(r)), flush=True)
    md = table(rows)
    head = ("Hostile-input measurements of `%s`%s (%s; scale %s; RSS limit %d MiB; "
            "good client = GetBook loop on its own channel, latencies of the calls it started "
            "during the attack)\n\n" % (args.server, " through nghttpx (docs/nghttpx.conf)"
                                         if args.via_nghttpx else "", started, args.scale,
                                         args.rss_limit_mib))
    print()
    print(head + md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(head + md + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
