"""Shared helpers for canaryd's benchmarks (bench/README.md).

Every server is started here, on 127.0.0.1 and a free port, in a temp dir, and
stopped by its PID when the benchmark ends, however it ends (normal exit, an
exception, SIGINT/SIGTERM/SIGHUP). Children also get PR_SET_PDEATHSIG, so a
benchmark killed outright does not leave servers behind.
"""

import atexit
import ctypes
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
BUILD = os.environ.get("CANARYD_BUILD_DIR", os.path.join(REPO, "build-release"))
CANARYD = os.environ.get("CANARYD_BIN", os.path.join(BUILD, "canaryd"))
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
BLACKHOLE = os.path.join(BUILD, "bench", "blackhole")
AGENT_SERVER = os.path.join(BUILD, "bench", "agent_server")
HICCUP = os.path.join(BUILD, "bench", "hiccup")
CONNECT_FLOOR = os.path.join(BUILD, "bench", "connect_floor")
GET_FLOOR = os.path.join(BUILD, "bench", "get_floor")
CURL_FLOOR = os.path.join(BUILD, "bench", "curl_floor")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
FAKE_PLATFORM = os.path.join(REPO, "tests", "fixtures", "fake_platform.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# urllib must never go through a proxy from the environment: loopback only.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def env_seconds(name, default):
    """A duration knob, e.g. BENCH_WINDOW=20 for quicker runs."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Processes and cleanup

_procs = []  # (name, Popen), in start order
_tmpdirs = []
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM to this child if we die.
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def start(name, argv, log_path=None, **kw):
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", out),
                         stderr=kw.pop("stderr", out), preexec_fn=_die_with_parent, **kw)
    _procs.append((name, p))
    return p


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Stops one child by its PID: `sig`, then SIGKILL if it lingers."""
    if p.poll() is not None:
        return p.returncode
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        return p.wait(timeout=5)


def stop_all():
    while _procs:
        name, p = _procs.pop()
        try:
            stop(p)
        except Exception as e:  # keep stopping the others
            print(f"warning: stopping {name} (pid {p.pid}): {e}", file=sys.stderr)
    if os.environ.get("BENCH_KEEP_TMP") != "1":
        while _tmpdirs:
            shutil.rmtree(_tmpdirs.pop(), ignore_errors=True)


def forget(p):
    for i, (_, q) in enumerate(_procs):
        if q is p:
            del _procs[i]
            return


def _on_signal(signum, frame):
    # Once: a second signal must not interrupt the cleanup the first started.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise SystemExit(f"interrupted by signal {signum}")


atexit.register(stop_all)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def tmpdir(tag):
    d = tempfile.mkdtemp(prefix=f"canaryd-bench-{tag}-")
    _tmpdirs.append(d)
    return d


def wait_ready_file(p, ready, name, timeout=10.0):
    """The words of a server's ready file (it writes it with a rename: complete
    or absent), once it exists; raises if the server exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.02)
    with open(ready) as f:
        return f.read().split()


def start_blackhole(ports=4, max_seconds=900, nice=0):
    """bench/blackhole on `ports` listeners: (process, ports). `nice` lowers its
    priority, so that a target's own accept work competes less with canaryd."""
    d = tmpdir("blackhole")
    ready = os.path.join(d, "ready")
    prefix = ["nice", "-n", str(nice)] if nice else []
    p = start("blackhole", [*prefix, BLACKHOLE, "--ports", str(ports), "--max-conns", "30000",
                            "--max-seconds", str(max_seconds), "--ready-file", ready],
              log_path=os.path.join(d, "blackhole.log"))
    return p, [int(x) for x in wait_ready_file(p, ready, "blackhole")[1:]]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# HTTP

def http_get(url, timeout=30.0):
    assert url.startswith("http://127.0.0.1:"), url
    try:
        with _opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, proc=None, timeout=30.0, want=200):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} while starting")
        try:
            status, _ = http_get(url, timeout=2)
            if status == want:
                return
            last = f"HTTP {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s ({last})")


# --------------------------------------------------------------------------
# Servers

