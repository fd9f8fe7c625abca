#!/usr/bin/env python3
"""End-to-end alerting test: canaryd -> Prometheus -> Alertmanager -> webhook.

    e2e_alerting.py CANARYD_BIN [ALERTMANAGER_YML] [--detail basic|full|basic,full]

--detail sets canaryd's metrics.detail (default basic, canaryd's own default):
the rules and the latency alerts must work from either mode's histograms.
With both modes, the test runs once per mode, side by side (ctest does).

Starts, all on 127.0.0.1 and free ports, in a temp dir:
  * the fake platform backend (tests/fixtures/fake_platform.py);
  * a WebSocket fault switch (e2e_relays.py, see below) in front of its /ws,
    and four flapping relays in front of it (each resets one connection in 20);
  * redis-server (no persistence), and PostgreSQL behind a relay that can hold
    each of its answers (a slow database);
  * canaryd as an HA pair: two processes with the same config and labels
    (the second on its own port, --web.listen-address), 1 s probes: a redis
    probe (category infrastructure, critical), a websocket probe offering and
    expecting the subprotocol jwt-auth (category chat), an http probe of
    /health (category api), a postgres probe every 2 s (category database),
    and an http and a websocket probe through the flapping relays, each once
    without and once with `retries: {attempts: 2}` (category flaky);
  * Prometheus scraping both canaryd every 1 s (job "canaryd", two targets,
    so two instances of every probe series), evaluating every
    1 s the rule file that `canaryd rules --config` generates for that config
    (short window 20s, long window 1m, min_runs 3, `for: 10s` on the alerts
    this test exercises), sending alerts to:
  * Alertmanager (gossip off: --cluster.listen-address=) running a copy of
    deploy/alertmanager/alertmanager.yml (the shipped routing, grouping and
    inhibit rules) whose webhook URLs point at a webhook sink in this script.

Then two incidents (e2e_incidents.py), each: break, wait for the P0 page,
check that it fired within two evaluation intervals after its window (window
+ for + a probe and a scrape interval), check inhibition, repair, wait for the
resolved notification.
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
While incident 1 runs, the database is slow but passing (e2e_scenarios.py):
the latency P1 CanaryDatabaseLatencyHigh and the p95 P2 CanaryLatencyP95High
must notify, no failure alert may, and the P1 resolves after the repair.
After incident 2: the flapping probes (one failed run in 20 without retries,
none with) must never have notified, nor had an alert firing. Last, both
canaryd are stopped: CanarydDown (P1) must notify for both, and no probe or
category alert may go pending, fire or notify, since stale series are not
failures. Every notification must also have gone to the receiver of its
severity (P0 pager, P1 high-priority, P2 ticket). The test ends with a table
of fault-to-notification times.

How the WebSocket fault is switched: the fixture picks each WebSocket's
behaviour from its URL query (/ws?subprotocol=none: the 101 selects no
subprotocol), and it must not be edited. So the probe's URL points at a small
HTTP-aware TCP relay (FaultSwitch, e2e_relays.py) that forwards every
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
nothing behind. Every wait is bounded; a run takes about 4-5 minutes. On
failure the test prints the last Prometheus alerts, Alertmanager alerts,
webhook notifications and the children's log tails, and keeps the temp dir.

Exit 0 pass, 1 fail. python3 standard library only. PROMETHEUS_BIN,
ALERTMANAGER_BIN and REDIS_SERVER_BIN override the binaries; E2E_KEEP_TMP=1
keeps the temp dir (configs, logs) after a pass too.
"""

import http.server
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse

from e2e_relays import FaultSwitch, Flapper, SlowServer
from e2e_support import (
    RECEIVER_OF, START_TIMEOUT, T0, Child, Failure, Interrupted, Postgres, Redis, Sink,
    alertmanager_config, fmt_alert, free_port, get_json, log, notifications, run_side_by_side,
    start_on_free_port, wait_until, which)
from e2e_incidents import (
    ALERT_FOR, BASELINE_TIMEOUT, ENV, HTTP_CATEGORY, HTTP_PROBE, LOCATION, PROBE_INTERVAL,
    REDIS_CATEGORY, REDIS_PROBE, SHORT_WINDOW, WS_CATEGORY, WS_PROBE, P0Incidents)
from e2e_scenarios import (DB_CATEGORY, DB_DELAY, DB_LATENCY_HIGH, DB_PROBE, FLAP_CATEGORY,
                           FLAP_EVERY, FLAP_PROBES, LATENCY_P95, SignalScenarios)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FAKE_PLATFORM = ROOT / "tests" / "fixtures" / "fake_platform.py"
SHIPPED_AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"



