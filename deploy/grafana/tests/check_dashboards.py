#!/usr/bin/env python3
"""Checks canaryd's Grafana dashboards against real data (python3 stdlib only).

    check_dashboards.py CANARYD_BIN [--rules FILE] [--keep]

1. Structure: valid JSON, schemaVersion, unique ids; every panel and target
   uses the $datasource variable; every metric selector carries
   env=~"$env", location=~"$location" (and probe=~"$probe" on the per-probe
   dashboard); every variable used is defined; metric names exist in
   docs/metrics.md; recording rules exist in the rule file; the JSON matches
   generate_dashboards.py; the provisioning files name the datasource uid;
   every probes/*/dashboard.json is in a type's folder and follows the schema
   in type_panels.py; the generator's sources name no probe type (a folder
   probes/<name>/ with <name>.cc). (structure.py.)
2. Data: starts the fake platform backend (two of them: the second is stopped
   midway, so one probe succeeds and then fails), canaryd with a 1 s config
   covering http (ok, 500, https), websocket (ok, close 1011, no subprotocol)
   and agent_pipeline (golden path with a token, missing field, close 1011),
   and a real Prometheus scraping it every 1 s with the rule file
   deploy/prometheus/canaryd.rules.yml (if present; --rules overrides) and a
   test-only alert rule, so ALERTS has firing series. Then every panel
   query, with the variables substituted, must parse and return at least one
   series (on the per-probe dashboard: for at least one of the probes).

Everything listens on 127.0.0.1 and is stopped by PID, always, within a bounded
time. Exit 0 on success, 1 on any failure.
"""

import argparse
import ctypes
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from structure import BUILTINS, DASHBOARDS, ROOT, VAR_REF, all_panels, recording_rules, \
    static_checks

RULES_FILE = ROOT / "deploy" / "prometheus" / "canaryd.rules.yml"
FAKE_PLATFORM = ROOT / "tests" / "fixtures" / "fake_platform.py"
MAKE_CERTS = ROOT / "tests" / "fixtures" / "make_certs.sh"

ENV, LOCATION = "gtest", "loop"
# Panels allowed to return no series in this setup, as "dashboard/panel title".
# Keep it small, with the reason for each. (Today every panel returns data:
# the test alert rule feeds ALERTS, the https probe the TLS panels.)
ALLOW_EMPTY = {}

