#!/usr/bin/env python3
"""Checks the inhibit_rules of alertmanager.yml against a real Alertmanager.

amtool can test routing but not inhibition, so this starts Alertmanager on
127.0.0.1 (free port, gossip off, storage in a temp dir), posts canaryd-shaped
alerts to POST /api/v2/alerts and reads GET /api/v2/alerts, which reports
state "suppressed" and inhibitedBy (fingerprints of the muting alerts).

The Alertmanager runs the config's route tree and inhibit_rules unchanged, but
its receivers section is replaced: every receiver becomes a webhook to a sink
inside this script. So the check never notifies a real integration, even after
the placeholder URLs have been replaced. The sink is also used to check that
the P0 reaches the "pager" receiver.

Usage: check_inhibition.py [alertmanager.yml]
Exit: 0 pass, 1 fail, 77 Alertmanager not installed. python3 stdlib only.
ALERTMANAGER_BIN overrides the binary (default: alertmanager, then
prometheus-alertmanager, as Debian names it).
"""

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
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "alertmanager.yml")

START_TIMEOUT = 15    # seconds for Alertmanager to become ready
SETTLE_TIMEOUT = 20   # seconds for inhibition to show in the API
PAGE_TIMEOUT = 20     # seconds for the P0 page
# Test alerts start this long ago: older than every group_wait, so
# Alertmanager flushes their groups at once instead of waiting.
STARTED_AGO = 3600

S = {"env": "staging", "location": "eu-west-1"}
CACHE = {"probe": "cache", "type": "redis", "category": "infrastructure"}

# The P0 that should do the muting.
SOURCE = dict(alertname="CanaryRedisDown", severity="P0", **S, **CACHE)

# (description, labels, expected state while SOURCE fires)
CASES = [
    ("the P0 itself", SOURCE, "active"),
    ("P1 same probe", dict(alertname="CanaryTLSCertExpiryCritical", severity="P1", **S, **CACHE),
     "suppressed"),
    ("P2 same probe", dict(alertname="CanaryProbeStale", severity="P2", **S, **CACHE), "suppressed"),
    ("P2 category aggregate, same category (no probe label)",
     dict(alertname="CanaryCategorySuccessLow", severity="P2", category="infrastructure", **S),
     "suppressed"),
    ("P1 other probe, same category",
     dict(alertname="CanaryDatabaseLatencyHigh", severity="P1", probe="orders-db", type="postgres",
          category="infrastructure", **S),
     "suppressed"),
    ("P2 other probe, other category",
     dict(alertname="CanaryLatencyP95High", severity="P2", probe="frontend", type="http",
          category="frontend", **S),
     "active"),
    ("P2 category aggregate, other category",
     dict(alertname="CanaryCategorySuccessLow", severity="P2", category="frontend", **S), "active"),
    ("P1 same probe, env=production (P0 is staging)",
     dict(alertname="CanaryTLSCertExpiryCritical", severity="P1", env="production",
          location="eu-west-1", **CACHE),
     "active"),
    ("P2 category aggregate, same category, env=production",
     dict(alertname="CanaryCategorySuccessLow", severity="P2", env="production",
          location="eu-west-1", category="infrastructure"),
     "active"),
    ("P2 same probe, other location",
     dict(alertname="CanaryProbeStale", severity="P2", env="staging", location="us-east-1", **CACHE),
     "active"),
    ("P1 aggregate without probe/category",
     dict(alertname="CanaryCriticalProbesFailing", severity="P1", **S), "active"),
    ("P2 overall aggregate", dict(alertname="CanaryOverallSuccessLow", severity="P2", **S), "active"),
    ("P1 meta alert (job/instance, no probe)",
     dict(alertname="CanarydDown", severity="P1", job="canaryd", instance="127.0.0.1:9464", **S),
     "active"),
    ("another P0, other category (a P0 never mutes a P0)",
     dict(alertname="CanaryWebSocketSuccessCritical", severity="P0", probe="live-feed",
          type="websocket", category="realtime", **S),
     "active"),
    # A P0 outside the contract (no probe, no category) must not mute the
    # aggregates that lack those labels too (empty == empty in Alertmanager).
    ("malformed P0 without probe/category (env=qa)",
     dict(alertname="CanaryMalformedP0", severity="P0", env="qa", location="eu-west-1"), "active"),
    ("P2 overall aggregate next to the malformed P0 (env=qa)",
     dict(alertname="CanaryOverallSuccessLow", severity="P2", env="qa", location="eu-west-1"),
     "active"),
    ("P2 meta alert next to the malformed P0 (env=qa)",
     dict(alertname="CanaryConfigReloadFailed", severity="P2", env="qa", location="eu-west-1",
          job="canaryd", instance="127.0.0.1:9464"),
     "active"),
]

