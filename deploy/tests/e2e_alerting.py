#!/usr/bin/env python3
"""End-to-end alerting test: canaryd -> Prometheus -> Alertmanager -> webhook.

    e2e_alerting.py CANARYD_BIN [ALERTMANAGER_YML]

Starts, all on 127.0.0.1 and free ports, in a temp dir:
  * the fake platform backend (tests/fixtures/fake_platform.py);
  * a WebSocket fault switch (in this script, see below) in front of its /ws;
  * redis-server (no persistence);
  * canaryd as an HA pair: two processes with the same config and labels
    (the second on its own port, --web.listen-address), 1 s probes: a redis
    probe (category infrastructure, critical), a websocket probe offering and
    expecting the subprotocol jwt-auth (category chat), an http probe of
    /health (category api);
  * Prometheus scraping both canaryd every 1 s (job "canaryd", two targets,
    so two instances of every probe series), evaluating every
    1 s the rule file that `canaryd rules --config` generates for that config
    (short window 20s, long window 1m, min_runs 3, `for: 10s` on the alerts
    this test exercises), sending alerts to:
  * Alertmanager (gossip off: --cluster.listen-address=) running a copy of
    deploy/alertmanager/alertmanager.yml (the shipped routing, grouping and
    inhibit rules) whose webhook URLs point at a webhook sink in this script.

Then two incidents, each: break, wait for the P0 page, check inhibition,
repair, wait for the resolved notification.
  1. redis-server is stopped (by PID): CanaryRedisDown (P0) must reach the
     "pager" receiver with severity="P0", probe=cache, env=e2e; the P1/P2
     alerts about that probe or its category (CanaryCategorySuccessLow for
     infrastructure) must be "suppressed" in Alertmanager, inhibited by the
     P0, and none of them may reach the webhook while the P0 fires. Both
     replicas see the outage, and it must page once: Prometheus fires one
     CanaryRedisDown, and the pager gets one firing notification for its
     group, holding one alert. redis-server is started again on the same
     port: the page must resolve.
  2. The WebSocket negotiation fault is switched on: the server answers the
     upgrade selecting no subprotocol (ws_no_subprotocol).
     CanaryWebSocketSuccessCritical (P0) must page with probe=chat-ws; the P1
     CanaryWebSocketSuccessLow (same probe) and CanaryCategorySuccessLow for
     chat must be suppressed; one page, as for incident 1. The fault is
     switched off: the page must resolve.
Every notification must also have gone to the receiver of its severity
(P0 pager, P1 high-priority, P2 ticket).

How the WebSocket fault is switched: the fixture picks each WebSocket's
behaviour from its URL query (/ws?subprotocol=none: the 101 selects no
subprotocol), and it must not be edited. So the probe's URL points at a small
HTTP-aware TCP relay in this script (FaultSwitch) that forwards every
connection to the fixture's /ws unchanged, and while the switch is on rewrites
the upgrade request's target to /ws?subprotocol=none. canaryd's config and the
probe never change (no reload), so its counters and series are continuous, as
in a real incident.

Alertmanager timings in the copy: the P0 route keeps its group_wait (10s);
every group_interval becomes 10s, so a resolved notification goes out within
~10 s of the resolution (it waits for the group's next group_interval tick,
shipped 1m for P0); every other group_wait (root, P1, P2) becomes 40s
(shipped 1m, 30s, 5m). In this compressed timeline the P1/P2 ratio alerts cross their looser
thresholds before the P0 (~5-20 s earlier), so their groups must not be
flushed before the P0 has arrived (40s leaves a margin), and must be flushed
while it fires for "no notification" to mean "muted": the test holds each
fault until every muted alert's group has had its first flush (its startsAt +
40s + 5s), confirms the flushes in Alertmanager's debug log, and only then
repairs. The routes, group_by, receivers and inhibit_rules are the shipped
ones.

Every child is started with subprocess.Popen and stopped by its PID
(SIGTERM, then SIGKILL after 10 s) in a finally block, also on SIGTERM/SIGINT;
on Linux children also get PR_SET_PDEATHSIG, so a SIGKILLed test leaves
nothing behind. Every wait is bounded; a run takes about 2m45s. On
failure the test prints the last Prometheus alerts, Alertmanager alerts,
webhook notifications and the children's log tails, and keeps the temp dir.

Exit 0 pass, 1 fail. python3 standard library only. PROMETHEUS_BIN,
ALERTMANAGER_BIN and REDIS_SERVER_BIN override the binaries; E2E_KEEP_TMP=1
keeps the temp dir (configs, logs) after a pass too.
"""

import ctypes
import datetime
import http.server
import json
import os
import pathlib
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FAKE_PLATFORM = ROOT / "tests" / "fixtures" / "fake_platform.py"
SHIPPED_AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

ENV, LOCATION = "e2e", "local"
REDIS_PROBE, REDIS_CATEGORY = "cache", "infrastructure"
WS_PROBE, WS_CATEGORY = "chat-ws", "chat"
HTTP_PROBE, HTTP_CATEGORY = "api-health", "api"
SHORT_WINDOW = "20s"
RECEIVER_OF = {"P0": "pager", "P1": "high-priority", "P2": "ticket"}
GROUP_INTERVAL = "10s"   # every route's group_interval in the Alertmanager copy
TARGET_GROUP_WAIT = 40   # every group_wait but the P0 route's, in the copy (s)
ALERT_FOR = 10           # `for` of the alerts this test exercises (s)
FLUSH_MARGIN = 5         # s after a group's expected first flush
FLUSH_EXTRA_WAIT = 15    # s more for a flush that Alertmanager's log does not show yet