# canaryd's config: every probe type the dashboards have panels for, 1 s
# intervals, healthy and failing; PROBES lists the names.
def canaryd_config(listen, a_port, a_tls_port, b_port, ca, detail):
    agent_send = ('{json: {type: user_message, payload: {content: "canary ping", '
                  'thread_id: "{{run_id}}"}}}')
    a = f"127.0.0.1:{a_port}"
    return f"""\
# Written by deploy/grafana/tests/check_dashboards.py
global:
  listen: {listen}
  labels: {{env: {ENV}, location: {LOCATION}}}
  defaults: {{interval: 1s, timeout: 900ms}}
  metrics: {{detail: {detail}}}
probes:
  - name: http-ok
    type: http
    category: infrastructure
    critical: true
    http: {{url: "http://{a}/health", expect: {{status: [200], json: {{status: healthy}}}}}}
  - name: http-500
    type: http
    category: frontend
    http: {{url: "http://{a}/health?mode=error"}}
  - name: https-ok
    type: http
    category: infrastructure
    http: {{url: "https://127.0.0.1:{a_tls_port}/health", tls: {{ca_file: "{ca}"}}}}
  # Its backend is stopped midway: succeeds first, then connect_refused.
  - name: http-flip
    type: http
    category: infrastructure
    critical: true
    http: {{url: "http://127.0.0.1:{b_port}/health"}}
  - name: ws-ok
    type: websocket
    category: chat
    critical: true
    websocket:
      url: "ws://{a}/ws"
      subprotocols: [jwt-auth]
      expect_subprotocol: jwt-auth
      connections: 3
      send: "canary ping"
      expect: {{text: "canary ping"}}
  - name: ws-closed-1011
    type: websocket
    category: chat
    websocket:
      url: "ws://{a}/ws?close_after_ms=200&close_code=1011"
      subprotocols: [jwt-auth]
      hold: 500ms
  - name: ws-no-subprotocol
    type: websocket
    category: chat
    websocket: {{url: "ws://{a}/ws?subprotocol=none", subprotocols: [jwt-auth]}}
  - name: agent-ok
    type: agent_pipeline
    category: agent
    critical: true
    agent_pipeline:
      token: {{url: "http://{a}/auth/token", body: '{{"user": "canary"}}', json_path: data.token,
               cache_for: 10m}}
      websocket:
        url: "ws://{a}/ws?agent=happy&event_delay_ms=50&require_token=1"
        subprotocols: [jwt-auth, "jwt.{{{{token}}}}"]
        expect_subprotocol: jwt-auth
      send: {agent_send}
      correlation_field: thread_id
      events:
        - {{type: agent_started}}
        - {{type: agent_thinking}}
        - {{type: tool_executing, required: [data.tool_name]}}
        - {{type: tool_completed, required: [data.tool_name, data.results]}}
        - {{type: agent_completed}}
  - name: agent-no-tool-name
    type: agent_pipeline
    category: agent
    agent_pipeline:
      websocket: {{url: "ws://{a}/ws?agent=no_tool_name&event_delay_ms=50"}}
      send: {agent_send}
      events:
        - {{type: agent_started}}
        - {{type: tool_executing, required: [data.tool_name]}}
        - {{type: agent_completed}}
  - name: agent-closed-1011
    type: agent_pipeline
    category: agent
    agent_pipeline:
      websocket: {{url: "ws://{a}/ws?agent=close_1011_after_thinking&event_delay_ms=50"}}
      send: {agent_send}
      events: [{{type: agent_started}}, {{type: agent_thinking}}, {{type: agent_completed}}]
"""


PROBES = ["http-ok", "http-500", "https-ok", "http-flip", "ws-ok", "ws-closed-1011",
          "ws-no-subprotocol", "agent-ok", "agent-no-tool-name", "agent-closed-1011"]

TEST_ALERTS = """\
# Test-only: makes ALERTS{alertstate="firing"} exist, with a severity label.
groups:
  - name: grafana-dashboard-test
    rules:
      - alert: GrafanaDashboardTestProbeFailing
        expr: canary_probe_success == 0
        labels: {severity: test}
"""

# Loopback only, whatever proxy the environment names.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------ processes

