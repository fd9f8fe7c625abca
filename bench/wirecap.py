"""Per-request "wire truth" for benchmark (b), from packets on the loopback
interface.

An AF_PACKET socket on `lo` with a classic BPF filter (IPv4, TCP, one server
port, received copies only) records, with the kernel's own timestamps
(SO_TIMESTAMPNS, CLOCK_REALTIME), every packet to and from the /sleep
listener. For each TCP connection it keeps:

  syn    the client's SYN: the request starts on the wire;
  synack the server's SYN-ACK;
  req    the first packet with request bytes;
  end    the last server packet that carried payload: the whole response is in
         the client's socket buffer;
  tag    the `probe=` query parameter of the request line, which names the
        client (a canaryd probe, the loadgen reference, curl).

"served" = (SYN-ACK - SYN) + (end - req) is what the network and the server
took for the exchange. A client's own figure for the same request minus that
is its measurement error: its time from timer start to the SYN, from the
handshake to sending the request, and from the response's arrival to the
moment it noticed (its event loop's delay), which is what (b) is about.

WsTextCapture (the agent benchmark) records instead, on a set of server ports,
every packet whose TCP payload starts a WebSocket text frame (first byte 0x81):
the client's message of an agent conversation and each event the server sends.

Needs CAP_NET_RAW (root here). Loopback only, by construction.
"""

import ctypes
import json
import socket
import struct
import threading
import time

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
PACKET_HOST = 0
SOL_PACKET = 263
PACKET_STATISTICS = 6


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _bpf_tcp_port(port):
    """Classic BPF over the IP header (SOCK_DGRAM packet socket): accept received
    (not outgoing) unfragmented IPv4 TCP packets with `port` as either port."""
    prog = [
        (0x20, 0, 0, 0xFFFFF004),   # 0: A = skb->pkt_type (SKF_AD_OFF + SKF_AD_PKTTYPE)
        (0x15, 0, 9, PACKET_HOST),  # 1: A == PACKET_HOST ? 2 : drop
        (0x30, 0, 0, 9),            # 2: A = ip[9] (protocol)
        (0x15, 0, 7, 6),            # 3: TCP ? 4 : drop
        (0x28, 0, 0, 6),            # 4: A = ip[6:2] (flags, fragment offset)
        (0x45, 5, 0, 0x1FFF),       # 5: a fragment ? drop : 6
        (0xB1, 0, 0, 0),            # 6: X = 4 * (ip[0] & 0xf)
        (0x48, 0, 0, 0),            # 7: A = tcp source port
        (0x15, 3, 0, port),         # 8: == port ? accept : 9
        (0x48, 0, 0, 2),            # 9: A = tcp destination port
        (0x15, 1, 0, port),         # 10: == port ? accept : drop
        (0x06, 0, 0, 0),            # 11: drop
        (0x06, 0, 0, 0x40000),      # 12: accept
    ]
    arr = (_SockFilter * len(prog))(*[_SockFilter(*i) for i in prog])
    return arr, _SockFprog(len(prog), arr)


def _assemble(prog):
    """Classic BPF with labels: items are (code, jt, jf, k) where jt/jf may be a
    label name, or a str (a label at that point). Returns (array, sock_fprog)."""
    labels, out = {}, []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(out)
        else:
            out.append(item)
    insns = []
    for i, (code, jt, jf, k) in enumerate(out):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        assert 0 <= jt < 256 and 0 <= jf < 256, (i, jt, jf)
        insns.append(_SockFilter(code, jt, jf, k))
    arr = (_SockFilter * len(insns))(*insns)
    return arr, _SockFprog(len(insns), arr)


def _bpf_ws_text(ports):
    """Received unfragmented IPv4 TCP packets with one of `ports` as either port
    whose payload starts with 0x81 (a final WebSocket text frame). A load past
    the packet's end (no payload) ends the program with "drop"."""
    prog = [
        (0x20, 0, 0, 0xFFFFF004),           # A = skb->pkt_type
        (0x15, 0, "drop", PACKET_HOST),
        (0x30, 0, 0, 9),                    # A = ip[9] (protocol)
        (0x15, 0, "drop", 6),               # TCP
        (0x28, 0, 0, 6),                    # A = ip[6:2]
        (0x45, "drop", 0, 0x1FFF),          # a fragment: drop
        (0xB1, 0, 0, 0),                    # X = ip header length
        (0x50, 0, 0, 12),                   # A = tcp[12] (data offset << 4)
        (0x54, 0, 0, 0xF0),
        (0x74, 0, 0, 2),                    # A = tcp header length
        (0x0C, 0, 0, 0),                    # A += X
        (0x07, 0, 0, 0),                    # X = A: the payload's offset
        (0x50, 0, 0, 0),                    # A = payload[0]
        (0x15, 0, "drop", 0x81),
        (0xB1, 0, 0, 0),                    # X = ip header length
        (0x48, 0, 0, 0),                    # A = source port
    ]
    prog += [(0x15, "accept", 0, p) for p in ports]
    prog.append((0x48, 0, 0, 2))            # A = destination port
    prog += [(0x15, "accept", 0, p) for p in ports]
    prog += ["drop", (0x06, 0, 0, 0), "accept", (0x06, 0, 0, 0x40000)]
    return _assemble(prog)