def start_nginx(tag, echo=False):
    """nginx in a temp prefix: one process (master_process off), one event loop.

    Returns (proc, port), port serving /health: 200 {"status":"healthy"}. With
    echo, returns (proc, port, sleep_port): a second listener of the same
    process whose /sleep answers "ok" after echo_sleep 0.05 (a known 50 ms)."""
    d = tmpdir(f"nginx-{tag}")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    port = free_port()
    sleep_port = free_port() if echo else None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    echo_module = ""
    echo_location = ""
    if echo:
        if not os.path.exists(ECHO_MODULE):
            raise RuntimeError(f"{ECHO_MODULE} missing: apt-get install libnginx-mod-http-echo")
        echo_module = f"load_module {ECHO_MODULE};"
        # A listener of its own, so a packet capture can take just its traffic.
        echo_location = (f"server {{ listen 127.0.0.1:{sleep_port} backlog=4096; "
                         "location = /sleep { echo_sleep 0.05; echo ok; } }")
    conf = f"""
{echo_module}
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {soft};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {min(soft - 64, 16384)}; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /health {{ default_type application/json; return 200 '{{"status":"healthy"}}'; }}
  }}
  {echo_location}
}}
"""
    conf_path = os.path.join(d, "nginx.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    p = start("nginx", [NGINX, "-p", d, "-c", conf_path, "-e", os.path.join(d, "error.log")],
              log_path=os.path.join(d, "stdout.log"))
    wait_http(f"http://127.0.0.1:{port}/health", proc=p)
    if echo:
        wait_http(f"http://127.0.0.1:{sleep_port}/sleep", proc=p)
        return p, port, sleep_port
    return p, port