def _die_with_parent():
    # If this test is killed (ctest timeout), the kernel stops the children too.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []  # (name, Popen, log path)

    def start(self, name, argv):
        logp = self.tmp / f"{name}.log"
        f = open(logp, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             cwd=self.tmp, preexec_fn=_die_with_parent)
        f.close()
        self.procs.append((name, p, logp))
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop_all(self):
        for _, p, _ in reversed(self.procs):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"stopping pid {p.pid}: {e}")

    def tails(self, lines=25):
        for name, p, logp in self.procs:
            text = logp.read_text(errors="replace").splitlines()[-lines:]
            log(f"--- {name} (pid {p.pid}, exit {p.poll()}), last lines of {logp.name}:")
            for line in text:
                log("    " + line)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with HTTP.open(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_for(what, check, timeout, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: the process exited with {p.returncode}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {timeout} s")


def ready_file(path):
    def check():
        return path.exists() and json.loads(path.read_text())
    return check


def prom_query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        _, body = http_get(url, timeout=10)
    except urllib.error.HTTPError as e:  # 400/422: a parse or evaluation error
        body = e.read()
    return json.loads(body)


# ------------------------------------------------------------------ data checks

def substitute(expr, values):
    def sub(m):
        v = m.group(1) or m.group(2) or m.group(3)
        return values.get(v, m.group(0))
    return VAR_REF.sub(sub, expr)


def collect_queries():
    out = []  # (dashboard file, panel title, refId, expr, uses probe)
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text())
        probe_var = any(v.get("name") == "probe" for v in dash["templating"]["list"])
        for p in all_panels(dash):
            for t in p.get("targets") or []:
                out.append((path.stem, p["title"], t["refId"], t["expr"], probe_var))
        for v in dash["templating"]["list"]:
            if v.get("type") == "query":
                out.append((path.stem, "$" + v["name"], "var", v["definition"], probe_var))
    return out


LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")


def eval_variable(base, definition, values, expected):
    m = LABEL_VALUES.match(definition)
    if not m:
        return False, f"not label_values(): {definition}"
    selector = substitute(m.group(1), values)
    url = base + "/api/v1/series?" + urllib.parse.urlencode({"match[]": selector})
    res = json.loads(http_get(url)[1])
    if res.get("status") != "success":
        return False, f"error {res.get('error')}"
    got = {s.get(m.group(2)) for s in res["data"]} - {None}
    missing = expected.get(m.group(2), set()) - got
    return not missing, f"{len(got)} values" + (f", missing {sorted(missing)}" if missing else "")


def eval_all(base, queries, rules_present):
    """-> (failures, lines); each query: OK / EMPTY / ERROR / SKIP."""
    failures, lines = [], []
    values = dict(BUILTINS, env=ENV, location=LOCATION)
    expected = {"env": {ENV}, "location": {LOCATION}, "probe": set(PROBES)}
    for dash, title, ref, expr, probe_var in queries:
        key = f"{dash}/{title}"
        if ref == "var":
            ok, note = eval_variable(base, expr, values, expected)
            status = "OK" if ok else "FAIL"
            lines.append(f"  {status:5} {key}: {note}")
            if not ok:
                failures.append(f"{key}: {note}")
            continue
        candidates = PROBES if probe_var else [None]
        result, note = "EMPTY", ""
        for probe in candidates:
            vals = dict(values, probe=probe) if probe else values
            res = prom_query(base, substitute(expr, vals))
            if res.get("status") != "success":
                result, note = "ERROR", f"{res.get('errorType')}: {res.get('error')}"
                break
            n = len(res["data"]["result"])
            if n:
                result, note = "OK", f"{n} series" + (f" ($probe={probe})" if probe else "")
                break
        if result == "EMPTY":
            if "canary:" in expr and not rules_present:
                result, note = "SKIP", "recording rule, no rule file loaded"
            elif key in ALLOW_EMPTY:
                result, note = "ALLOW", "no data (allowed: " + ALLOW_EMPTY[key] + ")"
            else:
                failures.append(f"{key} [{ref}]: no series for {expr}")
        elif result == "ERROR":
            failures.append(f"{key} [{ref}]: {note} in {expr}")
        lines.append(f"  {result:5} {key} [{ref}] {note}")
    return failures, lines


def run_live(canaryd, rules, tmp, min_wait, max_wait, detail):
    procs = Procs(tmp)
    try:
        subprocess.run(["bash", str(MAKE_CERTS), str(tmp / "certs")], check=True, timeout=60)
        ca = tmp / "certs" / "ca.pem"
        a = procs.start("platform-a", [
            sys.executable, str(FAKE_PLATFORM), "--port", "0", "--quiet",
            "--tls", f"good:{tmp}/certs/good.pem:{tmp}/certs/good.key",
            "--ready-file", str(tmp / "a.json")])
        b = procs.start("platform-b", [sys.executable, str(FAKE_PLATFORM), "--port", "0",
                                       "--quiet", "--ready-file", str(tmp / "b.json")])
        wait_for("fake platform a", ready_file(tmp / "a.json"), 15, [a])
        wait_for("fake platform b", ready_file(tmp / "b.json"), 15, [b])
        pa = json.loads((tmp / "a.json").read_text())
        pb = json.loads((tmp / "b.json").read_text())

        c_port = free_port()
        cfg = tmp / "canaryd.yaml"
        cfg.write_text(canaryd_config(f"127.0.0.1:{c_port}", pa["http"], pa["tls"]["good"],
                                      pb["http"], ca, detail))
        check = subprocess.run([canaryd, "check-config", str(cfg)], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"check-config failed:\n{check.stdout}{check.stderr}")
        cd = procs.start("canaryd", [canaryd, "run", "--config", str(cfg)])
        c_base = f"http://127.0.0.1:{c_port}"
        wait_for("canaryd", lambda: http_get(c_base + "/-/ready")[0] == 200, 30, [cd])
        canaryd_ready = time.monotonic()

        rule_files = [tmp / "test-alerts.yml"]
        rule_files[0].write_text(TEST_ALERTS)
        if rules:
            rule_files.append(rules)
        if shutil.which("promtool"):
            for rf in rule_files:
                r = subprocess.run(["promtool", "check", "rules", str(rf)], capture_output=True,
                                   text=True, timeout=60)
                if r.returncode != 0:
                    raise RuntimeError(f"promtool check rules {rf}:\n{r.stdout}{r.stderr}")
                log(f"promtool check rules {rf}: OK")
        p_port = free_port()
        (tmp / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
            "rule_files:\n" + "".join(f"  - {json.dumps(str(f))}\n" for f in rule_files) +
            "scrape_configs:\n"
            "  - job_name: canaryd\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{c_port}']}}]\n")
        prom = procs.start("prometheus", [
            "prometheus", f"--config.file={tmp}/prometheus.yml",
            f"--storage.tsdb.path={tmp}/tsdb", f"--web.listen-address=127.0.0.1:{p_port}"])
        p_base = f"http://127.0.0.1:{p_port}"
        wait_for("prometheus", lambda: http_get(p_base + "/-/ready")[0] == 200, 60, [prom])
        prom_ready = time.monotonic()

        queries = collect_queries()
        flipped = False
        while True:
            now = time.monotonic()
            if not flipped and now - canaryd_ready >= 6:
                procs.stop(b)  # http-flip: from success to connect_refused
                flipped = True
                log("stopped platform b: http-flip now fails")
            for p in (a, cd, prom):
                if p.poll() is not None:
                    raise RuntimeError(f"pid {p.pid} exited with {p.returncode}")
            if flipped and now - prom_ready >= min_wait:
                failures, lines = eval_all(p_base, queries, rules is not None)
                elapsed = now - prom_ready
                if not failures or elapsed >= max_wait:
                    log(f"queries evaluated after {elapsed:.0f} s of data:")
                    for line in lines:
                        log(line)
                    if failures:
                        procs.tails()
                    return failures
            time.sleep(3)
    except Exception:
        procs.tails()
        raise
    finally:
        procs.stop_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("canaryd", help="the canaryd binary")
    ap.add_argument("--rules", type=pathlib.Path,
                    help=f"Prometheus rule file (default: {RULES_FILE} if it exists)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, TSDB)")
    ap.add_argument("--detail", choices=("basic", "full"), default="full",
                    help="canaryd's metrics.detail: every panel must have data in both")
    ap.add_argument("--min-wait", type=float, default=20,
                    help="seconds of data before the first evaluation")
    ap.add_argument("--max-wait", type=float, default=120,
                    help="seconds of data after which failures are final")
    args = ap.parse_args()
    t0 = time.monotonic()
    rules = args.rules or (RULES_FILE if RULES_FILE.exists() else None)
    if rules:
        rules = rules.resolve()
    log(f"rule file: {rules or 'none (' + str(RULES_FILE) + ' does not exist)'}")

    errors, used_rules = static_checks(recording_rules(rules))
    for e in errors:
        log("STRUCTURE: " + e)
    log(f"structure: {'OK' if not errors else str(len(errors)) + ' problems'}; "
        f"recording rules used: {len(used_rules)}")

    # SIGTERM (e.g. ctest) runs the cleanup below like Ctrl-C does.
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="canaryd-grafana-"))
    try:
        failures = run_live(os.path.abspath(args.canaryd), rules, tmp, args.min_wait,
                            args.max_wait, args.detail)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        failures = [f"setup: {e}"]
    except KeyboardInterrupt:
        failures = ["interrupted (everything started was stopped)"]
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        log("DATA: " + f)
    ok = not errors and not failures
    log(f"{'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
