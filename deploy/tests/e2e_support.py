#!/usr/bin/env python3
"""The parts of the end-to-end alerting test (e2e_alerting.py) that are not
scenarios: children started and stopped by PID, bounded waits, redis-server and
PostgreSQL on free ports, the webhook sink, the Alertmanager config rewrite,
and runs side by side. The fault relays are in e2e_relays.py. python3 standard
library only."""

import ctypes
import datetime
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

RECEIVER_OF = {"P0": "pager", "P1": "high-priority", "P2": "ticket"}
GROUP_INTERVAL = "10s"   # every route's group_interval in the Alertmanager copy
TARGET_GROUP_WAIT = 40   # every group_wait but the P0 route's, in the copy (s)
START_TIMEOUT = 30       # one child to become ready
TOTAL_TIMEOUT = 840      # the whole test (ctest's TIMEOUT is 900)

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


# --------------------------------------------------------------------------- PostgreSQL

class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port, trust auth.
    initdb refuses to run as root, so as root the server runs as the
    `postgres` user that Debian's package creates."""

    def __init__(self, tmp, children):
        self.tmp, self.children = tmp, children
        self.port = None

    def start(self):
        versions = sorted(os.listdir("/usr/lib/postgresql")) \
            if os.path.isdir("/usr/lib/postgresql") else []
        if not versions:
            raise Failure("PostgreSQL is not installed (scripts/install-deps.sh installs it)")
        pgbin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        base = os.path.join(self.tmp, "pg")
        data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
        os.makedirs(data)
        os.makedirs(sock)
        as_user = []
        if os.geteuid() == 0:
            os.chmod(self.tmp, 0o755)  # the postgres user must reach its directory
            for path in (base, data, sock):
                shutil.chown(path, "postgres", "postgres")
            as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
        r = subprocess.run(as_user + [f"{pgbin}/initdb", "-D", data, "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--no-sync"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise Failure(f"initdb failed ({r.returncode}): {r.stderr[-2000:]}")
        for _ in range(3):
            self.port = free_port()
            child = Child("postgres", as_user + [
                f"{pgbin}/postgres", "-D", data, "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-k", sock, "-c", "fsync=off"],
                os.path.join(self.tmp, "postgres.log"))
            self.children.append(child)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and child.running():
                if self.ready():
                    log(f"postgres ready on 127.0.0.1:{self.port}")
                    return
                time.sleep(0.2)
            exited = not child.running()
            child.stop()
            if exited and "address already in use" in child.tail().lower():
                continue
            raise Failure("postgres did not become ready; log tail:\n" + child.tail())
        raise Failure("postgres could not bind a free port")

    def ready(self):
        r = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres"], capture_output=True, timeout=10)
        return r.returncode == 0


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


# --------------------------------------------------------------------------- side by side

def run_side_by_side(argvs, names):
    """Runs each argv as a child at once and waits for all: runs that mostly
    wait take the time of one together. Each line of a child's output is
    prefixed with its name; any failure fails all. -> exit code."""
    children = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
                for name, argv in zip(names, argvs)}

    def relay(name, proc):
        for line in proc.stdout:
            sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
            sys.stdout.flush()

    threads = [threading.Thread(target=relay, args=item, daemon=True)
               for item in children.items()]
    for t in threads:
        t.start()
    try:
        codes = {name: p.wait() for name, p in children.items()}
    finally:
        for p in children.values():
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
    for t in threads:
        t.join(timeout=10)
    for name, code in codes.items():
        print(f"{name}: {'PASSED' if code == 0 else f'FAILED (exit {code})'}", flush=True)
    return 0 if all(c == 0 for c in codes.values()) else 1