class Conn:
    __slots__ = ("client_port", "syn", "synack", "req", "end", "tag", "resp_bytes")

    def __init__(self, client_port, syn):
        self.client_port = client_port
        self.syn = syn
        self.synack = None
        self.req = None   # first client payload: the request is sent
        self.end = None
        self.tag = None
        self.resp_bytes = 0

    @property
    def total(self):
        """Client SYN to the last response byte."""
        return None if self.end is None else self.end - self.syn

    @property
    def served(self):
        """What the network and the server took: the handshake plus request to
        last response byte, without the client's own time between them."""
        if self.end is None or self.synack is None or self.req is None:
            return None
        return (self.synack - self.syn) + (self.end - self.req)


class _Capture:
    """An AF_PACKET socket on lo with a BPF filter, read by a background thread
    that hands each packet (the IP datagram) and its kernel timestamp to
    self._packet."""

    def __init__(self, fprog):
        self._stop = threading.Event()
        self.packets = 0
        self._drops = 0
        self.error = None
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._filter = fprog  # keep the array alive
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                             bytes(ctypes.string_at(ctypes.addressof(self._filter[1]),
                                                    ctypes.sizeof(self._filter[1]))))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.drops()
        self.sock.close()

    def _run(self):
        try:
            while not self._stop.is_set():
                try:
                    data, anc, _, addr = self.sock.recvmsg(2048, 64)
                except socket.timeout:
                    continue
                ts = None
                for level, kind, blob in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", blob[:16])
                        ts = sec + nsec / 1e9
                if ts is None:
                    ts = time.time()
                if addr[2] != PACKET_HOST:
                    continue  # the filter also checks; packets queued before it was attached
                self._packet(data, ts)
        except Exception as e:  # reported by the benchmark, never silent
            self.error = e

    def drops(self):
        """Packets the kernel dropped because this socket's buffer was full
        (PACKET_STATISTICS; the counters reset on each read, so they are summed)."""
        try:
            got, dropped = struct.unpack("II", self.sock.getsockopt(SOL_PACKET,
                                                                    PACKET_STATISTICS, 8))
        except OSError:
            return self._drops
        self._drops += dropped
        return self._drops

    def _packet(self, ip, ts):
        raise NotImplementedError


class WireCapture(_Capture):
    """Captures connections to 127.0.0.1:port in a background thread."""

    def __init__(self, port):
        self.port = port
        self.conns = []           # finished or in progress, in SYN order
        self._open = {}           # client port -> Conn
        super().__init__(_bpf_tcp_port(port))

    def _packet(self, ip, ts):
        if len(ip) < 40 or ip[9] != 6:
            return
        ihl = (ip[0] & 0x0F) * 4
        total_len = struct.unpack_from("!H", ip, 2)[0]
        sport, dport = struct.unpack_from("!HH", ip, ihl)
        flags = ip[ihl + 13]
        thl = (ip[ihl + 12] >> 4) * 4
        payload_len = total_len - ihl - thl
        self.packets += 1
        if dport == self.port:  # client -> server
            if flags & 0x02 and not flags & 0x10:  # SYN without ACK: a new connection
                c = Conn(sport, ts)
                self._open[sport] = c
                self.conns.append(c)
            elif payload_len > 0:
                c = self._open.get(sport)
                if c is not None and c.req is None:
                    c.req = ts
                if c is not None and c.tag is None:
                    line = bytes(ip[ihl + thl: ihl + thl + min(payload_len, 200)])
                    i = line.find(b"probe=")
                    if i >= 0:
                        j = i + 6
                        while j < len(line) and line[j:j + 1] not in (b" ", b"&"):
                            j += 1
                        c.tag = line[i + 6:j].decode(errors="replace")
        elif sport == self.port and flags & 0x12 == 0x12:  # SYN-ACK
            c = self._open.get(dport)
            if c is not None and c.synack is None:
                c.synack = ts
        elif sport == self.port and payload_len > 0:  # server -> client, with data
            c = self._open.get(dport)
            if c is not None:
                c.end = ts
                c.resp_bytes += payload_len

    def finished(self, tag_prefix=None):
        return [c for c in list(self.conns)
                if c.end is not None and (tag_prefix is None or (c.tag or "").startswith(tag_prefix))]