# Bounds (seconds).
START_TIMEOUT = 30      # one child to become ready
BASELINE_TIMEOUT = 60   # every probe passing, in Prometheus, no alert firing
PAGE_TIMEOUT = 120      # break -> P0 notification (expected ~35-50 s)
INHIBIT_TIMEOUT = 45    # P0 notification -> P1/P2 seen suppressed
RESOLVE_TIMEOUT = 90    # repair -> resolved notification (expected ~15-25 s)
TOTAL_TIMEOUT = 540     # the whole test (ctest's TIMEOUT is 600)

T0 = time.monotonic()


class Failure(Exception):
    pass


class Interrupted(BaseException):
    pass


def log(msg):
    now = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{now} +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check_total_deadline():
    if time.monotonic() - T0 > TOTAL_TIMEOUT:
        raise Failure(f"the whole test took more than {TOTAL_TIMEOUT}s")


# --------------------------------------------------------------------------- processes

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork
except (OSError, AttributeError):
    _prctl = None


def _child_setup():
    # The child dies with this script even if the script is SIGKILLed (Linux).
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def which(env, *names):
    override = os.environ.get(env)
    for name in ([override] if override else names):
        path = shutil.which(name)
        if path:
            return path
    raise Failure(f"{' / '.join([override] if override else names)} not found"
                  f" (scripts/install-deps.sh installs it; {env} overrides)")


class Child:
    """One child process, its log file, stopped by PID."""

    def __init__(self, name, argv, log_path, env=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.logf = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_child_setup, cwd=os.path.dirname(log_path))
        log(f"started {name} pid {self.proc.pid}")

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} pid {self.proc.pid} ignored SIGTERM for 10s: SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
            log(f"stopped {self.name} pid {self.proc.pid} (exit {self.proc.returncode})")
        if not self.logf.closed:
            self.logf.close()

    def tail(self, n=25):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def wait_until(pred, timeout, what, progress=None, every=10.0, interval=0.5):
    """Polls pred() (truthy ends the wait, its value returned) for at most timeout s."""
    start = time.monotonic()
    next_progress = start + every
    last_err = None
    while True:
        check_total_deadline()
        try:
            value = pred()
            if value:
                return value
        except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
            last_err = e
        now = time.monotonic()
        if now - start > timeout:
            raise Failure(f"timed out after {timeout}s waiting for {what}"
                          + (f" (last error: {last_err})" if last_err else ""))
        if progress and now >= next_progress:
            next_progress = now + every
            try:
                log(f"  waiting {now - start:4.0f}s for {what}: {progress()}")
            except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
                log(f"  waiting {now - start:4.0f}s for {what} ({e})")
        time.sleep(interval)


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def get_json(url, timeout=5):
    return json.loads(http_get(url, timeout)[1])


def http_ok(url):
    try:
        return http_get(url, timeout=2)[0] == 200
    except (urllib.error.URLError, OSError):
        return False


def start_on_free_port(name, make_argv, ready_url, log_path, child_list, attempts=3):
    """Starts a server on a free port (retrying if another process takes the port
    first); -> (child, port) once ready_url(port) answers 200."""
    for attempt in range(attempts):
        port = free_port()
        child = Child(name, make_argv(port, attempt), log_path)
        child_list.append(child)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and child.running():
            if http_ok(ready_url(port)):
                log(f"{name} ready on 127.0.0.1:{port}")
                return child, port
            time.sleep(0.2)
        exited = not child.running()
        child.stop()
        if exited and "address already in use" in child.tail().lower():
            log(f"{name} lost port {port} to another process; retrying")
            continue
        raise Failure(f"{name} did not become ready"
                      + (" (it exited)" if exited else f" within {START_TIMEOUT}s")
                      + f"; log tail:\n{child.tail()}")
    raise Failure(f"{name} could not bind a free port in {attempts} attempts")


# --------------------------------------------------------------------------- redis

class Redis:
    """redis-server on a fixed loopback port, no persistence; restartable."""

    def __init__(self, binary, tmp, children):
        self.binary, self.tmp, self.children = binary, tmp, children
        self.port = None
        self.child = None
        self.starts = 0

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self):
        """The first start picks a free port (retrying if another process takes
        it first); a restart reuses it, since the probe's config names it."""
        first = self.port is None
        for _ in range(3 if first else 1):
            if first:
                self.port = free_port()
            self.starts += 1
            argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", self.tmp,
                    "--daemonize", "no"]
            self.child = Child(f"redis-server#{self.starts}", argv,
                               os.path.join(self.tmp, "redis.log"))
            self.children.append(self.child)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.child.running():
                if self.ping():
                    log(f"redis-server ready on 127.0.0.1:{self.port}")
                    return
                time.sleep(0.1)
            exited = not self.child.running()
            self.child.stop()
            if exited and first and "address already in use" in self.child.tail().lower():
                continue
            raise Failure("redis-server did not become ready; log tail:\n" + self.child.tail())
        raise Failure("redis-server could not bind a free port")

    def stop(self):
        if self.child is not None:
            self.child.stop()


# --------------------------------------------------------------------------- WebSocket fault switch

