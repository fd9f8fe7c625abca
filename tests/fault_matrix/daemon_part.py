"""The fault matrix's daemon part (run_matrix.py BIN daemon): one canaryd runs
every hostile behaviour as a probe, and must stay healthy and honest."""

import calendar
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from run_matrix import LOG_LINE, SANITIZER, Peer, make_secret, probe_config, secret_pieces, select

INTERVAL, TIMEOUT = "2s", "1500ms"
JSON_RUN_SECONDS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def sample(pid) -> dict | None:
    """RSS, threads and descriptors; None once the process is gone (or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]),
                "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    except (OSError, KeyError, ValueError):
        return None


class Daemon:
    def __init__(self, binary, config: dict, work: Path, secret, log_format):
        self.port = free_port()
        config = dict(config, **{"global": {"listen": f"127.0.0.1:{self.port}"}})
        cfg = work / f"canaryd-{log_format}.yaml"
        cfg.write_text(json.dumps(config))
        self.log_path = work / f"canaryd-{log_format}.log"
        self.log = open(self.log_path, "wb")
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "run", "--config", str(cfg), "--log-level", "debug", "--log-format",
             log_format], env=dict(os.environ, CANARY_SECRET=secret), stdout=self.log,
            stderr=subprocess.STDOUT, cwd=work)
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(self.base + "/-/ready", 2) is not None:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"canaryd did not become ready; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> tuple:
        """(exit code or None if it had to be killed, seconds SIGTERM took)."""
        start = time.monotonic()
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        self.log.close()
        return rc, time.monotonic() - start


def check_log(path: Path, secret, started, ended, json_format) -> list:
    """Every line must be canaryd's own: a timestamp of this run and a level
    (text), or exactly {time, level, msg} as valid UTF-8 JSON (json)."""
    bad = {}  # kind -> (count, first examples)
    lo, hi = started - 60, ended + 60
    raw = path.read_bytes()

    def note(kind, n, text):
        count, examples = bad.get(kind, (0, []))
        if len(examples) < 3:
            examples.append(f"line {n}: {text[:100]!r}")
        bad[kind] = (count + 1, examples)

    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line:
            continue
        text = line.decode("utf-8", "replace")
        if text.startswith("2030-"):
            note("forged lines", n, text)
            continue
        if json_format:
            try:
                doc = json.loads(line)  # must also be UTF-8
                ok = set(doc) == {"time", "level", "msg"} and isinstance(doc["msg"], str)
                text = f"{doc['time']} {doc['level']} "
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                note("lines that are not canaryd's JSON", n, text)
                continue
        m = LOG_LINE.match(text)
        if not m:
            note("lines without a timestamp and a level", n, text)
            continue
        t = calendar.timegm(tuple(int(g) for g in m.groups()[:6]))
        if not lo <= t <= hi:
            note("lines with a timestamp outside this run", n, text)
    problems = [f"{path.name}: {count} {kind}, e.g. " + "; ".join(ex)
                for kind, (count, ex) in bad.items()]
    if m := SANITIZER.search(raw.decode("utf-8", "replace")):
        problems.insert(0, f"{path.name}: sanitizer report: {m.group(0)}")
    pieces = secret_pieces(raw.decode("utf-8", "replace"), secret)
    if pieces:
        at = raw.decode("utf-8", "replace").find(pieces[0])
        line = raw[:at].count(b"\n") + 1
        problems.append(f"{path.name}: secret pieces {pieces[:5]}, first on line {line}")
    return problems


def flatness(samples) -> list:
    """RSS, descriptors and threads after warm-up (10 s) must not grow."""
    problems = []
    warm = [s for s in samples if s["t"] >= 10]
    if len(warm) < 3:
        return ["too few resource samples after warm-up"]
    first, last = warm[0], warm[-1]
    third = max(1, len(warm) // 3)
    mid = warm[:third]
    end = warm[-third:]
    if last["rss_kb"] > first["rss_kb"] * 1.2:
        problems.append(f"RSS grew {first['rss_kb']} -> {last['rss_kb']} kB after warm-up")
    fds_mid = max(s["fds"] for s in mid)
    fds_end = max(s["fds"] for s in end)
    if fds_end > fds_mid * 1.25 + 16:
        problems.append(f"descriptors grew: max {fds_mid} early, {fds_end} late")
    thr_mid = max(s["threads"] for s in mid)
    thr_end = max(s["threads"] for s in end)
    if thr_end > thr_mid + 2:
        problems.append(f"threads grew: max {thr_mid} early, {thr_end} late")
    return problems


def part_daemon(binary, args) -> int:
    problems = []
    cases = select(args)
    secret = make_secret()
    with tempfile.TemporaryDirectory(prefix="fault_matrix_daemon.") as tmp:
        work = Path(tmp)
        peer = Peer(work, [c.name for c in cases] if args.k or args.x else None)
        try:
            config = {"probes": [probe_config(c, peer.info, INTERVAL, TIMEOUT) for c in cases]}
            problems += run_text(binary, config, work, secret, args.seconds)
            problems += run_json(binary, config, work, secret)
            resumed = {k: v["tls_resumed"] for k, v in peer.stats().items() if v["tls_resumed"]}
            if resumed:
                problems.append(f"TLS sessions resumed between runs: {resumed}")
            errors = {k: v["errors"] for k, v in peer.stats().items() if v["errors"]}
            if errors:
                problems.append(f"hostile peer errors (a bug in the peer): {errors}")
        finally:
            peer.stop()
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                for f in work.glob("canaryd-*"):
                    shutil.copy(f, args.keep)
    print(f"\nfault matrix daemon: {len(cases)} hostile probes, "
          f"{'all checks passed' if not problems else f'{len(problems)} problems'}")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


def run_text(binary, config, work, secret, seconds) -> list:
    problems, samples, scrapes, failed_scrapes = [], [], 0, []
    started = time.time()
    d = Daemon(binary, config, work, secret, "text")
    t0 = time.monotonic()
    metrics = state = b""
    next_sample = 0.0
    while (now := time.monotonic() - t0) < seconds:
        try:
            metrics = get(d.base + "/metrics", 5)
            scrapes += 1
        except OSError as e:
            failed_scrapes.append(f"{now:.0f}s: {e}")
        if now >= next_sample and (got := sample(d.proc.pid)) is not None:
            samples.append(dict(got, t=now))
            next_sample = now + 3
        if d.proc.poll() is not None:
            problems.append(f"canaryd exited early with {d.proc.returncode}")
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - now)))
    try:
        state = get(d.base + "/api/v1/state", 10)
        # Kept with --keep, to see why a probe ran less than it should.
        (work / "canaryd-last-metrics.txt").write_bytes(metrics)
        (work / "canaryd-last-state.json").write_bytes(state)
    except OSError as e:
        problems.append(f"/api/v1/state did not answer: {e}")
    rc, took = d.stop()
    ended = time.time()
    print(f"daemon (text log): {scrapes} scrapes, {len(failed_scrapes)} failed; samples "
          + ", ".join(f"{s['t']:.0f}s rss={s['rss_kb']}kB fds={s['fds']} thr={s['threads']}"
                      for s in samples))
    if failed_scrapes:
        problems.append(f"/metrics did not answer {len(failed_scrapes)} scrapes: "
                        f"{failed_scrapes[:3]}")
    if rc != 0:
        problems.append(f"exit on SIGTERM: {rc if rc is not None else 'killed after 20 s'} "
                        f"(took {took:.1f}s)")
    problems += flatness(samples)
    problems += check_log(d.log_path, secret, started, ended, json_format=False)
    for what, body in (("/metrics", metrics), ("/api/v1/state", state)):
        pieces = secret_pieces(body.decode("utf-8", "replace"), secret)
        if pieces:
            problems.append(f"secret pieces in {what}: {pieces[:5]}")
    if metrics and shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=metrics,
                           capture_output=True, timeout=60)
        if p.returncode != 0:
            problems.append("promtool check metrics: " +
                            (p.stdout + p.stderr).decode(errors="replace")[:500])
    if state:
        try:
            probes = json.loads(state)
            runs = sum(p.get("runs_total", 0) for p in probes.get("probes", []))
            print(f"daemon (text log): {runs} runs recorded in /api/v1/state")
            internal = sorted(p["name"] for p in probes.get("probes", [])
                              if any(h.get("reason") == "internal" for h in p.get("history", [])))
            if internal:
                problems.append(f"reason internal in the history of: {internal}")
            # A 2 s interval for 30 s is about 15 runs; a probe with fewer than 3
            # was starved (a loop stalled by another target, or a run that never ends).
            starved = sorted(p["name"] for p in probes.get("probes", [])
                             if p.get("runs_total", 0) < 3)
            if starved:
                problems.append(f"{len(starved)} probes finished fewer than 3 runs: "
                                f"{starved[:10]}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"/api/v1/state is not the expected JSON: {e}")
    return problems


def run_json(binary, config, work, secret) -> list:
    started = time.time()
    d = Daemon(binary, config, work, secret, "json")
    time.sleep(JSON_RUN_SECONDS)
    rc, took = d.stop()
    problems = [] if rc == 0 else [f"JSON-log run: exit on SIGTERM {rc} (took {took:.1f}s)"]
    return problems + check_log(d.log_path, secret, started, time.time(), json_format=True)
