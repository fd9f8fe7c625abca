#!/usr/bin/env python3
"""WebSocket concurrency: 12,000 connections open at once (issue 12).

BENCH_WS_HOLD_PROBES (12,500) `type: websocket` probes, each opening one
connection every 30 s and holding it 29 s (timeout 30 s), against
bench/agent_server (C++, one epoll thread, takes 20,000 connections; it
answers the upgrade and then waits for a first message that never comes, so
it holds what it is given). At steady state about probes x 29/30, 12,083 by
default, are open at once; the benchmark counts them on the server
(open_total of /_ws_stats) every second.

Per setting of `workers` (BENCH_WS_HOLD_WORKERS, default "1 2"): warm-up 35 s
(every probe has made its first connection), then a window of 30 s:
  open connections: min and max over the window (the server's count);
  handshake: the WebSocket probes' `handshake` phase p99 over the window
    (delta of canary_probe_phase_duration_seconds{phase="handshake"}; for a held
    probe each run's handshake is the time from the TCP connect to the 101);
  scheduler lag p99 over the window (canary_scheduler_lag_seconds);
  failures by reason and skipped runs by cause; canaryd CPU, RSS and threads.
Target: handshake lag p99 < 50 ms with 12,000 open. canaryd's descriptor cap
per lws context is three quarters of the process limit (20,000 here).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

PROBES = int(c.env_seconds("BENCH_WS_HOLD_PROBES", 12500))
WORKERS = [int(x) for x in os.environ.get("BENCH_WS_HOLD_WORKERS", "1 2").split()]
WARMUP = c.env_seconds("BENCH_WS_HOLD_WARMUP", 35)
WINDOW = c.env_seconds("BENCH_WS_HOLD_WINDOW", 30)
METRICS = ("canary_scheduler_lag_seconds", "canary_probe_runs_total",
           "canary_probe_failures_total", "canary_scheduler_skipped_runs_total",
           "canary_probe_phase_duration_seconds")


def config(listen_port, server_port, workers):
    # The timing in the defaults and one websocket block named by a YAML
    # anchor: 12,500 probes must stay within canaryd's 1 MiB config limit.
    lines = ["global:", f"  listen: 127.0.0.1:{listen_port}", "  labels: {env: bench}",
             f"  workers: {workers}", "  defaults: {interval: 30s, timeout: 30s}",
             "  metrics: {detail: full}",  # the handshake phase's histogram is read below
             "probes:"]
    url = f"ws://127.0.0.1:{server_port}/ws?agent=happy"
    for i in range(PROBES):
        block = f"&ws {{url: \"{url}\", hold: 29s}}" if i == 0 else "*ws"
        lines.append(f"- {{name: hold{i:05d}, type: websocket, websocket: {block}}}")
    return "\n".join(lines) + "\n"


def server_open(port):
    status, body = c.http_get(f"http://127.0.0.1:{port}/_ws_stats", timeout=10)
    import json
    return json.loads(body)["open_total"] if status == 200 else None


def run(workers, server_port):
    listen = c.free_port()
    c.log(f"\nworkers {workers}: {PROBES} probes holding 29 s of every 30 s; warm-up "
          f"{WARMUP:.0f} s, window {WINDOW:.0f} s")
    d = c.Canaryd(f"ws-hold-w{workers}", config(listen, server_port, workers), ready_timeout=180)
    try:
        c.warm_up(d, WARMUP)
        # A scrape of 12,500 probes takes seconds: the counters are read
        # somewhere inside it, so each is timed at its middle.
        m0 = time.monotonic()
        s0 = c.try_scrape(d, METRICS, timeout=120)
        m0 = (m0 + time.monotonic()) / 2
        c0, t0 = c.cpu_ticks(d.pid), time.monotonic()
        opens, rss, threads, fds = [], [], [], []
        while time.monotonic() < t0 + WINDOW:
            opens.append(server_open(server_port))
            st = c.proc_status(d.pid)
            rss.append(st["VmRSS"])
            threads.append(st["Threads"])
            fds.append(c.open_fds(d.pid))
            time.sleep(min(1.0, max(0.0, t0 + WINDOW - time.monotonic())))
        c1, t1 = c.cpu_ticks(d.pid), time.monotonic()
        m1 = time.monotonic()
        s1 = c.try_scrape(d, METRICS, timeout=120)
        m1 = (m1 + time.monotonic()) / 2
    finally:
        d.stop()
    r = {"workers": workers, "probes": PROBES, "open_min": min(o for o in opens if o is not None),
         "open_max": max(o for o in opens if o is not None), "rss_max": max(rss),
         "threads_max": max(threads), "fds_max": max(fds),
         "cpu_cores": (c1 - c0) / c.CLK_TCK / (t1 - t0)}
    if s0 and s1:
        after, before = s1[0], s0[0]
        hs = c.histogram_delta(
            c.histogram(after, "canary_probe_phase_duration_seconds", lambda l: l.get("phase") == "handshake"),
            c.histogram(before, "canary_probe_phase_duration_seconds", lambda l: l.get("phase") == "handshake"))
        lag = c.histogram_delta(c.histogram(after, "canary_scheduler_lag_seconds"),
                                c.histogram(before, "canary_scheduler_lag_seconds"))
        r["handshakes"] = hs[max(hs)] if hs else 0
        r["handshakes_per_s"] = r["handshakes"] / (m1 - m0)
        # Phases are recorded when a run ends, after its hold.
        r["handshake_p50"] = c.histogram_quantile(0.5, hs) if r["handshakes"] else None
        r["handshake_p99"] = c.histogram_quantile(0.99, hs) if r["handshakes"] else None
        r["lag_p99"] = c.histogram_quantile(0.99, lag) if lag else None
        r["failures"] = {k: int(v) for k, v in c.delta_by_label(
            after, before, "canary_probe_failures_total", "reason").items()}
        r["skipped"] = {k: int(v) for k, v in c.delta_by_label(
            after, before, "canary_scheduler_skipped_runs_total", "cause").items()}
    ms = lambda x: "n/a" if x is None else f"{x * 1e3:.1f} ms"
    c.log(f"  open at once {r['open_min']:,}..{r['open_max']:,}; handshakes "
          f"{r.get('handshakes_per_s', 0):,.0f}/s between the scrapes (probes/30 s expected), "
          f"handshake p50 {ms(r.get('handshake_p50'))} p99 "
          f"{ms(r.get('handshake_p99'))} (< 50 ms: "
          f"{'met' if (r.get('handshake_p99') or 1) < 0.05 else 'NOT met'}); lag p99 "
          f"{ms(r.get('lag_p99'))}; failures {r.get('failures') or 0}; skipped "
          f"{r.get('skipped') or 0}; CPU {r['cpu_cores']:.2f} cores, RSS {c.mib(r['rss_max'])}, "
          f"threads {r['threads_max']}, fds {r['fds_max']:,}")
    return r


def main():
    c.raise_fd_limit()
    server, port = c.start_agent_server("ws-hold")
    res = {"runs": [run(w, port) for w in WORKERS]}
    server.terminate()
    c.save_result("ws_hold", res)


if __name__ == "__main__":
    main()