# --------------------------------------------------------------------------- canaryd, Prometheus

def canaryd_config(listen_port, ports, detail):
    """ports: redis, ws (the fault switch), http (the fixture), db (the slow
    relay to PostgreSQL), and one flapping relay to the fixture per flap probe."""
    flap = ""
    for name in FLAP_PROBES:
        kind = "http" if name.startswith("flap-http") else "websocket"
        url = (f"http://127.0.0.1:{ports[name]}/health" if kind == "http"
               else f"ws://127.0.0.1:{ports[name]}/ws")
        flap += f"  - name: {name}\n    type: {kind}\n    category: {FLAP_CATEGORY}\n"
        if name.endswith("-retried"):
            flap += "    retries: {attempts: 2, delay: 100ms}\n"
        flap += f"    {kind}: {{url: \"{url}\"}}\n"
    return f"""\
global:
  listen: 127.0.0.1:{listen_port}
  labels: {{env: {ENV}, location: {LOCATION}}}
  defaults: {{interval: {PROBE_INTERVAL}s, timeout: 800ms}}
  metrics: {{detail: {detail}}}
probes:
  - name: {REDIS_PROBE}
    type: redis
    category: {REDIS_CATEGORY}
    critical: true
    redis: {{address: "127.0.0.1:{ports['redis']}"}}
  - name: {WS_PROBE}
    type: websocket
    category: {WS_CATEGORY}
    websocket:
      url: ws://127.0.0.1:{ports['ws']}/ws
      subprotocols: [jwt-auth]
      expect_subprotocol: jwt-auth
  - name: {HTTP_PROBE}
    type: http
    category: {HTTP_CATEGORY}
    http:
      url: http://127.0.0.1:{ports['http']}/health
      expect: {{status: [200], json: {{status: healthy}}}}
  - name: {DB_PROBE}
    type: postgres
    category: {DB_CATEGORY}
    interval: 2s
    timeout: 1500ms
    postgres:
      dsn: "host=127.0.0.1 port={ports['db']} user=postgres dbname=postgres sslmode=disable"
{flap}alerting:
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
    database_latency_high: {{threshold: {DB_LATENCY_HIGH * 1000:.0f}ms, for: {ALERT_FOR}s}}
    latency_p95_high: {{threshold: {LATENCY_P95 * 1000:.0f}ms, for: {ALERT_FOR}s}}
    canaryd_down: {{for: {ALERT_FOR}s}}
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

class E2E(P0Incidents, SignalScenarios):
    def __init__(self, canaryd_bin, am_config_path, tmp, detail):
        self.canaryd_bin, self.am_config_path, self.tmp = canaryd_bin, am_config_path, tmp
        self.detail = detail
        self.children = []
        self.sink = None
        self.switch = None
        self.slow_db = None
        self.flappers = {}
        self.redis = None
        self.canaryds = []
        self.figures = []  # (scenario, what, value) for the summary
        self.canaryd_ports = []
        self.prom = self.am = self.am_log = None
        self.failures = []

    # ---- API helpers

    def prom_alerts(self):
        return get_json(self.prom + "/api/v1/alerts")["data"]["alerts"]

    def prom_query(self, q, at=None):
        params = {"query": q} if at is None else {"query": q, "time": f"{at:.3f}"}
        return get_json(self.prom + "/api/v1/query?" + urllib.parse.urlencode(params))["data"][
            "result"]

    def prom_range(self, q, start, end):
        """Every series of q between two wall times, at a 1 s step."""
        url = self.prom + "/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
        return get_json(url, timeout=15)["data"]["result"]

    def am_alerts(self):
        return get_json(self.am + "/api/v2/alerts")

    def ratio(self, probe):
        res = self.prom_query(f'canary:probe_success:ratio_{SHORT_WINDOW}{{probe="{probe}"}}')
        return f"{float(res[0]['value'][1]):.2f}" if res else "n/a"

    def prom_summary(self):
        alerts = self.prom_alerts()
        return ", ".join(sorted(f"{fmt_alert(a['labels'], ('env', 'location', 'type'))}"
                                f"={a['state']}" for a in alerts)) or "no alerts"

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

        # Each flap probe's own relay to the fixture, dropping one connection in
        # FLAP_EVERY, so each probe (both replicas' runs) fails one run in 20.
        for name in FLAP_PROBES:
            self.flappers[name] = Flapper(name, fixture_port, FLAP_EVERY)
        log(f"flapping relays (one connection in {FLAP_EVERY} reset) -> fixture: "
            + ", ".join(f"{n} :{f.port}" for n, f in self.flappers.items()))

        # redis-server.
        self.redis = Redis(redis_server, self.tmp, self.children)
        self.redis.start()

        # PostgreSQL, behind a relay that can make it slow.
        pg = Postgres(self.tmp, self.children)
        pg.start()
        self.slow_db = SlowServer("slow-db", pg.port, DB_DELAY)
        log(f"slow-database relay on 127.0.0.1:{self.slow_db.port} -> postgres")

        # canaryd config and its rule file.
        cfg_path = os.path.join(self.tmp, "canaryd.yaml")
        rules_path = os.path.join(self.tmp, "canaryd.rules.yml")

        def canaryd_argv(port, attempt):
            with open(cfg_path, "w") as f:
                f.write(canaryd_config(port, ports, self.detail))
            return [self.canaryd_bin, "run", "--config", cfg_path, "--log-level", "info"]

        ports = {"redis": self.redis.port, "ws": self.switch.port, "http": fixture_port,
                 "db": self.slow_db.port, **{n: f.port for n, f in self.flappers.items()}}

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

        main_canaryd, cport = start_on_free_port(
            "canaryd", canaryd_argv, lambda p: f"http://127.0.0.1:{p}/-/ready",
            os.path.join(self.tmp, "canaryd.log"), self.children)
        # Its HA replica: the same config and labels, its own port.
        replica, replica_port = start_on_free_port(
            "canaryd-replica",
            lambda p, n: [self.canaryd_bin, "run", "--config", cfg_path,
                          "--web.listen-address", f"127.0.0.1:{p}", "--log-level", "info"],
            lambda p: f"http://127.0.0.1:{p}/-/ready",
            os.path.join(self.tmp, "canaryd-replica.log"), self.children)
        self.canaryd_ports = [cport, replica_port]
        self.canaryds = [main_canaryd, replica]

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
            for probe in (REDIS_PROBE, WS_PROBE, HTTP_PROBE, DB_PROBE) + FLAP_PROBES:
                # both replicas' runs are in; each probe passes on its own (the
                # flapping ones may have flapped already)
                runs = self.prom_query(
                    f'canary:replica_probe_runs:increase_{SHORT_WINDOW}{{probe="{probe}"}}')
                if len(runs) != len(self.canaryd_ports) or \
                        any(float(r["value"][1]) < 3 for r in runs):
                    return False
                if probe not in FLAP_PROBES and self.ratio(probe) != "1.00":
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
        flapping_since = time.time()  # the flap probes flap from canaryd's first run
        self.start()
        self.baseline()

        self.slow_database_begin()
        self.incident(
            "incident 1: redis-server stopped", "CanaryRedisDown", REDIS_PROBE, REDIS_CATEGORY,
            [("CanaryCategorySuccessLow", {"category": REDIS_CATEGORY})],
            break_fn=lambda: (log(f"stopping redis-server pid {self.redis.child.pid}"),
                              self.redis.stop()),
            repair_fn=lambda: (log(f"starting redis-server again on port {self.redis.port}"),
                               self.redis.start()))
        self.slow_database_finish()

        def switch(on):
            log(f"WebSocket negotiation fault {'ON: /ws?subprotocol=none' if on else 'OFF'}"
                f" (relayed so far: {self.switch.relayed}, rewritten: {self.switch.rewritten})")
            (self.switch.on.set if on else self.switch.on.clear)()

        self.incident(
            "incident 2: WebSocket negotiation fault",
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

        self.check_flapping(flapping_since)
        self.canaryd_stopped()
        self.check_routing()
        self.print_figures()

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
        for relay in [self.switch, self.slow_db, *self.flappers.values()]:
            if relay:
                relay.close()
        if self.sink:
            self.sink.shutdown()
            self.sink.server_close()


def main(argv):
    details = ["basic"]
    if "--detail" in argv:
        i = argv.index("--detail")
        details = argv[i + 1].split(",") if i + 1 < len(argv) else []
        argv = argv[:i] + argv[i + 2:]
    if len(argv) not in (2, 3) or not details or \
            any(d not in ("basic", "full") for d in details) or len(set(details)) != len(details):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    if len(details) > 1:
        me = [sys.executable, os.path.abspath(__file__), *argv[1:]]
        return run_side_by_side([me + ["--detail", d] for d in details],
                                [f"metrics detail {d}" for d in details])
    detail = details[0]
    canaryd_bin = os.path.abspath(argv[1])
    am_config = argv[2] if len(argv) == 3 else str(SHIPPED_AM_CONFIG)

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tmp = tempfile.mkdtemp(prefix="canaryd-e2e-alerting-")
    log(f"temp dir {tmp}; canaryd {canaryd_bin}")
    test = E2E(canaryd_bin, am_config, tmp, detail)
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
