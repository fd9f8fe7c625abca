#!/usr/bin/env python3
"""The status page in a real browser (ctest `status_page_browser`).

Starts the fake platform (tests/fixtures/fake_platform.py), a hostile target
whose JSON answer carries markup, and canaryd with passing and failing probes,
all on free loopback ports. Once every probe has run twice, headless Chromium
loads `/` and one probe's page, and the rendered DOM must show:
  - every probe by name, with its status in words (PASS / FAIL);
  - a failing probe first, and every failing probe before every passing one
    in its group;
  - the hostile target's `<script>` and `<img onerror>` as text, and no
    script, img or event-handler attribute anywhere in the DOM;
  - not the API key the hostile target echoes back (a ${env:} secret of
    the config), but <redacted> in its place;
  - on the probe page: its phases, details and the recent message.
The headers (Content-Security-Policy, nosniff) and the 404 of an unknown
probe are checked over plain HTTP. A screenshot of `/` is saved as a test
artifact (ARTIFACT_DIR/status-page.png) and its path printed.

Usage: check_status_page.py CANARYD_BINARY ARTIFACT_DIR
"""
import ctypes
import html.parser
import secrets
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
# Letters only: a hex token's pieces could turn up in run ids.
API_KEY = "key" + "".join(secrets.choice("ghijklmnopqrstuvwxyz") for _ in range(24))

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _child_setup():
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with this script


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class HostileHandler(http.server.BaseHTTPRequestHandler):
    """A target whose health answer is markup and the caller's API key:
    canaryd quotes the field, redacted."""

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        key = self.headers.get("X-Api-Key", "")
        body = json.dumps({"status": f"{HOSTILE} key={key}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Process:
    def __init__(self, argv, log_path, env=None):
        self.log = open(log_path, "w")
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_setup, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_config(folder, listen, platform_port, hostile_port, closed_port):
    health = f"http://127.0.0.1:{platform_port}/health"
    config = f"""global:
  listen: "{listen}"
  defaults: {{interval: 2s, timeout: 2s}}
probes:
  - name: web-home
    type: http
    category: web
    http: {{url: "{health}", expect: {{status: [200], json: {{status: healthy}}}}}}
  - name: web-errors
    type: http
    category: web
    http: {{url: "{health}?mode=error"}}
  - name: partner-hostile
    type: http
    category: partners
    critical: true
    http:
      url: "http://127.0.0.1:{hostile_port}/health"
      headers: {{X-Api-Key: "${{env:CANARYD_STATUS_TEST_KEY}}"}}
      expect: {{json: {{status: healthy}}}}
  - name: cache-refused
    type: tcp
    category: storage
    critical: true
    tcp: {{address: "127.0.0.1:{closed_port}"}}
  - name: storage-up
    type: tcp
    category: storage
    tcp: {{address: "127.0.0.1:{platform_port}"}}
  - name: api-health
    type: http
    category: api
    http: {{url: "{health}"}}
"""
    path = os.path.join(folder, "canaryd.yaml")
    with open(path, "w") as f:
        f.write(config)
    return path


EXPECTED = {"web-home": "passing", "web-errors": "failing", "partner-hostile": "failing",
            "cache-refused": "failing", "storage-up": "passing", "api-health": "passing"}


class Dom(html.parser.HTMLParser):
    """The rendered DOM as Chromium serialised it: elements, attributes, text."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements = []  # (tag, attrs dict)
        self.rows = []  # (probe name, status, text of the row)
        self.text = []
        self._row = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "tr" and "data-probe" in a:
            self._row = [a["data-probe"], a.get("data-status"), []]
            self.rows.append(self._row)

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None:
            self._row[2].append(data)

    def all_text(self):
        return "".join(self.text)


def check_no_active_content(dom, where):
    for tag, attrs in dom.elements:
        assert tag not in ("script", "img", "iframe", "object", "embed"), \
            f"{where}: a <{tag}> element in the DOM: {attrs}"
        handlers = [k for k in attrs if k.startswith("on")]
        assert not handlers, f"{where}: <{tag}> has event handlers {handlers}"


def wait_for_results(base, deadline):
    """Until every probe has two results and the hostile one quotes its text."""
    last = None
    while time.monotonic() < deadline:
        try:
            _, _, body = get(base + "/api/v1/state")
            state = json.loads(body)
            last = state
            probes = {p["name"]: p for p in state["probes"]}
            if all(len(probes.get(n, {}).get("history", [])) >= 2 for n in EXPECTED) and \
                    HOSTILE in (probes["partner-hostile"]["last"] or {}).get("message", ""):
                return probes
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"FAIL: the probes did not all run twice in time; last state: {last}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    binary, artifacts = sys.argv[1], os.path.abspath(sys.argv[2])
    os.makedirs(artifacts, exist_ok=True)
    deadline = time.monotonic() + 240
    procs = []
    hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="canaryd-status-page-") as tmp:
        try:
            ready_file = os.path.join(tmp, "platform.json")
            platform = Process([sys.executable, os.path.join(SOURCE, "tests/fixtures/fake_platform.py"),
                                "--port", "0", "--ready-file", ready_file, "--quiet"],
                               os.path.join(tmp, "platform.log"))
            procs.append(platform)
            while not os.path.exists(ready_file):
                assert platform.proc.poll() is None, "the fake platform exited"
                assert time.monotonic() < deadline, "the fake platform did not start"
                time.sleep(0.05)
            with open(ready_file) as f:
                platform_port = json.load(f)["http"]

            port = free_port()
            base = f"http://127.0.0.1:{port}"
            config = write_config(tmp, f"127.0.0.1:{port}", platform_port,
                                  hostile.server_address[1], free_port())
            log_path = os.path.join(artifacts, "status-page-canaryd.log")
            daemon = Process([binary, "run", "--config", config], log_path,
                             dict(os.environ, CANARYD_STATUS_TEST_KEY=API_KEY))
            procs.append(daemon)
            probes = wait_for_results(base, deadline)
            for name, status in EXPECTED.items():
                assert probes[name]["status"] == status, (name, probes[name])

            # Over plain HTTP: the headers and the 404.
            status, headers, body = get(base + "/")
            assert status == 200 and headers["Content-Type"].startswith("text/html"), headers
            csp = headers.get("Content-Security-Policy", "")
            assert csp.startswith("default-src 'none'") and "script-src" not in csp, csp
            assert headers.get("X-Content-Type-Options") == "nosniff", headers
            # Nowhere in either page, attributes (the strip's titles) included.
            for path in ("/", "/status/probe/partner-hostile"):
                _, _, raw = get(base + path)
                assert API_KEY[:8] not in raw and API_KEY[-8:] not in raw, f"{path} shows the key"
            status, _, body = get(base + "/status/probe/no-such-probe")
            assert status == 404 and "no-such-probe" in body, (status, body[:500])

            # The overview, rendered.
            dom = Dom(chromium.dump_dom(base + "/"))
            names = [r[0] for r in dom.rows]
            assert sorted(names) == sorted(EXPECTED), names
            for name, status, text in dom.rows:
                words = "".join(text)
                assert status == EXPECTED[name], (name, status)
                assert name in words, (name, words)
                assert ("FAIL" if status == "failing" else "PASS") in words, (name, words)
            assert dom.rows[0][1] == "failing", f"the first probe listed is not failing: {names}"
            first_passing = min(i for i, r in enumerate(dom.rows) if r[1] == "passing")
            failing_groups_end = max(i for i, r in enumerate(dom.rows) if r[1] == "failing")
            # Every group with a failure comes before the all-passing "api".
            assert names.index("api-health") > failing_groups_end, names
            assert first_passing > 0, names
            page_text = dom.all_text()
            assert HOSTILE in page_text, "the hostile text is not shown as text"
            assert "key=<redacted>" in page_text, "the echoed API key is not redacted"
            assert API_KEY[:8] not in page_text and API_KEY[-8:] not in page_text, \
                "the API key is shown"
            assert "failing for" in page_text and "passing since" in page_text, page_text[:2000]
            check_no_active_content(dom, "/")
            links = [a.get("href") for t, a in dom.elements if t == "a"]
            assert "/metrics" in links and "/api/v1/state" in links, links
            assert "/status/probe/partner-hostile" in links, links
            assert any(t == "svg" for t, _ in dom.elements), "no latency sparkline"
            print(f"overview: {len(names)} probes in order {names}")

            # One probe's page, rendered.
            probe = Dom(chromium.dump_dom(base + "/status/probe/partner-hostile"))
            text = probe.all_text()
            ids = {a.get("id") for _, a in probe.elements}
            assert {"probe", "phases", "details", "history"} <= ids, ids
            assert "partner-hostile" in text and "FAIL" in text, text[:2000]
            assert f"JSON field status is \"{HOSTILE} key=<redacted>\"" in text, text[:4000]
            assert API_KEY[:8] not in text and API_KEY[-8:] not in text, "the API key is shown"
            assert "status_code" in text and "connect" in text, text[:4000]
            check_no_active_content(probe, "/status/probe/partner-hostile")
            print("probe page: phases, details and the hostile message as text")

            shot = chromium.screenshot(base + "/", os.path.join(artifacts, "status-page.png"))
            print(f"screenshot: {shot}")
            shot = chromium.screenshot(base + "/status/probe/partner-hostile",
                                       os.path.join(artifacts, "status-probe-page.png"))
            print(f"screenshot: {shot}")
            assert daemon.proc.poll() is None, "canaryd exited"
        finally:
            for p in reversed(procs):
                p.stop()
            hostile.shutdown()
            hostile.server_close()
    print("PASS")


if __name__ == "__main__":
    main()