class FaultSwitch:
    """An HTTP-aware TCP relay to the fixture: forwards each connection unchanged;
    while `on`, rewrites the request target's query to subprotocol=none (the
    fixture then selects no subprotocol in its 101)."""

    MAX_HEAD = 64 * 1024
    MAX_LIFETIME = 30.0

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.on = threading.Event()
        self.lock = threading.Lock()
        self.relayed = 0
        self.rewritten = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept_loop, name="fault-switch", daemon=True).start()

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
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    @staticmethod
    def faulty_target(target):
        path, _, query = target.partition(b"?")
        params = [p for p in query.split(b"&") if p and not p.startswith(b"subprotocol=")]
        return path + b"?" + b"&".join(params + [b"subprotocol=none"])

    def _relay(self, client):
        upstream = None
        try:
            client.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk or len(head) + len(chunk) > self.MAX_HEAD:
                    return
                head += chunk
            line_end = head.index(b"\r\n")
            parts = head[:line_end].split(b" ")
            if len(parts) != 3:
                return
            method, target, version = parts
            rewrite = self.on.is_set()
            if rewrite:
                target = self.faulty_target(target)
            with self.lock:
                self.relayed += 1
                self.rewritten += rewrite
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.sendall(b" ".join([method, target, version]) + head[line_end:])
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    s.close()

    def _pump(self, a, b):
        peer = {a: b, b: a}
        open_readers = {a, b}
        deadline = time.monotonic() + self.MAX_LIFETIME
        while open_readers and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_readers), [], [], 1.0)
            for s in readable:
                data = s.recv(65536)
                if data:
                    peer[s].sendall(data)
                else:
                    open_readers.discard(s)
                    try:
                        peer[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass


# --------------------------------------------------------------------------- webhook sink

class Sink(http.server.BaseHTTPRequestHandler):
    received = []  # (monotonic time, path, payload)
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"unparsable": body.decode(errors="replace")}
        with Sink.lock:
            Sink.received.append((time.monotonic(), self.path, payload))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def notifications():
    """-> [(time, receiver, alert)] for every alert of every notification so far."""
    with Sink.lock:
        got = list(Sink.received)
    out = []
    for t, path, payload in got:
        for alert in payload.get("alerts", []) or []:
            out.append((t, payload.get("receiver", path.strip("/")), alert))
    return out


def fmt_alert(labels, skip=("env", "location")):
    name = labels.get("alertname", "?")
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                    if k != "alertname" and k not in skip)
    return f"{name}{{{rest}}}"


def mono_of(timestamp):
    """An RFC 3339 time from Prometheus/Alertmanager -> this process's monotonic clock."""
    return time.monotonic() - (time.time() - mono_wall(timestamp))