# canaryd's own overload: while CanarydOverloaded fires for an instance in
# staging/eu-west-1, the probe alerts of that location are muted (their
# results are incomplete and may be canaryd's own doing); canaryd's own
# alerts and other locations are not.
OVERLOAD_SOURCE = dict(alertname="CanarydOverloaded", severity="P1", job="canaryd",
                       instance="10.0.0.7:9464", **S)
OVERLOAD_CASES = [
    ("the overload alert itself", OVERLOAD_SOURCE, "active"),
    ("P0 probe alert, same location", dict(alertname="CanaryRedisDown", severity="P0", **S, **CACHE),
     "suppressed"),
    ("P1 probe alert, same location",
     dict(alertname="CanaryWebSocketSuccessLow", severity="P1", probe="live-feed",
          type="websocket", category="realtime", **S),
     "suppressed"),
    ("P2 aggregate, same location", dict(alertname="CanaryOverallSuccessLow", severity="P2", **S),
     "suppressed"),
    ("P1 probe alert, other location",
     dict(alertname="CanaryWebSocketSuccessLow", severity="P1", probe="live-feed",
          type="websocket", category="realtime", env="staging", location="us-east-1"),
     "active"),
    ("canaryd's own alert, same location",
     dict(alertname="CanarydShardMissing", severity="P1", **S), "active"),
]

# A P0 across locations (alerting.min_failing_locations above 1): one alert
# for the probe, without a location label. It mutes the P1/P2 of its probe
# and category in every location of its env, and nothing in another env.
ACROSS_SOURCE = dict(alertname="CanaryRedisDown", severity="P0", env="staging", **CACHE)
ACROSS_CASES = [
    ("the P0 across locations itself", ACROSS_SOURCE, "active"),
    ("P1 same probe, eu-west-1", dict(alertname="CanaryTLSCertExpiryCritical", severity="P1", **S,
                                      **CACHE), "suppressed"),
    ("P2 same probe, us-east-1",
     dict(alertname="CanaryProbeStale", severity="P2", env="staging", location="us-east-1", **CACHE),
     "suppressed"),
    ("P2 category aggregate, same category, us-east-1",
     dict(alertname="CanaryCategorySuccessLow", severity="P2", env="staging",
          location="us-east-1", category="infrastructure"),
     "suppressed"),
    ("P1 other probe, same category, eu-west-1",
     dict(alertname="CanaryDatabaseLatencyHigh", severity="P1", probe="orders-db", type="postgres",
          category="infrastructure", **S),
     "suppressed"),
    ("P2 other probe, other category",
     dict(alertname="CanaryLatencyP95High", severity="P2", probe="frontend", type="http",
          category="frontend", **S),
     "active"),
    ("P1 same probe, env=production (P0 is staging)",
     dict(alertname="CanaryTLSCertExpiryCritical", severity="P1", env="production",
          location="eu-west-1", **CACHE),
     "active"),
    ("P1 aggregate without probe/category",
     dict(alertname="CanaryCriticalProbesFailing", severity="P1", **S), "active"),
    # (in a location of its own: it mutes its category there)
    ("another P0 of the category, ap-south-1 (a P0 never mutes a P0)",
     dict(alertname="CanaryDatabaseLatencyCritical", severity="P0", env="staging",
          location="ap-south-1", probe="orders-db", type="postgres", category="infrastructure"),
     "active"),
]

SCENARIOS = [(SOURCE, CASES), (OVERLOAD_SOURCE, OVERLOAD_CASES), (ACROSS_SOURCE, ACROSS_CASES)]


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def find_alertmanager():
    env = os.environ.get("ALERTMANAGER_BIN")
    if env:
        return shutil.which(env) or (env if os.access(env, os.X_OK) else None)
    return shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOP_LEVEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")
RECEIVER_NAME = re.compile(r"""^\s*-\s*name\s*:\s*['"]?([^'"#\s]+)['"]?\s*(#.*)?$""")


def test_config(text, sink_url):
    """The config with receivers (and global/templates, which only receivers
    use) replaced by webhooks to the sink; route and inhibit_rules unchanged."""
    sections, current = {}, None
    order = []
    for line in text.splitlines():
        m = TOP_LEVEL.match(line)
        if m:
            current = m.group(1)
            order.append(current)
            sections[current] = []
        if current is not None:
            sections[current].append(line)
    if "receivers" not in sections or "route" not in sections:
        raise Failure("config has no top-level route/receivers block")
    names = [m.group(1) for m in map(RECEIVER_NAME.match, sections["receivers"]) if m]
    if not names:
        raise Failure("found no receiver names in the receivers block")
    out = []
    for key in order:
        if key in ("receivers", "global", "templates"):
            continue
        out.extend(sections[key])
    out.append("receivers:")
    for name in names:
        out += [f"  - name: '{name}'",
                "    webhook_configs:",
                f"      - url: '{sink_url}/{name}'",
                "        send_resolved: true"]
    return "\n".join(out) + "\n", names


