#!/usr/bin/env python3
"""Soak: BENCH_SOAK_MINUTES (default 30) at about 1,000 runs/s of mixed probe
types, a tenth of them against the fault matrix's hostile peer.

  - 600 HTTP probes at 1 s against nginx;
  - 150 Redis probes at 1 s against redis-server (with a password);
  - 50 PostgreSQL probes at 1 s against PostgreSQL (md5 logins);
  - 100 WebSocket probes at 1 s against the fake platform (subprotocol negotiated);
  - every behaviour of tests/fixtures/hostile_peer.py as a probe at 2 s
    (about 100 runs/s of garbage, stalls, floods, huge and deep payloads).

Prints RSS, descriptors, threads, runs/s and failures by reason every minute,
and at the end whether RSS stayed within 5 % of its 5-minute value (the target),
and whether descriptors and threads stayed flat. Asserts nothing.
Knobs: BENCH_SOAK_MINUTES, BENCH_SOAK_SCALE (multiplies the healthy probe counts).
"""

import json
import os
import pathlib
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "fault_matrix"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "fixtures"))
import bench_datastores as ds  # noqa: E402
import common as c  # noqa: E402
from hostile import all_cases  # noqa: E402
from run_matrix import Peer, make_secret, probe_config  # noqa: E402

MINUTES = c.env_seconds("BENCH_SOAK_MINUTES", 30)
SCALE = c.env_seconds("BENCH_SOAK_SCALE", 1.0)


def config(listen_port, nginx_port, redis_port, fixture_port, peer):
    lines = ["global:", f"  listen: 127.0.0.1:{listen_port}", "  labels: {env: soak}",
             "  defaults: {interval: 1s, timeout: 800ms}", "probes:"]
    for i in range(int(600 * SCALE)):
        lines += [f"  - name: http-{i:04d}", "    type: http", "    http:",
                  f"      url: http://127.0.0.1:{nginx_port}/health",
                  "      expect: {status: [200], json: {status: healthy}}"]
    for i in range(int(150 * SCALE)):
        lines += [f"  - name: redis-{i:04d}", "    type: redis", "    redis:",
                  f"      address: \"127.0.0.1:{redis_port}\"",
                  "      password: \"${env:BENCH_REDIS_PASSWORD}\""]
    for i in range(int(50 * SCALE)):
        lines += [f"  - name: pg-{i:04d}", "    type: postgres", "    postgres:",
                  "      dsn: \"${env:BENCH_PG_DSN}\""]
    for i in range(int(100 * SCALE)):
        lines += [f"  - name: ws-{i:04d}", "    type: websocket", "    websocket:",
                  f"      url: ws://127.0.0.1:{fixture_port}/ws?subprotocol=first",
                  "      subprotocols: [jwt-auth, other]", "      expect_subprotocol: jwt-auth"]
    hostile = 0
    for case in all_cases():
        p = probe_config(case, peer.info, "2s", "1500ms")
        lines.append("  - " + json.dumps(p))
        hostile += 1
    return "\n".join(lines) + "\n", hostile


def main():
    c.raise_fd_limit()
    work = c.tmpdir("soak")
    _, nginx_port = c.start_nginx("soak")
    _, redis_port = ds.start_redis()
    _, pg_port = ds.start_postgres("md5")
    _, fixture_port = c.start_fake_platform("soak")
    peer = Peer(pathlib.Path(work))
    secret = make_secret()
    os.environ["BENCH_REDIS_PASSWORD"] = ds.REDIS_PW
    os.environ["BENCH_PG_DSN"] = (f"host=127.0.0.1 port={pg_port} user=canary "
                                  f"password={ds.PG_PW} dbname=postgres")
    os.environ["CANARY_SECRET"] = secret
    port = c.free_port()
    text, hostile = config(port, nginx_port, redis_port, fixture_port, peer)
    c.check_config("soak", text)
    d = c.Canaryd("soak", text)
    names = ("canary_probe_runs_total", "canary_probe_failures_total",
             "canary_scheduler_skipped_runs_total")
    c.log(f"soak: {MINUTES:.0f} min, {text.count('- name:') + hostile} probes "
          f"({hostile} hostile), pid {d.pid}")
    c.log(f"{'min':>4} {'RSS MiB':>8} {'fds':>6} {'threads':>7} {'runs/s':>8} "
          f"{'skipped/s':>9}  failures/s by reason")
    rows = []
    prev = c.try_scrape(d, names)
    t_prev = time.monotonic()
    start = t_prev
    minute = 0
    try:
        while time.monotonic() - start < MINUTES * 60:
            minute += 1
            while time.monotonic() < start + minute * 60:
                c.ensure_alive(d, "soak")
                time.sleep(1)
            st = c.proc_status(d.pid)
            fds = c.open_fds(d.pid)
            cur = c.try_scrape(d, names)
            now = time.monotonic()
            runs = skipped = 0.0
            reasons = {}
            if cur and prev:
                dt = now - t_prev
                runs = c.counter_delta(cur[0], prev[0], "canary_probe_runs_total") / dt
                skipped = c.counter_delta(cur[0], prev[0],
                                          "canary_scheduler_skipped_runs_total") / dt
                reasons = {k: v / dt for k, v in c.delta_by_label(
                    cur[0], prev[0], "canary_probe_failures_total", "reason").items()}
            prev, t_prev = cur or prev, now
            rss = st["VmRSS"]
            rows.append({"minute": minute, "rss": rss, "fds": fds, "threads": st["Threads"],
                         "runs_per_s": runs, "skipped_per_s": skipped, "failures": reasons})
            c.log(f"{minute:>4} {rss / 2**20:>8.1f} {fds:>6} {st['Threads']:>7} {runs:>8.0f} "
                  f"{skipped:>9.1f}  " +
                  ", ".join(f"{k} {v:.1f}" for k, v in sorted(reasons.items())))
    finally:
        rc = d.stop()
        peer.stop()
    c.log(f"exit status on SIGTERM: {rc}")
    base = next((r for r in rows if r["minute"] == 5), rows[0] if rows else None)
    if base and rows:
        later = [r for r in rows if r["minute"] >= base["minute"]]
        lo = min(r["rss"] for r in later)
        hi = max(r["rss"] for r in later)
        drift = max(abs(r["rss"] - base["rss"]) for r in later) * 100.0 / base["rss"]
        c.log(f"RSS from minute {base['minute']} on: {lo / 2**20:.1f}..{hi / 2**20:.1f} MiB, "
              f"at most {drift:.1f} % from minute {base['minute']}'s (target: within 5 %): "
              f"{'met' if drift <= 5 else 'NOT met'}")
        c.log(f"descriptors {base['fds']} -> {rows[-1]['fds']}, "
              f"threads {base['threads']} -> {rows[-1]['threads']}")
    c.save_result("soak", {"rows": rows, "exit": rc})


if __name__ == "__main__":
    main()