def mono_wall(timestamp):
    """An RFC 3339 time -> seconds since the epoch."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", timestamp)
    if not m:
        raise ValueError(f"bad timestamp {timestamp!r}")
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}").timestamp()


def matches(labels, want):
    return all(labels.get(k) == v for k, v in want.items())


# --------------------------------------------------------------------------- Alertmanager config

TOP_LEVEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")
RECEIVER_NAME = re.compile(r"""^\s*-\s*name\s*:\s*['"]?([^'"#\s]+)['"]?\s*(#.*)?$""")
URL_LINE = re.compile(r"""^(\s*(?:-\s+)?)url\s*:\s*(['"]?)([^'"#\s]+)\2\s*(#.*)?$""")
INTEGRATION = re.compile(r"^\s*(?:-\s+)?([a-z_]+_configs)\s*:")
SEND_RESOLVED = re.compile(r"^\s*(?:-\s+)?send_resolved\s*:\s*true\s*(#.*)?$")
GROUP_INTERVAL_LINE = re.compile(r"^(\s*(?:-\s+)?group_interval\s*:\s*)(\S+)(.*)$")
GROUP_WAIT_LINE = re.compile(r"^(\s*(?:-\s+)?group_wait\s*:\s*)(\S+)(.*)$")
ROUTE_SEVERITY = re.compile(r"""severity\s*(?:=~?|:)\s*\\?['"]?\^?\(?(P[0-2])\b""")


def alertmanager_config(text, sink_url):
    """The shipped config with each webhook URL in `receivers` rewritten to
    sink_url/<receiver>, every group_interval set to GROUP_INTERVAL and every
    group_wait but the P0 route's to TARGET_GROUP_WAIT (the root's too, for
    routes that inherit it). Refuses
    a config whose receivers use anything but webhook_configs with
    send_resolved: true (a real integration must never be notified, and the
    test needs the resolved notifications)."""
    out, section, receiver, severity = [], None, None, None
    urls, resolved = {}, {}
    timings = []
    for line in text.splitlines():
        m = TOP_LEVEL.match(line)
        if m:
            section, receiver = m.group(1), None
        if section == "receivers":
            m = RECEIVER_NAME.match(line)
            if m:
                receiver = m.group(1)
                urls.setdefault(receiver, 0)
                resolved.setdefault(receiver, 0)
            m = INTEGRATION.match(line)
            if m and m.group(1) != "webhook_configs":
                raise Failure(f"receiver {receiver!r} uses {m.group(1)}: this test only"
                              " redirects webhook_configs and must not notify a real integration")
            if re.match(r"^\s*(?:-\s+)?url_file\s*:", line):
                raise Failure(f"receiver {receiver!r} uses url_file; this test only rewrites url")
            m = URL_LINE.match(line)
            if m:
                if receiver is None:
                    raise Failure(f"url outside a named receiver: {line.strip()}")
                urls[receiver] += 1
                line = f"{m.group(1)}url: '{sink_url}/{receiver}'"
            if SEND_RESOLVED.match(line):
                resolved[receiver] = resolved.get(receiver, 0) + 1
        if section == "route":
            m = ROUTE_SEVERITY.search(line)
            if m:
                severity = m.group(1)
            m = GROUP_INTERVAL_LINE.match(line)
            if m:
                timings.append(f"group_interval {m.group(2)}->{GROUP_INTERVAL}")
                line = f"{m.group(1)}{GROUP_INTERVAL}"
            m = GROUP_WAIT_LINE.match(line)
            if m and severity != "P0":  # the root's (inherited by routes without one), P1, P2
                timings.append(f"{severity or 'root'} group_wait"
                               f" {m.group(2)}->{TARGET_GROUP_WAIT}s")
                line = f"{m.group(1)}{TARGET_GROUP_WAIT}s"
        out.append(line)
    if not urls:
        raise Failure("found no receivers in the Alertmanager config")
    for name in RECEIVER_OF.values():
        if name not in urls:
            raise Failure(f"the Alertmanager config has no receiver {name!r}")
    for name, n in urls.items():
        if n == 0:
            raise Failure(f"receiver {name!r} has no webhook url")
        if resolved.get(name, 0) != n:
            raise Failure(f"receiver {name!r}: every webhook needs send_resolved: true"
                          f" ({resolved.get(name, 0)} of {n} have it)")
    return "\n".join(out) + "\n", sorted(urls), timings


# --------------------------------------------------------------------------- canaryd, Prometheus

def canaryd_config(listen_port, redis_port, ws_port, http_port):
    return f"""\
global:
  listen: 127.0.0.1:{listen_port}
  labels: {{env: {ENV}, location: {LOCATION}}}
  defaults: {{interval: 1s, timeout: 800ms}}
probes:
  - name: {REDIS_PROBE}
    type: redis
    category: {REDIS_CATEGORY}
    critical: true
    redis: {{address: "127.0.0.1:{redis_port}"}}
  - name: {WS_PROBE}
    type: websocket
    category: {WS_CATEGORY}
    websocket:
      url: ws://127.0.0.1:{ws_port}/ws
      subprotocols: [jwt-auth]
      expect_subprotocol: jwt-auth
  - name: {HTTP_PROBE}
    type: http
    category: {HTTP_CATEGORY}
    http:
      url: http://127.0.0.1:{http_port}/health
      expect: {{status: [200], json: {{status: healthy}}}}
alerting:
  short_window: {SHORT_WINDOW}
  long_window: 1m
  min_runs: 3
  rules:
    redis_down: {{for: {ALERT_FOR}s}}
    websocket_success_critical: {{for: {ALERT_FOR}s}}
    websocket_success_low: {{for: {ALERT_FOR}s}}
    critical_success_low: {{for: {ALERT_FOR}s}}
    category_success_low: {{for: {ALERT_FOR}s}}
    overall_success_low: {{for: {ALERT_FOR}s}}
"""


def prometheus_config(canaryd_ports, am_port, rules_path):
    # JSON is YAML.
    return json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules_path],
        "alerting": {"alertmanagers": [
            {"api_version": "v2", "static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "canaryd",
                            "static_configs": [{"targets": [f"127.0.0.1:{p}"
                                                            for p in canaryd_ports]}]}],
    }, indent=2) + "\n"


# --------------------------------------------------------------------------- the test