class Sink(http.server.BaseHTTPRequestHandler):
    received = []  # (receiver, payload)
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with Sink.lock:
            Sink.received.append((self.path.lstrip("/"), payload))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def set_pdeathsig():
    # Alertmanager dies with this script even if it is SIGKILLed (Linux).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def http_json(method, url, data=None, timeout=5):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def post_alerts(base, labelsets, resolved=False):
    now = time.time()
    alerts = [{"labels": ls,
               "annotations": {"summary": "check_inhibition.py test alert"},
               "startsAt": iso(now - STARTED_AGO),
               "endsAt": iso(now - 1 if resolved else now + 3600),
               "generatorURL": "http://127.0.0.1/check_inhibition"} for ls in labelsets]
    http_json("POST", base + "/api/v2/alerts", alerts)


def snapshot(base):
    """labels (as a sorted tuple) -> alert, for every alert the API reports."""
    return {tuple(sorted(a["labels"].items())): a for a in http_json("GET", base + "/api/v2/alerts")}


def key(labels):
    return tuple(sorted(labels.items()))


class Alertmanager:
    def __init__(self, binary, config_path, tmp):
        self.binary, self.config_path, self.tmp = binary, config_path, tmp
        self.proc = None
        self.logf = None
        self.log_path = os.path.join(tmp, "alertmanager.log")

    def start(self):
        for attempt in range(3):
            port = free_port()
            storage = os.path.join(self.tmp, f"data{attempt}")
            os.makedirs(storage)
            self.logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.binary,
                 f"--config.file={self.config_path}",
                 f"--storage.path={storage}",
                 f"--web.listen-address=127.0.0.1:{port}",
                 "--cluster.listen-address=",  # no gossip, no cluster port
                 "--log.level=info"],
                stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
                preexec_fn=set_pdeathsig)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(base + "/-/ready", timeout=1) as r:
                        if r.status == 200:
                            log(f"Alertmanager pid {self.proc.pid} ready on 127.0.0.1:{port}")
                            return base
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.1)
            exited = self.proc.poll() is not None
            self.stop()
            if exited and "address already in use" in self.log_tail():
                continue  # lost the race for the port: try another
            raise Failure("Alertmanager did not become ready"
                          + (" (it exited)" if exited else f" within {START_TIMEOUT}s"))
        raise Failure("Alertmanager could not bind a port in 3 attempts")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    last_err = None
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (urllib.error.URLError, OSError, ValueError) as e:
            last_err = e
        time.sleep(0.25)
    raise Failure(f"timed out after {timeout}s waiting for {what}"
                  + (f" (last error: {last_err})" if last_err else ""))


# Receiver each severity routes to (checked by routes.txt too).
RECEIVER = {"P0": "pager", "P1": "high-priority", "P2": "ticket"}


def notified(labels_key, receiver=None):
    """Receivers that got a firing notification for these labels (or whether
    `receiver` did)."""
    with Sink.lock:
        got = sorted({r for r, p in Sink.received if p for a in p.get("alerts", [])
                      if a.get("status") == "firing" and key(a["labels"]) == labels_key})
    return receiver in got if receiver else got


def state_of(alert):
    if alert is None:
        return "missing", []
    return alert["status"]["state"], alert["status"].get("inhibitedBy") or []


def run(binary, config_file, tmp):
    failures = 0
    for n, (source, cases) in enumerate(SCENARIOS):
        folder = os.path.join(tmp, f"scenario{n}")  # each Alertmanager starts empty
        os.makedirs(folder)
        failures += run_scenario(binary, config_file, folder, source, cases)
    return failures


