#!/usr/bin/env python3
"""TCP relays that inject the end-to-end test's faults (e2e_alerting.py) in
front of real servers: a rewritten WebSocket upgrade, a slow server, a
connection reset now and then. A probe's config names the relay, never the
server, so switching a fault changes neither canaryd's config nor its series.
python3 standard library only."""

import select
import socket
import struct
import threading
import time


# --------------------------------------------------------------------------- fault relays

class Relay:
    """A TCP relay on a free loopback port to one upstream port, one thread per
    connection. Subclasses inject a fault: a probe's config names the relay,
    never the server, so switching a fault changes neither canaryd's config nor
    its series, as in a real incident."""

    MAX_LIFETIME = 30.0

    def __init__(self, name, upstream_port):
        self.name, self.upstream_port = name, upstream_port
        self.lock = threading.Lock()
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept_loop, name=name, daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept_loop(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(client, n), daemon=True).start()

    def _serve(self, client, n):
        upstream = None
        try:
            client.settimeout(5)
            first = self.first_bytes(client, n)
            if first is None:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            if first:
                upstream.sendall(first)
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    s.close()

    def first_bytes(self, client, n):
        """What to send upstream before relaying (b"" for nothing), or None to
        drop connection n without relaying it."""
        return b""

    def upstream_delay(self):
        """Seconds to hold each chunk from the server before the client gets it."""
        return 0.0

    def _pump(self, client, upstream):
        peer = {client: upstream, upstream: client}
        open_readers = {client, upstream}
        deadline = time.monotonic() + self.MAX_LIFETIME
        while open_readers and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_readers), [], [], 1.0)
            for s in readable:
                data = s.recv(65536)
                if data:
                    if s is upstream:
                        time.sleep(self.upstream_delay())
                    peer[s].sendall(data)
                else:
                    open_readers.discard(s)
                    try:
                        peer[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass


class FaultSwitch(Relay):
    """Forwards each HTTP connection unchanged; while `on`, rewrites the upgrade
    request's query to subprotocol=none (the fixture then selects no
    subprotocol in its 101)."""

    MAX_HEAD = 64 * 1024

    def __init__(self, upstream_port):
        self.on = threading.Event()
        self.rewritten = 0
        super().__init__("fault-switch", upstream_port)

    @property
    def relayed(self):
        return self.connections

    @staticmethod
    def faulty_target(target):
        path, _, query = target.partition(b"?")
        params = [p for p in query.split(b"&") if p and not p.startswith(b"subprotocol=")]
        return path + b"?" + b"&".join(params + [b"subprotocol=none"])

    def first_bytes(self, client, n):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) + len(chunk) > self.MAX_HEAD:
                return None
            head += chunk
        line_end = head.index(b"\r\n")
        parts = head[:line_end].split(b" ")
        if len(parts) != 3:
            return None
        method, target, version = parts
        if self.on.is_set():
            target = self.faulty_target(target)
            with self.lock:
                self.rewritten += 1
        return b" ".join([method, target, version]) + head[line_end:]


class SlowServer(Relay):
    """While `slow` is set, every answer of the server reaches the client
    `delay` seconds late: a database that is slow but still answers."""

    def __init__(self, name, upstream_port, delay):
        self.slow = threading.Event()
        self.delay = delay
        super().__init__(name, upstream_port)

    def upstream_delay(self):
        return self.delay if self.slow.is_set() else 0.0


class Flapper(Relay):
    """Resets one connection in `every` (the every-th, 2·every-th, ...) before
    it reaches the server: a target that fails one run in `every`, then works."""

    def __init__(self, name, upstream_port, every):
        self.every = every
        self.dropped = 0
        super().__init__(name, upstream_port)

    def first_bytes(self, client, n):
        if n % self.every:
            return b""
        with self.lock:
            self.dropped += 1
        # SO_LINGER 0: the close sends a RST, as a crashed or overloaded peer does.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return None
