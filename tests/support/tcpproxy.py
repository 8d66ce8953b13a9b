"""A small TCP proxy for the tests: loopback only, one thread per direction of each connection,
between books-server and PostgreSQL, with faults a test switches on:

    px = TcpProxy(("127.0.0.1", pg_port)).start()   # px.port: where books-server connects
    px.drop_after(b"COMMIT\\0", refuse_s=0)          # the next client->server chunk holding
                                                     # those bytes is forwarded, then every
                                                     # connection is cut; new ones are refused
                                                     # (closed at once) for refuse_s seconds
    px.delay_ms = 50                                 # latency added to every chunk
    px.stop()

"Right after forwarding COMMIT": PostgreSQL gets the COMMIT (and commits), books-server never
gets its answer, which is the reply a client loses on Cloud Run when an instance or a connection
goes away at the wrong moment. Threads only (the tests never fork: tests/wire/harness.py)."""

import socket
import threading
import time


class TcpProxy:
    def __init__(self, upstream, delay_ms=0):
        self.upstream = upstream
        self.delay_ms = delay_ms
        self.port = None
        self._lsock = None
        self._lock = threading.Lock()
        self._conns = []          # (client socket, upstream socket)
        self._trigger = None      # bytes that arm a drop
        self._refuse_until = 0.0
        self._refuse_s = 0.0
        self.drops = 0            # how many times the trigger fired
        self.refused = 0          # connections refused while refusing
        self._stopping = False
        self._cut = set()         # ids of upstream sockets being drained after a drop

    def start(self):
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(128)
        self.port = self._lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def drop_after(self, trigger, refuse_s=0.0):
        with self._lock:
            self._trigger = trigger
            self._refuse_s = refuse_s

    def _accept(self):
        while not self._stopping:
            try:
                c, _ = self._lsock.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                self.refused += 1
                c.close()
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns.append((c, u))
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _cut_all(self, gently=False):
        """Closes every connection. gently: the client side (books-server) at once, the upstream
        side (PostgreSQL) only after a FIN and its answers, read and thrown away: so PostgreSQL
        processes every byte it was sent (the COMMIT), and the client learns nothing."""
        with self._lock:
            conns, self._conns = self._conns, []
            if gently:
                self._cut.update(id(u) for _, u in conns)
        for c, u in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
            if gently:
                try:
                    u.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue  # its reader thread drains it to EOF and closes it
            try:
                u.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            u.close()

    def _pump(self, src, dst, to_server):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if not to_server and id(src) in self._cut:
                continue  # a dropped connection's answers: read and thrown away
            if self.delay_ms:
                time.sleep(self.delay_ms / 1000.0)
            fire = False
            if to_server:
                with self._lock:
                    if self._trigger is not None and self._trigger in data:
                        self._trigger = None
                        fire = True
            try:
                dst.sendall(data)
            except OSError:
                break
            if fire:
                # PostgreSQL gets the bytes, books-server never gets the answer.
                self.drops += 1
                self._refuse_until = time.monotonic() + self._refuse_s
                self._cut_all(gently=True)
                return
        if not to_server and id(src) in self._cut:
            self._cut.discard(id(src))
            src.close()
            return
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stopping = True
        try:
            self._lsock.close()
        except OSError:
            pass
        self._cut_all()
