#!/usr/bin/env python3
"""canaryd's endpoints behind --web.config.file, against real clients.

  check_web_security.py CANARYD

- A bad web config stops the start with FILE:LINE: KEY (and never quotes a hash).
- TLS + basic auth: curl with the right password gets 200, a wrong one 401,
  none 401; plain HTTP on the TLS port gets no answer.
- Mutual TLS: without a client certificate the handshake fails; with one
  signed by client_ca_file, 200.
- A real Prometheus scrapes canaryd over mutual TLS with basic auth, using the
  shipped deploy/prometheus/scrape-canaryd-tls.yml, and its target is up.
- A rotated certificate is served to the next connection without a restart;
  a broken one is refused and the previous one stays.
- Slow and hostile clients (idle sockets, half a ClientHello, garbage, a
  request trickled a byte at a time) cost only their own connections: the
  scraper is answered meanwhile.
Servers run on free loopback ports and are stopped by PID.
"""
import ctypes
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "scrape-canaryd-tls.yml"
PASSWORD = "correct horse battery staple"
failures = []


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    log(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_pki(d):
    """A CA, two server certificates for 127.0.0.1 (the first and the rotated
    one, told apart by CN) and a client certificate, all EC P-256."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=canaryd test CA",
            cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn, ext in [("server", "canaryd-first", "server.ext"),
                          ("rotated", "canaryd-rotated", "server.ext"),
                          ("client", "prometheus", "client.ext")]:
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)


class Daemon:
    def __init__(self, canaryd, tmp, name, web_config, probe_port):
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        config = tmp / f"{name}.yaml"
        config.write_text(
            "global:\n  workers: 1\n"
            "probes:\n"
            "  - name: loopback-port\n    type: tcp\n    interval: 1s\n    timeout: 1s\n"
            f"    tcp:\n      address: 127.0.0.1:{probe_port}\n")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [canaryd, "run", "--config", str(config), "--web.config.file", str(web_config),
                 "--web.listen-address", f"127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not listen within 60 s")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def curl(url, *extra):
    """(exit code, HTTP status or 0, stderr) of one curl request."""
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                        *extra, url], capture_output=True, text=True, timeout=30)
    status = int(p.stdout) if p.stdout.strip().isdigit() else 0
    return p.returncode, status, p.stderr.strip()


def served_cn(port, pki):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(x[0] for x in tls.getpeercert()["subject"])
            return subject.get("commonName")


def check_bad_configs(canaryd, tmp, pki):
    cases = [
        ("unknown key", "tls_server_config:\n  cert_file: x.pem\n  key_file: x.key\n"
         "  cipher_suitez: [a]\n", r"web-bad\.yml:4: tls_server_config\.cipher_suitez: "),
        ("missing key file", f"tls_server_config:\n  cert_file: {pki}/server.pem\n"
         f"  key_file: {pki}/nope.key\n",
         r"web-bad\.yml:3: tls_server_config\.key_file: cannot load .*nope\.key"),
        ("CA without a policy", f"tls_server_config:\n  cert_file: {pki}/server.pem\n"
         f"  key_file: {pki}/server.key\n  client_ca_file: {pki}/ca.pem\n",
         r"web-bad\.yml:4: tls_server_config\.client_ca_file: set client_auth_type"),
        ("not bcrypt", "basic_auth_users:\n  alice: plaintext-SECRET-9\n",
         r"web-bad\.yml:2: basic_auth_users: user \"alice\": not a bcrypt hash"),
        ("unknown auth type", f"tls_server_config:\n  cert_file: {pki}/server.pem\n"
         f"  key_file: {pki}/server.key\n  client_auth_type: Sometimes\n",
         r"web-bad\.yml:4: tls_server_config\.client_auth_type: \"Sometimes\" is not one of"),
    ]
    config = tmp / "plain.yaml"
    config.write_text("global:\n  workers: 1\nprobes: []\n")
    for what, text, pattern in cases:
        web = tmp / "web-bad.yml"
        web.write_text(text)
        p = subprocess.run([canaryd, "run", "--config", str(config), "--web.config.file", str(web)],
                           capture_output=True, text=True, timeout=60)
        err = p.stderr
        check(p.returncode != 0 and re.search(pattern, err) is not None,
              f"bad web config ({what}) stops the start naming file, line and key "
              f"(exit {p.returncode}): {err.strip().splitlines()[0] if err.strip() else ''}")
        check("plaintext-SECRET-9" not in err + p.stdout, f"bad web config ({what}) quotes no secret")


def hostile_clients(port):
    """Connections that never finish anything; returns them so they stay open."""
    socks = []
    for _ in range(40):  # connect and say nothing
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    for _ in range(20):  # half a ClientHello
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(bytes.fromhex("16030100c8010000c40303") + os.urandom(20))
        socks.append(s)
    for _ in range(10):  # not TLS at all
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
        socks.append(s)
    return socks


def trickle(port, pki, seconds):
    """A TLS client that sends its request one byte every 100 ms."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end and i < len(request):
        tls.send(request[i:i + 1])
        i += 1
        time.sleep(0.1)
    return tls


def prometheus_scrape(tmp, pki, port):
    prom = shutil.which("prometheus")
    if prom is None:
        check(False, "prometheus is installed (scripts/install-deps.sh)")
        return
    (pki / "password").write_text(PASSWORD + "\n")
    text = SCRAPE_CONFIG.read_text()
    text = text.replace("/etc/prometheus/canaryd/", f"{pki}/")
    text = text.replace("canaryd.example.internal:9464", f"127.0.0.1:{port}")
    text = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + text
    (tmp / "prometheus.yml").write_text(text)
    p_port = free_port()
    with open(tmp / "prometheus.log", "wb") as out:
        proc = subprocess.Popen(
            [prom, f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{p_port}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
    try:
        health, error = None, ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and health != "up":
            time.sleep(1)
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p_port}/api/v1/targets",
                                            timeout=5) as r:
                    targets = json.load(r)["data"]["activeTargets"]
            except OSError:
                continue
            for t in targets:
                if t["labels"].get("job") == "canaryd":
                    health, error = t["health"], t.get("lastError", "")
        check(health == "up", f"Prometheus scrapes canaryd over mutual TLS with basic auth: "
                              f"target {health} {error}")
        q = urllib.parse.urlencode({"query": 'canary_probe_runs_total{probe="loopback-port"}'})
        with urllib.request.urlopen(f"http://127.0.0.1:{p_port}/api/v1/query?{q}", timeout=5) as r:
            result = json.load(r)["data"]["result"]
        check(len(result) > 0, "the scraped series reached Prometheus")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def main():
    canaryd = os.path.abspath(sys.argv[1])
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="canaryd-web-"))
    pki = tmp / "pki"
    pki.mkdir()
    make_pki(pki)
    hashed = subprocess.run([canaryd, "hash-password"], input=PASSWORD + "\n",
                            capture_output=True, text=True, check=True).stdout.strip()
    check(hashed.startswith("$2b$10$") and len(hashed) == 60,
          "canaryd hash-password prints a bcrypt hash")
    listener = socket.socket()  # what the daemons' one probe connects to
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    probe_port = listener.getsockname()[1]
    daemons = []
    try:
        check_bad_configs(canaryd, tmp, pki)

        # TLS + basic auth.
        web = tmp / "web.yml"
        shutil.copy(pki / "server.pem", pki / "live.pem")
        shutil.copy(pki / "server.key", pki / "live.key")
        web.write_text("tls_server_config:\n  cert_file: pki/live.pem\n  key_file: pki/live.key\n"
                       f"basic_auth_users:\n  prometheus: {hashed}\n")
        d = Daemon(canaryd, tmp, "tls", web, probe_port)
        daemons.append(d)
        url = f"https://127.0.0.1:{d.port}/metrics"
        ca = ["--cacert", str(pki / "ca.pem")]
        _, status, _ = curl(url, *ca, "-u", f"prometheus:{PASSWORD}")
        check(status == 200, f"right password: {status}")
        _, status, _ = curl(url, *ca, "-u", "prometheus:wrong")
        check(status == 401, f"wrong password: {status}")
        _, status, _ = curl(url, *ca, "-u", "nobody:" + PASSWORD)
        check(status == 401, f"unknown user: {status}")
        _, status, _ = curl(url, *ca)
        check(status == 401, f"no password: {status}")
        _, status, _ = curl(f"http://127.0.0.1:{d.port}/metrics", "-u", f"prometheus:{PASSWORD}")
        check(status == 0, f"plain HTTP on the TLS port gets no HTTP answer: {status}")
        _, status, _ = curl(f"https://127.0.0.1:{d.port}/", *ca, "--tls-max", "1.1")
        check(status == 0, f"TLS 1.1 is refused (min_version TLS12 by default): {status}")

        # Rotation: the next connection gets the new certificate, no restart.
        check(served_cn(d.port, pki) == "canaryd-first", "serves the first certificate")
        shutil.copy(pki / "rotated.key", pki / "live.key.new")
        shutil.copy(pki / "rotated.pem", pki / "live.pem.new")
        os.replace(pki / "live.key.new", pki / "live.key")
        os.replace(pki / "live.pem.new", pki / "live.pem")
        cn, deadline = None, time.monotonic() + 30
        while time.monotonic() < deadline and cn != "canaryd-rotated":
            time.sleep(0.5)
            cn = served_cn(d.port, pki)
        check(cn == "canaryd-rotated", f"a rotated certificate is served without a restart: {cn}")
        (pki / "live.pem").write_text("not a certificate\n")
        time.sleep(3)
        _, status, _ = curl(url, *ca, "-u", f"prometheus:{PASSWORD}")
        check(status == 200 and served_cn(d.port, pki) == "canaryd-rotated",
              f"a broken certificate is refused and the previous one stays: {status}")
        check("cannot be used, the previous one stays" in d.log(),
              "the broken certificate is logged")
        check(hashed not in d.log() and PASSWORD not in d.log(), "the log quotes no secret")

        # Mutual TLS, and a real Prometheus scraping through it.
        mweb = tmp / "web-mtls.yml"
        mweb.write_text(
            f"tls_server_config:\n  cert_file: {pki}/server.pem\n  key_file: {pki}/server.key\n"
            f"  client_ca_file: {pki}/ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
            f"basic_auth_users:\n  prometheus: {hashed}\n")
        m = Daemon(canaryd, tmp, "mtls", mweb, probe_port)
        daemons.append(m)
        murl = f"https://127.0.0.1:{m.port}/metrics"
        client = ["--cert", str(pki / "client.pem"), "--key", str(pki / "client.key")]
        code, status, err = curl(murl, *ca, "-u", f"prometheus:{PASSWORD}")
        check(code != 0 and status == 0,
              f"mutual TLS without a client certificate: the handshake fails (curl {code}: {err})")
        code, status, err = curl(murl, *ca, *client, "-u", f"prometheus:{PASSWORD}")
        check(status == 200, f"mutual TLS with a client certificate: {status} {err}")
        prometheus_scrape(tmp, pki, m.port)
        env = dict(os.environ, CANARYD_PASSWORD=PASSWORD)
        st = subprocess.run([canaryd, "status", "--url", f"https://127.0.0.1:{m.port}",
                             "--ca-file", str(pki / "ca.pem"), "--cert-file", str(pki / "client.pem"),
                             "--key-file", str(pki / "client.key"), "--user", "prometheus"],
                            capture_output=True, text=True, timeout=60, env=env)
        check(st.returncode in (0, 1) and "loopback-port" in st.stdout,
              f"canaryd status reaches a daemon behind mutual TLS and basic auth: exit "
              f"{st.returncode} {st.stderr.strip()}")
        env["CANARYD_PASSWORD"] = "wrong"
        st = subprocess.run([canaryd, "status", "--url", f"https://127.0.0.1:{m.port}",
                             "--ca-file", str(pki / "ca.pem"), "--cert-file", str(pki / "client.pem"),
                             "--key-file", str(pki / "client.key"), "--user", "prometheus"],
                            capture_output=True, text=True, timeout=60, env=env)
        check(st.returncode == 2 and "HTTP 401" in st.stderr and "wrong" not in st.stderr,
              f"canaryd status with a wrong password: exit {st.returncode} {st.stderr.strip()}")

        # Hostile and slow clients cost only their own connections.
        socks = hostile_clients(m.port)
        slow = trickle(m.port, pki, seconds=2)
        answered = 0
        for _ in range(5):
            _, status, _ = curl(murl, *ca, *client, "-u", f"prometheus:{PASSWORD}")
            answered += status == 200
        check(answered == 5, f"scrapes answered while 70 hostile and 1 slow client hold "
                             f"connections: {answered}/5")
        for s in socks + [slow]:
            s.close()
        check(m.proc.poll() is None and d.proc.poll() is None, "both daemons are still running")
        for dm in daemons:
            rc = dm.stop()
            check(rc == 0, f"{dm.log_path.stem} stops cleanly on SIGTERM: exit {rc}")
    finally:
        for dm in daemons:
            dm.stop()
        listener.close()
    if failures:
        log(f"\n{len(failures)} check(s) failed; logs in {tmp}")
        for dm in daemons:
            log(f"--- {dm.log_path}\n" + "\n".join(dm.log().splitlines()[-30:]))
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    log("all web security checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