def ws_text_payload(frame):
    """The payload of the one WebSocket text frame at the start of `frame`
    (unmasked), or None if it is not whole in these bytes."""
    if len(frame) < 2:
        return None
    n, i = frame[1] & 0x7F, 2
    if n == 126:
        n, i = struct.unpack_from("!H", frame, 2)[0] if len(frame) >= 4 else -1, 4
    elif n == 127:
        n, i = struct.unpack_from("!Q", frame, 2)[0] if len(frame) >= 10 else -1, 10
    if frame[1] & 0x80:
        key, i = frame[i:i + 4], i + 4
        if len(key) < 4 or n < 0 or len(frame) < i + n:
            return None
        data = frame[i:i + n]
        mask = (key * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    if n < 0 or len(frame) < i + n:
        return None
    return frame[i:i + n]


class WsTextCapture(_Capture):
    """Packets to or from `ports` (the servers) on lo whose TCP payload starts a
    WebSocket text frame. The thread only stores (time, client port, from the
    server?, the first `keep` payload bytes); frames() decodes them afterwards,
    so the capture costs little CPU while the benchmark runs."""

    def __init__(self, ports, keep=512):
        self.ports = frozenset(ports)
        self.keep = keep
        self.raw = []
        super().__init__(_bpf_ws_text(sorted(self.ports)))

    def _packet(self, ip, ts):
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", ip, ihl)
        off = ihl + (ip[ihl + 12] >> 4) * 4
        self.packets += 1
        from_server = sport in self.ports
        self.raw.append((ts, dport if from_server else sport, from_server,
                         bytes(ip[off:off + self.keep])))

    def frames(self):
        """[(time, client port, from_server, JSON document)] of the text frames whose
        payload is a whole JSON document; the count of the others."""
        out, bad = [], 0
        for ts, cport, from_server, frame in list(self.raw):
            payload = ws_text_payload(frame)
            try:
                out.append((ts, cport, from_server, json.loads(payload)))
            except (TypeError, ValueError):
                bad += 1
        return out, bad


def pair(reported, conns, max_gap, slack=0.002):
    """Pairs one client's own measurements with its captured connections.

    reported: (finish_wall_time, total_seconds) pairs, conns: the same client's
    connections (one canaryd probe, whose runs never overlap, or one client
    port of the loadgen). Each measurement goes with the unused connection
    whose response ended closest to its finish time: not after finish + slack
    (canaryd's finish times are truncated to the millisecond) and not more
    than max_gap before it. Returns [(reported_total, Conn)]."""
    cs = sorted((c for c in conns if c.end is not None), key=lambda c: c.end)
    used = set()
    out = []
    for finish, total in sorted(reported):
        best = None
        for k, c in enumerate(cs):
            if k in used or c.end > finish + slack or finish - c.end > max_gap:
                continue
            if best is None or abs(c.end - finish) < abs(cs[best].end - finish):
                best = k
        if best is not None:
            used.add(best)
            out.append((total, cs[best]))
    return out


def stable_hash(name):
    """canaryd's scheduler hash (daemon/scheduler.cc): 64-bit FNV-1a."""
    h = 14695981039346656037
    for b in name.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def schedule_lag(conns, interval_s=1.0):
    """Start lag of scheduled probe runs, seen on the wire.

    canaryd schedules a probe's runs at T0 + (stable_hash(name) mod interval) +
    k * interval, T0 being (within microseconds, for probes listed first) the
    same for every probe of one config load. For each connection tagged with a
    probe name, v = (SYN time - offset) mod interval is T0 mod interval plus
    that run's lag. T0 is taken as the v of the most punctual run seen, so a
    lag here is measured from that run, and includes the loop's time from
    starting the run to sending the SYN.

    Returns (lags in seconds, the largest empty arc). Lags of an interval or
    more wrap around: when the arc is small (say under a quarter interval) the
    loop is saturated and the figures are a lower bound."""
    vals = []
    for c in conns:
        if not c.tag:
            continue
        off = (stable_hash(c.tag) % int(interval_s * 1e9)) / 1e9
        vals.append((c.syn - off) % interval_s)
    if not vals:
        return [], interval_s
    # Lags are >= 0 and, unless the loop is hopeless, spread over well under an
    # interval: on the circle the largest empty arc lies just before T0, and the
    # first value after it is the most punctual run.
    v = sorted(vals)
    gaps = [(v[(k + 1) % len(v)] - v[k]) % interval_s for k in range(len(v))]
    k = max(range(len(v)), key=lambda j: gaps[j])
    anchor = v[(k + 1) % len(v)]
    lags = [(x - anchor) % interval_s for x in vals]
    return lags, gaps[k]