class E2E:
    def __init__(self, canaryd_bin, am_config_path, tmp):
        self.canaryd_bin, self.am_config_path, self.tmp = canaryd_bin, am_config_path, tmp
        self.children = []
        self.sink = None
        self.switch = None
        self.redis = None
        self.canaryd_ports = []
        self.prom = self.am = self.am_log = None
        self.failures = []

    # ---- API helpers

    def prom_alerts(self):
        return get_json(self.prom + "/api/v1/alerts")["data"]["alerts"]

    def prom_query(self, q):
        url = self.prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        return get_json(url)["data"]["result"]

    def am_alerts(self):
        return get_json(self.am + "/api/v2/alerts")

    def ratio(self, probe):
        res = self.prom_query(f'canary:probe_success:ratio_{SHORT_WINDOW}{{probe="{probe}"}}')
        return f"{float(res[0]['value'][1]):.2f}" if res else "n/a"

    def prom_summary(self):
        alerts = self.prom_alerts()
        return ", ".join(sorted(f"{fmt_alert(a['labels'], ('env', 'location', 'type'))}"
                                f"={a['state']}" for a in alerts)) or "no alerts"

    FLUSH_LINE = re.compile(
        r'^ts=(\S+) .*aggrGroup="((?:[^"\\]|\\.)*)" msg=flushing alerts=\[(.*)\]')

    def am_flushes(self, labels, since, until):
        """How often Alertmanager's log says it flushed the group holding an alert
        with these labels, with the alert active, between two wall times; None
        if the log has no flush lines at all (another log format)."""
        try:
            with open(self.am_log, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return None
        found, n = False, 0
        keys = [f'{k}=\\"{v}\\"' for k, v in sorted(labels.items())
                if k in ("alertname", "probe", "category", "env")]
        for line in lines:
            m = self.FLUSH_LINE.match(line)
            if not m:
                continue
            found = True
            group, alerts = m.group(2), m.group(3)
            if not all(k in group for k in keys) or "[active]" not in alerts:
                continue
            if since <= mono_wall(m.group(1)) <= until:
                n += 1
        return n if found else None

    def fail(self, msg):
        log(f"FAIL: {msg}")
        self.failures.append(msg)

    # ---- setup

    def start(self):
        prometheus = which("PROMETHEUS_BIN", "prometheus")
        alertmanager = which("ALERTMANAGER_BIN", "alertmanager", "prometheus-alertmanager")
        redis_server = which("REDIS_SERVER_BIN", "redis-server")

        # Webhook sink.
        self.sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=self.sink.serve_forever, name="sink", daemon=True).start()
        sink_url = f"http://127.0.0.1:{self.sink.server_address[1]}"
        log(f"webhook sink on {sink_url}")

        # Alertmanager config: the shipped one, redirected to the sink.
        with open(self.am_config_path) as f:
            am_text, receivers, timings = alertmanager_config(f.read(), sink_url)
        am_cfg = os.path.join(self.tmp, "alertmanager.yml")
        with open(am_cfg, "w") as f:
            f.write(am_text)
        log(f"Alertmanager config: {self.am_config_path} with receivers {', '.join(receivers)}"
            f" -> {sink_url}/<receiver>; timings: {', '.join(timings)}")

        # Fake platform backend and the WebSocket fault switch in front of it.
        ready = os.path.join(self.tmp, "fake_platform.ready")
        fixture = Child("fake_platform", [sys.executable, str(FAKE_PLATFORM), "--port", "0",
                                          "--ready-file", ready, "--quiet"],
                        os.path.join(self.tmp, "fake_platform.log"))
        self.children.append(fixture)
        wait_until(lambda: os.path.exists(ready) or not fixture.running() and "exited",
                   START_TIMEOUT, "the fake platform's ready file")
        if not fixture.running():
            raise Failure("the fake platform exited:\n" + fixture.tail())
        with open(ready) as f:
            fixture_port = json.load(f)["http"]
        log(f"fake platform ready on 127.0.0.1:{fixture_port}")
        self.switch = FaultSwitch(fixture_port)
        log(f"WebSocket fault switch on 127.0.0.1:{self.switch.port} -> fixture /ws")

        # redis-server.
        self.redis = Redis(redis_server, self.tmp, self.children)
        self.redis.start()

        # canaryd config and its rule file.
        cfg_path = os.path.join(self.tmp, "canaryd.yaml")
        rules_path = os.path.join(self.tmp, "canaryd.rules.yml")

        def canaryd_argv(port, attempt):
            with open(cfg_path, "w") as f:
                f.write(canaryd_config(port, self.redis.port, self.switch.port, fixture_port))
            return [self.canaryd_bin, "run", "--config", cfg_path, "--log-level", "info"]

        # The rule file does not depend on ports: generate it from a first version.
        canaryd_argv(free_port(), 0)
        r = subprocess.run([self.canaryd_bin, "rules", "--config", cfg_path],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"canaryd rules failed ({r.returncode}): {r.stderr}")
        with open(rules_path, "w") as f:
            f.write(r.stdout)
        fors = re.findall(r"- alert: (\w+)\n\s+expr: .*\n\s+for: (\w+)", r.stdout)
        short = [f"{n} {d}" for n, d in fors if d.endswith("s") and not d.endswith("ms")]
        log(f"rule file {rules_path}: {r.stdout.count('- record:')} recording rules,"
            f" {r.stdout.count('- alert:')} alerts; short ones: {', '.join(short)}")

        _, cport = start_on_free_port(
            "canaryd", canaryd_argv, lambda p: f"http://127.0.0.1:{p}/-/ready",
            os.path.join(self.tmp, "canaryd.log"), self.children)
        # Its HA replica: the same config and labels, its own port.
        _, replica_port = start_on_free_port(
            "canaryd-replica",
            lambda p, n: [self.canaryd_bin, "run", "--config", cfg_path,
                          "--web.listen-address", f"127.0.0.1:{p}", "--log-level", "info"],
            lambda p: f"http://127.0.0.1:{p}/-/ready",
            os.path.join(self.tmp, "canaryd-replica.log"), self.children)
        self.canaryd_ports = [cport, replica_port]

        _, am_port = start_on_free_port(
            "alertmanager",
            lambda p, n: [alertmanager, f"--config.file={am_cfg}",
                          f"--storage.path={os.path.join(self.tmp, f'am-data{n}')}",
                          f"--web.listen-address=127.0.0.1:{p}", "--cluster.listen-address=",
                          "--log.level=debug"],
            lambda p: f"http://127.0.0.1:{p}/-/ready",
            os.path.join(self.tmp, "alertmanager.log"), self.children)
        self.am = f"http://127.0.0.1:{am_port}"
        self.am_log = os.path.join(self.tmp, "alertmanager.log")

        prom_cfg = os.path.join(self.tmp, "prometheus.yml")

        def prom_argv(port, attempt):
            return [prometheus, f"--config.file={prom_cfg}",
                    f"--storage.tsdb.path={os.path.join(self.tmp, f'prom-data{attempt}')}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--rules.alert.resend-delay=5s", "--log.level=info"]

        with open(prom_cfg, "w") as f:
            f.write(prometheus_config(self.canaryd_ports, am_port, rules_path))
        _, prom_port = start_on_free_port(
            "prometheus", prom_argv, lambda p: f"http://127.0.0.1:{p}/-/ready",
            os.path.join(self.tmp, "prometheus.log"), self.children)
        self.prom = f"http://127.0.0.1:{prom_port}"

    def baseline(self):
        log("waiting for the baseline: every probe passing in Prometheus, Alertmanager"
            " discovered, no alert pending or firing")

        def ready():
            ams = get_json(self.prom + "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
            if not ams:
                return False
            for probe in (REDIS_PROBE, WS_PROBE, HTTP_PROBE):
                # both replicas' runs are in: each passes on its own
                runs = self.prom_query(
                    f'canary:replica_probe_runs:increase_{SHORT_WINDOW}{{probe="{probe}"}}')
                if len(runs) != len(self.canaryd_ports) or \
                        any(float(r["value"][1]) < 3 for r in runs) or self.ratio(probe) != "1.00":
                    return False
            rules = get_json(self.prom + "/api/v1/rules")["data"]["groups"]
            if not any(g["name"] == "canaryd.alerts" for g in rules):
                return False
            return not self.prom_alerts()

        wait_until(ready, BASELINE_TIMEOUT, "the baseline",
                   progress=lambda: f"ratios {REDIS_PROBE}={self.ratio(REDIS_PROBE)}"
                   f" {WS_PROBE}={self.ratio(WS_PROBE)} {HTTP_PROBE}={self.ratio(HTTP_PROBE)};"
                   f" {self.prom_summary()}", every=5)
        log(f"baseline reached: {len(self.canaryd_ports)} replicas scraped")

    # ---- one incident

    def related(self, labels, probe, category):
        """A P1/P2 alert about this probe or its category (what the P0 must mute)."""
        return (labels.get("severity") in ("P1", "P2") and labels.get("env") == ENV
                and labels.get("location") == LOCATION
                and (labels.get("probe") == probe or labels.get("category") == category))

    def await_notification(self, want, status, since, timeout, what, probe):
        """The first webhook notification after `since` with this status and labels."""
        def found():
            for t, receiver, a in notifications():
                if t >= since and a.get("status") == status and matches(a["labels"], want):
                    return t, receiver, a
            return None

        return wait_until(
            found, timeout, what,
            progress=lambda: f"ratio {probe}={self.ratio(probe)}; {self.prom_summary()}")

    def incident(self, title, p0, probe, category, expected_muted, break_fn, repair_fn):
        log(f"=== {title}")
        want = {"alertname": p0, "severity": "P0", "probe": probe, "category": category,
                "env": ENV, "location": LOCATION}
        t_break = time.monotonic()
        break_fn()

        # 1. The page.
        t, receiver, alert = self.await_notification(
            want, "firing", t_break, PAGE_TIMEOUT, f"the {p0} page", probe)
        t_page = t
        log(f"ok   {fmt_alert(alert['labels'])} reached receiver {receiver!r}"
            f" {t - t_break:.1f}s after the fault; summary: {alert['annotations'].get('summary')}")
        if receiver != "pager":
            self.fail(f"{p0} went to receiver {receiver!r}, not 'pager'")

        # 2. Inhibition: the related P1/P2 alerts are suppressed by the P0.
        state = {}

        def muted():
            am = self.am_alerts()
            src = [a for a in am if matches(a["labels"], want)]
            if not src or src[0]["status"]["state"] != "active":
                return False
            fp = src[0]["fingerprint"]
            state["p0"] = src[0]
            firing = [a["labels"] for a in self.prom_alerts() if a["state"] == "firing"]
            related_am = [a for a in am if self.related(a["labels"], probe, category)]
            state.update(fp=fp, related=related_am, firing=firing, all=am)
            for name, sel in expected_muted:
                if not any(a["labels"].get("alertname") == name and matches(a["labels"], sel)
                           for a in related_am):
                    return False
            # Everything Prometheus fires about the probe/category has arrived...
            am_keys = {json.dumps(a["labels"], sort_keys=True) for a in am}
            for labels in firing:
                if self.related(labels, probe, category) and \
                        json.dumps(labels, sort_keys=True) not in am_keys:
                    return False
            # ... and is muted by the P0.
            return all(a["status"]["state"] == "suppressed" and fp in a["status"]["inhibitedBy"]
                       for a in related_am)

        try:
            wait_until(muted, INHIBIT_TIMEOUT,
                       f"the P1/P2 alerts about probe {probe} / category {category}"
                       f" to be suppressed by {p0}",
                       progress=lambda: ", ".join(
                           f"{fmt_alert(a['labels'])}={a['status']['state']}"
                           for a in state.get("related", [])) or "none in Alertmanager yet")
        except Failure as e:
            self.fail(str(e))
        for a in state.get("related", []):
            st = a["status"]
            ok = st["state"] == "suppressed" and state["fp"] in st["inhibitedBy"]
            log(f"{'ok  ' if ok else 'FAIL'} {fmt_alert(a['labels'])}: {st['state']}"
                + (f", inhibitedBy the {p0} page" if state["fp"] in st["inhibitedBy"] else ""))
        for a in state.get("all", []):
            if not self.related(a["labels"], probe, category) and a["fingerprint"] != state["fp"]:
                log(f"     (unrelated) {fmt_alert(a['labels'])}: {a['status']['state']}")

        # 3. Hold the fault until each muted alert's group has been flushed at
        #    least once while the P0 fires: a group's first flush is group_wait
        #    after its first alert arrived, i.e. after it started firing
        #    (Alertmanager's startsAt, which Prometheus sets to the firing
        #    time). Then "no notification" below means "muted when Alertmanager
        #    decided", not "not decided yet".
        related = state.get("related", [])
        p0_alert = state.get("p0")
        if related and p0_alert:
            p0_start = mono_of(p0_alert["startsAt"])
            flushes = [mono_of(a["startsAt"]) + TARGET_GROUP_WAIT for a in related]
            hold_until = min(max(flushes) + FLUSH_MARGIN, time.monotonic() + 60)
            log(f"     {p0} fires since +{p0_start - T0:.1f}s; the muted alerts' groups"
                f" first flush at +{min(flushes) - T0:.1f}s .. +{max(flushes) - T0:.1f}s;"
                f" holding the fault {max(0.0, hold_until - time.monotonic()):.0f}s more")
            if p0_start >= min(flushes) - 1:
                self.fail(f"{p0} started firing only {min(flushes) - p0_start:.1f}s before the"
                          f" first flush of a P1/P2 group: TARGET_GROUP_WAIT is too short for"
                          f" this machine's timing")
            while time.monotonic() < hold_until:
                check_total_deadline()
                time.sleep(0.5)
            # Evidence from Alertmanager's debug log that each group was flushed
            # (so its mute stage ran) while the P0 fired; a few more seconds if
            # a flush came later than computed.
            since = time.time() - (time.monotonic() - p0_start)
            counts = {}
            extra_until = time.monotonic() + FLUSH_EXTRA_WAIT
            while True:
                counts = {i: self.am_flushes(a["labels"], since, time.time())
                          for i, a in enumerate(related)}
                if None in counts.values() or all(counts.values()) \
                        or time.monotonic() > extra_until:
                    break
                time.sleep(0.5)
            time.sleep(1)  # a notification from the last flush would be in by now
            for i, a in enumerate(related):
                n = counts[i]
                if n is None:
                    log("     (no 'msg=flushing' lines in Alertmanager's debug log to confirm"
                        " the flushes)")
                    break
                if n == 0:
                    self.fail(f"Alertmanager never flushed the group of {fmt_alert(a['labels'])}"
                              f" while {p0} fired, so its muting was not exercised")
                else:
                    log(f"ok   Alertmanager flushed the group of {fmt_alert(a['labels'])}"
                        f" {n} time(s) while {p0} fired (its log)")
            am = {a["fingerprint"]: a for a in self.am_alerts()}
            for a in related:
                now = am.get(a["fingerprint"])
                st = now["status"]["state"] if now else "gone"
                if st != "suppressed":
                    self.fail(f"{fmt_alert(a['labels'])} is {st} at the end of the hold,"
                              f" not suppressed")

        # 4. Repair; no P1/P2 notification about the probe/category may have
        #    gone out while the P0 fired.
        t_repair = time.monotonic()
        leaked = [(r, a) for t, r, a in notifications()
                  if t_break <= t < t_repair and a.get("status") == "firing"
                  and self.related(a["labels"], probe, category)]
        for r, a in leaked:
            self.fail(f"{fmt_alert(a['labels'])} was notified to {r!r} while {p0} fired")
        if not leaked:
            log(f"ok   no P1/P2 notification about probe {probe} / category {category}"
                f" reached the webhook while {p0} fired")
        self.check_one_page(want, t_break, t_page)
        log(f"repairing after {t_repair - t_break:.1f}s")
        repair_fn()

        # 5. The resolved notification.
        t, receiver, alert = self.await_notification(
            want, "resolved", t_repair, RESOLVE_TIMEOUT, f"the {p0} resolved notification", probe)
        log(f"ok   {p0} resolved at receiver {receiver!r} {t - t_repair:.1f}s after the repair"
            f" (endsAt {alert.get('endsAt')})")
        if receiver != "pager":
            self.fail(f"{p0}'s resolution went to receiver {receiver!r}, not 'pager'")

    def check_one_page(self, want, since, t_page):
        """Every replica saw the incident, and it must page once: Prometheus fires
        one alert, and its Alertmanager group has had one firing notification,
        holding that one alert. A second alert (one per replica) would join the
        group and go out a group_interval after the first page: the check waits
        that long."""
        p0 = want["alertname"]
        until = t_page + int(GROUP_INTERVAL.rstrip("s")) + FLUSH_MARGIN
        while time.monotonic() < until:
            check_total_deadline()
            time.sleep(0.5)
        firing = [a["labels"] for a in self.prom_alerts()
                  if a["state"] == "firing" and a["labels"].get("alertname") == p0]
        group = {k: want[k] for k in ("alertname", "env", "probe", "category")}
        with Sink.lock:
            got = list(Sink.received)
        pages = [payload for t, _, payload in got
                 if t >= since and payload.get("status") == "firing"
                 and payload.get("groupLabels") == group]
        alerts = [a for page in pages for a in page.get("alerts", [])]
        if len(firing) == 1 and len(pages) == 1 and len(alerts) == 1:
            log(f"ok   one page from {len(self.canaryd_ports)} replicas: Prometheus fires one"
                f" {p0}, and its group had one firing notification with one alert")
            return
        self.fail(f"{len(self.canaryd_ports)} replicas saw the incident and it paged more than"
                  f" once: Prometheus fires {len(firing)} {p0} ({firing}); {len(pages)} firing"
                  f" notifications of group {group} with {len(alerts)} alerts")

    def check_routing(self):
        bad = 0
        for _, receiver, a in notifications():
            sev = a["labels"].get("severity")
            if RECEIVER_OF.get(sev) != receiver:
                bad += 1
                self.fail(f"{fmt_alert(a['labels'])} ({a.get('status')}) went to {receiver!r},"
                          f" expected {RECEIVER_OF.get(sev)!r}")
        n = len(notifications())
        if not bad:
            log(f"ok   all {n} notified alerts went to the receiver of their severity")

    def run(self):
        self.start()
        self.baseline()

        self.incident(
            "incident 1: redis-server stopped", "CanaryRedisDown", REDIS_PROBE, REDIS_CATEGORY,
            [("CanaryCategorySuccessLow", {"category": REDIS_CATEGORY})],
            break_fn=lambda: (log(f"stopping redis-server pid {self.redis.child.pid}"),
                              self.redis.stop()),
            repair_fn=lambda: (log(f"starting redis-server again on port {self.redis.port}"),
                               self.redis.start()))

        def switch(on):
            log(f"WebSocket negotiation fault {'ON: /ws?subprotocol=none' if on else 'OFF'}"
                f" (relayed so far: {self.switch.relayed}, rewritten: {self.switch.rewritten})")
            (self.switch.on.set if on else self.switch.on.clear)()

        self.incident(
            "incident 2: WebSocket negotiation fault (server selects no subprotocol)",
            "CanaryWebSocketSuccessCritical", WS_PROBE, WS_CATEGORY,
            [("CanaryWebSocketSuccessLow", {"probe": WS_PROBE}),
             ("CanaryCategorySuccessLow", {"category": WS_CATEGORY})],
            break_fn=lambda: switch(True), repair_fn=lambda: switch(False))

        # The fault really was the negotiation: canaryd said ws_no_subprotocol.
        res = self.prom_query(f'canary_probe_failures_total{{probe="{WS_PROBE}",'
                              f'reason="ws_no_subprotocol"}}')
        n = float(res[0]["value"][1]) if res else 0
        if n < 1:
            self.fail(f"canary_probe_failures_total{{probe={WS_PROBE},reason=ws_no_subprotocol}}"
                      f" is {n}")
        else:
            log(f"ok   {WS_PROBE} failed with reason ws_no_subprotocol {n:.0f} times")
        self.check_routing()

    # ---- diagnostics and teardown

    def dump(self):
        log("--- diagnostics")
        if self.prom:
            try:
                alerts = self.prom_alerts()
                print(f"Prometheus alerts ({len(alerts)}):", flush=True)
                for a in alerts:
                    print(f"  {fmt_alert(a['labels'])} {a['state']} since {a.get('activeAt')}"
                          f" value {a.get('value')}", flush=True)
            except (urllib.error.URLError, OSError, ValueError) as e:
                print(f"Prometheus alerts: unavailable ({e})", flush=True)
        if self.am:
            try:
                alerts = self.am_alerts()
                print(f"Alertmanager alerts ({len(alerts)}):", flush=True)
                for a in alerts:
                    st = a["status"]
                    print(f"  {fmt_alert(a['labels'])} [{a['fingerprint']}] {st['state']}"
                          + (f" inhibitedBy {st['inhibitedBy']}" if st.get("inhibitedBy") else "")
                          + f" startsAt {a.get('startsAt')}", flush=True)
            except (urllib.error.URLError, OSError, ValueError) as e:
                print(f"Alertmanager alerts: unavailable ({e})", flush=True)
        with Sink.lock:
            got = list(Sink.received)
        print(f"webhook notifications ({len(got)}):", flush=True)
        for t, path, payload in got:
            alerts = "; ".join(f"{fmt_alert(a['labels'])} {a.get('status')}"
                               for a in payload.get("alerts", []))
            print(f"  +{t - T0:6.1f}s {path} {payload.get('status')}: {alerts}", flush=True)
        for child in self.children:
            if child.name.startswith("redis-server#") and child is not self.redis.child:
                continue
            tail = child.tail(15 if child.name != "alertmanager" else 400)
            if child.name == "alertmanager":  # debug level: skip the per-alert receipts
                tail = "".join(line for line in tail.splitlines(True)
                               if 'msg="Received alert"' not in line).splitlines(True)[-20:]
                tail = "".join(tail)
            tail = tail.rstrip()
            if tail:
                print(f"--- {child.name} log tail ({child.log_path}):\n{tail}", flush=True)

    def stop(self):
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as e:  # keep stopping the others
                log(f"could not stop {child.name} pid {child.pid}: {e}")
        if self.switch:
            self.switch.close()
        if self.sink:
            self.sink.shutdown()
            self.sink.server_close()


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    canaryd_bin = os.path.abspath(argv[1])
    am_config = argv[2] if len(argv) == 3 else str(SHIPPED_AM_CONFIG)

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tmp = tempfile.mkdtemp(prefix="canaryd-e2e-alerting-")
    log(f"temp dir {tmp}; canaryd {canaryd_bin}")
    test = E2E(canaryd_bin, am_config, tmp)
    error = None
    try:
        test.run()
    except Failure as e:
        error = str(e)
    except Interrupted as e:
        error = f"interrupted by {e}"
    except Exception as e:  # a bug in the test: still clean up and report
        import traceback
        traceback.print_exc()
        error = f"{type(e).__name__}: {e}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if error or test.failures:
            if error:
                log(f"FAIL: {error}")
            try:
                test.dump()
            except Exception as e:
                log(f"diagnostics failed: {e}")
        test.stop()
    failed = bool(error or test.failures)
    if failed:
        log(f"FAILED ({len(test.failures) + bool(error)} problems); temp dir kept: {tmp}")
        return 1
    if os.environ.get("E2E_KEEP_TMP"):
        log(f"temp dir kept (E2E_KEEP_TMP): {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"PASSED in {time.monotonic() - T0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