def run_scenario(binary, config_file, tmp, source, cases):
    failures = 0
    with Sink.lock:
        Sink.received.clear()  # what an earlier scenario's Alertmanager sent is not this one's

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        with open(config_file) as f:
            text, names = test_config(f.read(), f"http://127.0.0.1:{sink.server_address[1]}")
        cfg = os.path.join(tmp, "alertmanager.yml")
        with open(cfg, "w") as f:
            f.write(text)
        log(f"config: {config_file} (receivers {', '.join(names)} -> local sink)")

        am = Alertmanager(binary, cfg, tmp)
        try:
            base = am.start()
            # Alerts are posted with startsAt an hour ago, so Alertmanager
            # flushes their groups at once instead of after group_wait (it
            # does that for alerts older than group_wait): notifications, muted
            # or not, happen within the test's time.
            #
            # 1. The muting alert first. Waiting for its notification
            #    guarantees the inhibitor holds before any target can be
            #    flushed (otherwise a target flushed in the same instant could
            #    slip through).
            post_alerts(base, [source])
            first = RECEIVER[source["severity"]]
            try:
                wait_for(lambda: notified(key(source), first), PAGE_TIMEOUT,
                         f"the {source['alertname']} notification on receiver '{first}'")
                log(f"ok   {source['alertname']} notified (receiver '{first}')")
            except Failure as e:
                log(f"FAIL: {e}")
                failures += 1

            suppressed = [labels for _, labels, exp in cases if exp == "suppressed"]
            active = [labels for _, labels, exp in cases if exp == "active" and labels is not source]

            # 2. The alerts that must stay active; each must notify its
            #    receiver. They go before the muted ones because an active and
            #    a muted alert can share a group (group_by has no location):
            #    had the group flushed when only the muted one was in it, the
            #    active one would wait for group_interval (30m for P2).
            post_alerts(base, active)
            try:
                wait_for(lambda: all(notified(key(l), RECEIVER[l["severity"]]) for l in active),
                         SETTLE_TIMEOUT, "the active alerts to be notified")
            except Failure as e:
                log(f"FAIL: {e}")
                failures += 1

            # 3. The alerts the source must mute: suppressed, never notified.
            post_alerts(base, suppressed)

            def all_settled():
                snap = snapshot(base)
                return (all(key(l) in snap for _, l, _ in cases)
                        and all(state_of(snap.get(key(l)))[0] == "suppressed" for l in suppressed))
            try:
                wait_for(all_settled, SETTLE_TIMEOUT, "the expected alerts to be suppressed")
            except Failure as e:
                log(f"FAIL: {e}")
                failures += 1
            time.sleep(1)  # grace for any (wrong) notification of a muted alert
            snap = snapshot(base)
            source_fp = (snap.get(key(source)) or {}).get("fingerprint")
            shown = {k: v for k, v in source.items() if k not in ("alertname", "severity")}
            log(f"while {source['alertname']}{shown} fires:")
            for desc, labels, expected in cases:
                state, by = state_of(snap.get(key(labels)))
                receiver = RECEIVER[labels["severity"]]
                was_notified = notified(key(labels))
                ok = state == expected
                if expected == "suppressed":
                    ok = ok and by == [source_fp] and not was_notified
                else:
                    ok = ok and not by and notified(key(labels), receiver)
                detail = state + (f" inhibitedBy={by}" if by else "")
                detail += f", notified: {', '.join(was_notified) or 'no'}"
                log(f"  {'ok  ' if ok else 'FAIL'} {labels['alertname']} {labels['severity']}"
                    f" - {desc}: {detail}"
                    + ("" if ok else f" (expected {expected}"
                       + (f", notified on {receiver})" if expected == "active" else ", not notified)")))
                failures += not ok

            # Resolving the source lifts the inhibition.
            post_alerts(base, [source], resolved=True)

            def lifted():
                snap = snapshot(base)
                return all(state_of(snap.get(key(l)))[0] == "active" for l in suppressed)
            try:
                wait_for(lifted, SETTLE_TIMEOUT, "inhibition to lift after the source resolved")
                log(f"ok   after {source['alertname']} resolved, the {len(suppressed)}"
                    " suppressed alerts are active again")
            except Failure as e:
                log(f"FAIL: {e}")
                failures += 1
        except BaseException:
            failures += 1
            raise
        finally:
            if failures:
                tail = am.log_tail()
                if tail:
                    log("--- Alertmanager log (tail) ---\n" + tail.rstrip())
            am.stop()
    finally:
        sink.shutdown()
        sink.server_close()
    return failures


def main():
    config_file = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CONFIG)
    binary = find_alertmanager()
    if not binary:
        log("SKIP: Alertmanager not found (install prometheus-alertmanager or set ALERTMANAGER_BIN)")
        return 77

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    with tempfile.TemporaryDirectory(prefix="canaryd-am-") as tmp:
        try:
            failures = run(binary, config_file, tmp)
        except Failure as e:
            log(f"FAIL: {e}")
            failures = 1
    ncases = sum(len(cases) for _, cases in SCENARIOS)
    if failures:
        log(f"inhibition: FAILED ({failures} failure(s), {ncases} alert cases)")
        return 1
    log(f"inhibition: ok ({ncases} alert cases in {len(SCENARIOS)} scenarios, sources "
        "notified, inhibition lifts on resolve)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