def start_fake_platform(tag, timeout=30.0):
    """tests/fixtures/fake_platform.py (Python asyncio, one process) on 127.0.0.1
    and a port the OS picks, quiet. Returns (proc, port) once its ready file
    says it listens."""
    d = tmpdir(f"fixture-{tag}")
    ready = os.path.join(d, "ready.json")
    p = start("fake_platform", [sys.executable, FAKE_PLATFORM, "--host", "127.0.0.1",
                                "--port", "0", "--ready-file", ready, "--quiet"],
              log_path=os.path.join(d, "fixture.log"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            with open(os.path.join(d, "fixture.log"), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace").strip()
            raise RuntimeError(f"fake_platform exited with {p.returncode} while starting: "
                               f"{tail}")
        try:
            with open(ready) as f:  # written with a rename: complete or absent
                return p, int(json.load(f)["http"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise RuntimeError(f"fake_platform not ready after {timeout}s")


class Hiccups:
    """bench/hiccup over a window: how long this machine stalls a runnable thread
    (a 1 ms sleeper per CPU). No process here can be more punctual, so it is the
    floor under any maximum latency a benchmark reports."""

    def __init__(self, seconds):
        self.proc = start("hiccup", [HICCUP, "--seconds", f"{seconds:.1f}"],
                          stdout=subprocess.PIPE)

    def result(self):
        """The JSON summary ({"all": {"max": s, "over_10ms": n, ...}, ...}), or None."""
        try:
            out, _ = self.proc.communicate(timeout=30)
            forget(self.proc)
            return json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            stop(self.proc)
            forget(self.proc)
            return None


def start_agent_server(tag, timeout=10.0):
    """bench/agent_server (the punctual scripted agent, C++) on 127.0.0.1 and a port
    the OS picks. Returns (proc, port) once its ready file says it listens."""
    d = tmpdir(f"agent-server-{tag}")
    ready = os.path.join(d, "ready")
    p = start("agent_server", [AGENT_SERVER, "--max-conns", "20000", "--max-seconds", "900",
                               "--ready-file", ready],
              log_path=os.path.join(d, "agent_server.log"))
    return p, int(wait_ready_file(p, ready, "agent_server", timeout)[1])


def canaryd_config(listen_port, probes, state_history=None, default_timing="1s", detail="full"):
    """probes: list of (name, url, interval, timeout); `default_timing` is the
    defaults' interval and timeout, left off the probes that use it. `detail`:
    metrics.detail, full by default so that figures compare across versions
    (bench_ws_hold reads a phase histogram)."""
    lines = ["global:", f"  listen: 127.0.0.1:{listen_port}", "  labels: {env: bench}",
             f"  defaults: {{interval: {default_timing}, timeout: {default_timing}}}",
             f"  metrics: {{detail: {detail}}}"]
    if state_history:
        lines.append(f"  state_history: {state_history}")
    # BENCH_WORKERS: the probe loops (global.workers); unset, canaryd's default (one per CPU).
    if os.environ.get("BENCH_WORKERS"):
        lines.append(f"  workers: {int(os.environ['BENCH_WORKERS'])}")
    lines.append("probes:")
    for name, url, interval, timeout in probes:
        # One flow-style line a probe, at column 0, without the defaults
        # (timing, status 2xx): 15,100 probes must stay within canaryd's 1 MiB
        # config limit.
        timing = "".join(f", {k}: {v}" for k, v in (("interval", interval), ("timeout", timeout))
                         if str(v) != default_timing)
        lines.append(f"- {{name: {name}, type: http{timing}, http: {{url: \"{url}\"}}}}")
    return "\n".join(lines) + "\n"


class Canaryd:
    def __init__(self, tag, config_text, ready_timeout=120.0, extra_args=()):
        d = tmpdir(f"canaryd-{tag}")
        self.dir = d
        self.port = int(re.search(r"listen: 127\.0\.0\.1:(\d+)", config_text).group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(d, "canaryd.yaml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.proc = start("canaryd", [CANARYD, "run", "--config", self.config,
                                      "--log-level", "warn", *extra_args],
                          log_path=os.path.join(d, "canaryd.log"))
        self.pid = self.proc.pid
        wait_http(self.base + "/-/ready", proc=self.proc, timeout=ready_timeout)

    def stop(self):
        rc = stop(self.proc)
        forget(self.proc)
        return rc

    def log_lines(self):
        """The non-empty lines of its log (warn and above at --log-level warn)."""
        try:
            with open(os.path.join(self.dir, "canaryd.log"), "rb") as f:
                return [x.decode(errors="replace").rstrip() for x in f if x.strip()]
        except OSError:
            return []

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.dir, "canaryd.log"), "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def check_config(tag, text):
    """`canaryd check-config` on a config first: a clear message if this build
    lacks a probe type or rejects a key, rather than a daemon that will not start."""
    path = os.path.join(tmpdir(f"check-{tag}"), "canaryd.yaml")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([CANARYD, "check-config", path], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        more = f" (and {len(msg) - 2} more lines)" if len(msg) > 2 else ""
        raise RuntimeError(f"{CANARYD} check-config rejects the {tag} config: "
                           + "; ".join(msg[:2]) + more)


# --------------------------------------------------------------------------
# The test fixture's WebSocket counters (tests/fixtures/fake_platform.py)

def fixture_ws_stats(port):
    """GET /_ws_stats of one fixture process, without its `recent` handshakes."""
    status, body = http_get(f"http://127.0.0.1:{port}/_ws_stats", timeout=30)
    if status != 200:
        raise RuntimeError(f"fixture :{port} /_ws_stats returned {status}")
    s = json.loads(body)
    s.pop("recent", None)
    return s


def fixtures_stats(fixtures):
    """Summed numeric counters of all fixture processes ((proc, port) pairs), and
    the monotonic time they were read."""
    total = {}
    for _, port in fixtures:
        for k, v in fixture_ws_stats(port).items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total, time.monotonic()


def wait_fixtures_idle(fixtures, timeout=10.0):
    """Waits (bounded) until no WebSocket is open or hanging on any fixture;
    returns how many are left."""
    deadline = time.monotonic() + timeout
    while True:
        s, _ = fixtures_stats(fixtures)
        left = s.get("open_total", 0) + s.get("hanging", 0)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.25)


def run_daemon_against_fixtures(r, tag, config_text, fixtures, measure):
    """Starts canaryd on `config_text`, runs measure(d), and, however that ends,
    stops canaryd and records into `r` its exit status, the WebSockets still
    open on the fixtures before and after, and the tail of its log."""
    r["fixture_open_before"] = wait_fixtures_idle(fixtures)
    d = Canaryd(tag, config_text)
    try:
        measure(d)
    finally:
        r["canaryd_exit"] = d.stop()
        r["fixture_open_after"] = wait_fixtures_idle(fixtures)
        lines = d.log_lines()
        r["log_lines"], r["log_tail"] = len(lines), lines[-5:]
    return r


# --------------------------------------------------------------------------
# Prometheus text format

_sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(base, names, timeout=120.0):
    """Fetches /metrics and returns (samples, seconds_taken, bytes, t_mid).

    samples: list of (name, labels dict, value) for metric names starting with
    one of `names` (so histogram _bucket/_sum/_count come along). t_mid is the
    monotonic midpoint of the request."""
    t0 = time.monotonic()
    status, body = http_get(base + "/metrics", timeout=timeout)
    t1 = time.monotonic()
    if status != 200:
        raise RuntimeError(f"/metrics returned {status}")
    prefixes = tuple(names)
    out = []
    for line in body.decode().splitlines():
        if not line.startswith(prefixes):
            continue
        m = _sample_re.match(line)
        if not m:
            continue
        labels = dict(_label_re.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out, t1 - t0, len(body), (t0 + t1) / 2


def try_scrape(d, names, attempts=3, timeout=30):
    """scrape() of a Canaryd, retried (bounded); None if it cannot serve /metrics
    (e.g. out of fds), said in the log."""
    last = None
    for _ in range(attempts):
        try:
            return scrape(d.base, names, timeout=timeout)
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            last = e
            time.sleep(1)
    log(f"  /metrics failed {attempts} times ({last!r}): its figures are n/a")
    return None


def sum_samples(samples, name, pred=None):
    return sum(v for n, l, v in samples if n == name and (pred is None or pred(l)))


def counter_delta(after, before, name, pred=None):
    return sum_samples(after, name, pred) - sum_samples(before, name, pred)


def delta_by_label(after, before, name, label, pred=None):
    """{label value: after - before} of a counter, summed over the other labels;
    values that did not move are left out."""
    out = {}
    for sign, samples in ((1, after), (-1, before)):
        for n, l, v in samples:
            if n == name and label in l and (pred is None or pred(l)):
                out[l[label]] = out.get(l[label], 0.0) + sign * v
    return {k: v for k, v in out.items() if v}


def histogram(samples, name, pred=None):
    """Cumulative buckets {le: count} summed over matching series."""
    b = {}
    for n, l, v in samples:
        if n == name + "_bucket" and (pred is None or pred(l)):
            le = math.inf if l["le"] == "+Inf" else float(l["le"])
            b[le] = b.get(le, 0.0) + v
    return b


def histogram_delta(after, before):
    return {le: after[le] - before.get(le, 0.0) for le in after}


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile: linear interpolation inside the bucket
    holding rank q*count; the lowest bucket starts at 0, and a rank in +Inf
    returns the highest finite bound."""
    les = sorted(buckets)
    total = buckets[les[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return les[-2] if len(les) > 1 else math.nan


# --------------------------------------------------------------------------
# /proc

def cpu_ticks(pid, thread=None):
    """utime + stime of the process, or of its thread named `thread` (comm)."""
    stat = f"/proc/{pid}/stat"
    if thread is not None:
        stat = None
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().strip() == thread:
                        stat = f"/proc/{pid}/task/{tid}/stat"
                        break
            except OSError:
                continue
        if stat is None:
            raise RuntimeError(f"no thread {thread} in process {pid}")
    with open(stat) as f:
        line = f.read()
    fields = line[line.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def machine_ticks():
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat
    (idle and iowait are not busy)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])  # guest time is already in user/nice
    return total - fields[3] - fields[4], total


def tcp_ext(names=("ListenOverflows", "ListenDrops")):
    """Machine-wide TcpExt counters from /proc/net/netstat, e.g. accept-queue
    overflows (a SYN dropped because a listener's backlog was full)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], (int(v) for v in vals.split()[1:])))
            return {n: row.get(n, 0) for n in names}
    return dict.fromkeys(names, 0)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024  # kB -> bytes
            elif k == "Threads":
                out[k] = int(v)
    return out


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# --------------------------------------------------------------------------
# A measured window of a running canaryd

def ensure_alive(d, when):
    if d.proc.poll() is not None:
        raise RuntimeError(f"canaryd exited ({d.proc.returncode}) in the {when}:\n"
                           + d.log_tail())


def warm_up(d, seconds):
    """Waits `seconds`, checking every second that canaryd still runs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ensure_alive(d, "warm-up")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


class Window:
    """CPU of canaryd, the fixtures and the machine between start and close,
    with canaryd's RSS and descriptors sampled on the way."""

    def __init__(self, d, fixture_pids):
        self.d, self.fixture_pids = d, list(fixture_pids)
        self.t0 = time.monotonic()
        self.cpu0, self.m0 = cpu_ticks(d.pid), machine_ticks()
        self.fcpu0 = [cpu_ticks(p) for p in self.fixture_pids]
        self.rss_max = self.fds_max = 0

    def elapsed(self):
        return time.monotonic() - self.t0

    def sample(self):
        self.rss_max = max(self.rss_max, proc_status(self.d.pid)["VmRSS"])
        self.fds_max = max(self.fds_max, open_fds(self.d.pid))

    def close(self):
        wall = time.monotonic() - self.t0
        cpu1, m1 = cpu_ticks(self.d.pid), machine_ticks()
        fcpu1 = [cpu_ticks(p) for p in self.fixture_pids]
        status, fds = proc_status(self.d.pid), open_fds(self.d.pid)
        return {
            "window_s": wall,
            "cpu_pct": 100.0 * (cpu1 - self.cpu0) / CLK_TCK / wall,
            "fixture_cpu_pct": [100.0 * (b - a) / CLK_TCK / wall
                                for a, b in zip(self.fcpu0, fcpu1)],
            "machine_busy_pct": 100.0 * (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1]),
            "rss_end": status["VmRSS"], "rss_max": max(self.rss_max, status["VmRSS"]),
            "threads": status["Threads"], "fds_end": fds, "fds_max": max(self.fds_max, fds),
        }


def scrape_deltas(s0, s1):
    """Runs, failures by reason, skipped slots and scheduler lag between two
    try_scrape() results (rates over the time between the scrapes)."""
    before, after = s0[0], s1[0]
    runs = counter_delta(after, before, "canary_probe_runs_total")
    lag = histogram_delta(histogram(after, "canary_scheduler_lag_seconds"),
                          histogram(before, "canary_scheduler_lag_seconds"))
    return {
        "runs": runs, "runs_per_s": runs / (s1[3] - s0[3]),
        "failures": counter_delta(after, before, "canary_probe_failures_total"),
        "failure_reasons": {k: int(v) for k, v in delta_by_label(
            after, before, "canary_probe_failures_total", "reason").items()},
        "skipped": counter_delta(after, before, "canary_scheduler_skipped_runs_total"),
        "lag_p50": histogram_quantile(0.5, lag), "lag_p99": histogram_quantile(0.99, lag),
    }


# --------------------------------------------------------------------------
# Numbers

def percentile(values, q):
    """Nearest-rank percentile (the same definition loadgen uses)."""
    if not values:
        return math.nan
    v = sorted(values)
    rank = max(1, math.ceil(q * len(v)))
    return v[min(rank, len(v)) - 1]


def ms(x, digits=2):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1e3:.{digits}f} ms"


def signed_ms(x, digits=2):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1e3:+.{digits}f} ms"


def mib(x):
    return f"{x / (1 << 20):.0f} MiB"


def num(x, spec=",.0f", unit=""):
    """x formatted with `spec`, or n/a for None and NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:{spec}}{unit}"


def fmt_reasons(counts):
    """{reason: count} as "timeout 3, connect 1", largest first; "-" if empty."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def print_columns(title, heads, rows):
    """A figures table: rows of (label, [one value per head]), labels left."""
    w0 = max(len(x[0]) for x in rows)
    ws = [max([len(h)] + [len(x[1][i]) for x in rows]) for i, h in enumerate(heads)]
    print()
    print(title)
    print((f"  {'':<{w0}}  " + "  ".join(h.ljust(w) for h, w in zip(heads, ws))).rstrip())
    for label, vals in rows:
        print(f"  {label:<{w0}}  " + "  ".join(v.ljust(w) for v, w in zip(vals, ws)).rstrip())
    print()


def save_result(name, data):
    d = os.environ.get("BENCH_RESULTS")
    if not d:
        return
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2, default=lambda o: None)


def run_json_tool(tool, argv, timeout):
    """Runs a bench tool that prints one JSON object to completion (stopped by
    PID if it outlives `timeout`) and returns that object."""
    p = start(tool, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            stop(p)
        forget(p)
    if p.returncode != 0:
        raise RuntimeError(f"{tool} failed ({p.returncode}): {err.decode(errors='replace')}")
    return json.loads(out)


def run_loadgen(args, timeout):
    """Runs bench/loadgen to completion and returns its JSON result."""
    return run_json_tool("loadgen", [LOADGEN] + args, timeout)
