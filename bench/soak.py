#!/usr/bin/python3
"""soak.py: a long mixed load at a fixed share of capacity, sampling the server's memory and open
files, to show whether anything grows without bound (issue 16). Not a test: it prints numbers.

  bench/soak.py --store URI [--minutes 30] [--share 0.8] [--sample-s 10] [--out FILE.csv] BINARY

1. starts BINARY (BOOKS_STORE=URI, PORT free, pinned to CPU 0 when there are two or more) and seeds
   books/b0000..b0999 (bench.py seed);
2. capacity: 20 s of GetBook, ListBooks(page_size=50) and CreateBook at once from three unthrottled
   h2load processes (16 clients x 10 streams each, pinned to the other CPUs) weighted 80/15/5;
   their sum of req/s is the capacity of that mix;
3. the soak: the same three h2loads for --minutes, each held by --rps to its weight of
   share x capacity; every --sample-s seconds VmRSS and the number of open files of the server go
   to the CSV (time_s, rss_kib, open_files, and the server's CPU seconds);
4. prints the slopes of RSS (MiB per hour) and of open files (per hour) by least squares over the
   samples after the first 2 minutes (warm-up: caches fill, pages get touched), the first and last
   values, and the requests each h2load reports (done, failed, non-2xx);
5. SIGTERM, and the exit code.
Uses Debian's h2load (nghttp2-client), like bench/run.sh; bench/deps.sh installs what it needs."""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
MIX = (("GetBook", 0.80), ("ListBooks", 0.15), ("CreateBook", 0.05))
CLIENTS, STREAMS = 16, 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2load(port, method, payloads, cpus, seconds, rps=None):
    cmd = ["h2load", "-c", str(CLIENTS), "-m", str(STREAMS), "-D", str(int(seconds)),
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", os.path.join(payloads, method + ".bin"),
           "http://127.0.0.1:%d/books.v1.BooksService/%s" % (port, method)]
    if rps:
        cmd[1:1] = ["--rps", "%.2f" % max(0.01, rps / CLIENTS)]
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def h2_result(proc):
    out = proc.communicate()[0]
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    s = re.search(r"status codes: (\d+) 2xx", out)
    return {"req_s": float(m.group(1)) if m else 0.0,
            "done": int(r.group(3)) if r else 0, "failed": int(r.group(5)) if r else -1,
            "2xx": int(s.group(1)) if s else 0}


def slope_per_hour(points):
    """Least-squares slope of (t seconds, y) in y per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 3600.0 * sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--store", required=True)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--share", type=float, default=0.8)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--out")
    a = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="books-soak-")
    port = free_port()
    ncpu = len(os.sched_getaffinity(0))
    server_cpu, client_cpus = ("0", "1-%d" % (ncpu - 1)) if ncpu > 1 else (None, None)
    env = dict(os.environ, PORT=str(port), BOOKS_STORE=a.store)
    cmd = [a.binary] if not server_cpu else ["taskset", "-c", server_cpu, a.binary]
    log = open(os.path.join(work, "server.log"), "wb")
    srv = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    rc = None
    try:
        subprocess.run([PY, os.path.join(HERE, "bench.py"), "payloads",
                        os.path.join(work, "payloads")], check=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                subprocess.run([PY, os.path.join(HERE, "bench.py"), "seed",
                                "127.0.0.1:%d" % port, "1000"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise
                time.sleep(0.5)
        payloads = os.path.join(work, "payloads")
        print("soak: %s, store %s, port %d" % (a.binary, a.store, port), flush=True)

        probes = [h2load(port, m, payloads, client_cpus, 20) for m, _ in MIX]
        cap = {m: h2_result(p) for (m, _), p in zip(MIX, probes)}
        total = sum(r["req_s"] for r in cap.values())
        print("capacity of the mix: %.0f req/s (%s)" % (
            total, ", ".join("%s %.0f" % (m, r["req_s"]) for m, r in cap.items())), flush=True)

        target = a.share * total
        seconds = a.minutes * 60
        loads = [h2load(port, m, payloads, client_cpus, seconds, rps=w * target) for m, w in MIX]
        t0 = time.monotonic()
        samples = []
        csv = open(a.out, "w") if a.out else None
        if csv:
            csv.write("time_s,rss_kib,open_files,cpu_s\n")
        while time.monotonic() - t0 < seconds + 5 and any(p.poll() is None for p in loads):
            st = status(srv.pid)
            rss = int(st["VmRSS"].split()[0])
            fds = len(os.listdir("/proc/%d/fd" % srv.pid))
            t = time.monotonic() - t0
            samples.append((t, rss, fds, cpu_s(srv.pid)))
            if csv:
                csv.write("%.1f,%d,%d,%.2f\n" % samples[-1])
                csv.flush()
            time.sleep(a.sample_s)
        results = {m: h2_result(p) for (m, _), p in zip(MIX, loads)}
        steady = [s for s in samples if s[0] >= 120] or samples
        rss_slope = slope_per_hour([(t, r / 1024.0) for t, r, _, _ in steady])
        fd_slope = slope_per_hour([(t, f) for t, _, f, _ in steady])
        print("soak: %.0f min at %.0f%% of capacity (%.0f req/s offered)" % (
            a.minutes, 100 * a.share, target))
        for m, r in results.items():
            print("  %-10s %.0f req/s, %d done, %d failed, %d 2xx" % (
                m, r["req_s"], r["done"], r["failed"], r["2xx"]))
        print("  RSS: first %.1f MiB, after warm-up %.1f MiB, last %.1f MiB, max %.1f MiB; slope "
              "%+.2f MiB/hour" % (samples[0][1] / 1024, steady[0][1] / 1024,
                                  samples[-1][1] / 1024, max(s[1] for s in samples) / 1024,
                                  rss_slope))
        print("  open files: first %d, last %d, max %d; slope %+.2f per hour" % (
            samples[0][2], samples[-1][2], max(s[2] for s in samples), fd_slope))
        print("  server CPU: %.0f s over %d samples" % (samples[-1][3] - samples[0][3],
                                                         len(samples)), flush=True)
    finally:
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                rc = srv.wait(60)
            except subprocess.TimeoutExpired:
                srv.kill()
                rc = srv.wait()
        log.close()
        print("  exit code after SIGTERM: %s" % rc)
        shutil.rmtree(work, ignore_errors=True)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
