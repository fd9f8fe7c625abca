#!/usr/bin/env python3
"""(c) Scale: 10,000 HTTP probes against a target that never answers, plus 100
healthy ones, all at a 1 s interval with a 1 s timeout.

The hung target is bench/blackhole (accepts, reads, never answers; one epoll
thread; BLACKHOLE_PORTS listeners so the concurrent connections spread over
several 4-tuples). The healthy target is nginx /health?probe=<name> (the query
names the probe on the wire; nginx ignores it).

Two daemons, one after the other:
  baseline: the 100 healthy probes alone;
  full:     the same 100 + HUNG hung probes.

Over each measurement window:
  scheduler lag, two ways:
    histogram: delta of canary_scheduler_lag_seconds between a /metrics scrape
      at the start and one at the end, interpolated linearly inside the bucket
      (Prometheus' histogram_quantile). Global: every probe's lag goes in; all
      share the one loop, so it measures the loop. Taken only when /metrics can
      be served (see below).
    wire: the healthy probes' SYNs, captured on lo (bench/wirecap.py), against
      the schedule canaryd gives them (hash offset + k * interval): the
      healthy probes' own lag, from the most punctual run seen, including the
      loop's time from starting a run to its SYN. In the baseline both are
      taken, which calibrates one against the other.
  RSS: VmRSS sampled every second (max reported) and VmHWM after the window
      (the peak is reset via /proc/PID/clear_refs when the window opens).
  threads: /proc/PID/status Threads, max over the window.
  after the window: /api/v1/state (runs_total, failures_total and the recent
      history of every probe): every hung run must have failed, by timeout,
      and the healthy probes must have no failures; then /metrics is fetched
      once, to show whether it can be served at this size and what the
      attempt costs in memory.

/metrics at 10,100 probes is ~14 KB per HTTP probe, ~145 MB; canaryd serves
up to 1 GiB, so the start-of-window scrape is taken unless the baseline's bytes
per probe predict more than that.

Knobs: BENCH_HUNG (10000), BENCH_SCALE_WARMUP (10 s), BENCH_SCALE_WINDOW (45 s),
BENCH_BASE_WINDOW (15 s).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (CLK_TCK, CONNECT_FLOOR, Canaryd, canaryd_config, cpu_ticks, env_seconds,
                    free_port, histogram, histogram_delta, histogram_quantile, http_get, log, mib,
                    open_fds, percentile, proc_status, raise_fd_limit, save_result, scrape,
                    start_blackhole, start_nginx)

HUNG = int(env_seconds("BENCH_HUNG", 10000))
HEALTHY = 100
WARMUP = env_seconds("BENCH_SCALE_WARMUP", 10)
WINDOW = env_seconds("BENCH_SCALE_WINDOW", 45)
BASE_WINDOW = env_seconds("BENCH_BASE_WINDOW", 15)
BLACKHOLE_PORTS = 4
SCRAPE_LIMIT = 900 * 2**20  # canaryd's /metrics write limit is 1 GiB
TARGET_LAG_P99 = 0.050
TARGET_RSS = 300 * 1000 * 1000  # "300 MB"

NAMES = ["canary_scheduler_lag_seconds", "canary_scheduler_skipped_runs_total",
         "canary_probe_runs_total", "canary_probe_failures_total"]


def connect_floor(port):
    """bench/connect_floor against the blackhole: the kernel's CPU per hung run
    on loopback, µs (None if it could not run)."""
    try:
        out = subprocess.run([CONNECT_FLOOR, "--port", str(port), "--batch", "5000",
                              "--rounds", "4"], capture_output=True, timeout=120, check=True)
        return json.loads(out.stdout)["cpu_us_per_connection"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        log(f"  connect_floor failed: {e}")
        return None


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run(tag, health_port, hung_ports, hung, metrics_bytes_per_probe=None):
    from wirecap import WireCapture, schedule_lag
    listen = free_port()
    probes = [(f"ok{i:03d}", f"http://127.0.0.1:{health_port}/health?probe=ok{i:03d}", "1s", "1s")
              for i in range(HEALTHY)]
    probes += [(f"hung{i:05d}", f"http://127.0.0.1:{hung_ports[i % len(hung_ports)]}/hang",
                "1s", "1s") for i in range(hung)]
    n = len(probes)
    log(f"{tag}: {HEALTHY} healthy + {hung} hung probes, 1 s interval, 1 s timeout")
    t_start = time.monotonic()
    d = Canaryd(f"scale-{tag}", canaryd_config(listen, probes), ready_timeout=180)
    ready_s = time.monotonic() - t_start
    rss_ready = proc_status(d.pid)["VmRSS"]
    window = WINDOW if hung else BASE_WINDOW
    time.sleep(WARMUP if hung else min(WARMUP, 5))

    predicted = metrics_bytes_per_probe * n if metrics_bytes_per_probe else 0
    s0 = None
    if predicted <= SCRAPE_LIMIT:
        s0, _, _, _ = scrape(d.base, NAMES)
    try:
        cap = WireCapture(health_port).start()
    except OSError as e:
        cap = None
        log(f"  packet capture unavailable ({e}): no wire lag")
    c0, t0 = cpu_ticks(d.pid), time.monotonic()
    reset_ok = reset_peak(d.pid)
    rss, threads, fds = [], [], []
    end = t0 + window
    while time.monotonic() < end:
        st = proc_status(d.pid)
        rss.append(st["VmRSS"])
        threads.append(st["Threads"])
        fds.append(open_fds(d.pid))
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    c1, t1 = cpu_ticks(d.pid), time.monotonic()
    hwm_window = proc_status(d.pid).get("VmHWM") if reset_ok else None
    s1 = None
    if s0 is not None:
        s1, _, _, _ = scrape(d.base, NAMES)
    if cap:
        time.sleep(0.2)
        cap.stop()
    uptime = time.monotonic() - t_start - ready_s

    # Every probe's counters and recent history, from the state API.
    t_state = time.monotonic()
    status, body = http_get(d.base + "/api/v1/state", timeout=120)
    state_s = time.monotonic() - t_state
    state = json.loads(body)["probes"] if status == 200 else []
    rss_after_state = proc_status(d.pid)["VmRSS"]
    hung_runs = sum(p["runs_total"] for p in state if p["name"].startswith("hung"))
    hung_fail = sum(p["failures_total"] for p in state if p["name"].startswith("hung"))
    hung_hist = [h for p in state if p["name"].startswith("hung") for h in p["history"]]
    hung_hist_timeout = sum(1 for h in hung_hist if h["reason"] == "timeout")
    ok_runs = sum(p["runs_total"] for p in state if p["name"].startswith("ok"))
    ok_fail = sum(p["failures_total"] for p in state if p["name"].startswith("ok"))
    ok_reasons = {}
    for p in state:
        if p["name"].startswith("ok"):
            for h in p["history"]:
                if not h["success"]:
                    ok_reasons[h["reason"]] = ok_reasons.get(h["reason"], 0) + 1

    # One /metrics fetch at the end: can it be served at this size?
    metrics = {"ok": False}
    t_m = time.monotonic()
    try:
        status, mbody = http_get(d.base + "/metrics", timeout=120)
        metrics = {"ok": status == 200, "status": status, "bytes": len(mbody)}
    except OSError as e:
        metrics = {"ok": False, "error": str(e) or e.__class__.__name__}
    metrics["seconds"] = time.monotonic() - t_m
    time.sleep(0.5)
    st_end = proc_status(d.pid)
    d.stop()

    r = {"probes": n, "hung": hung, "ready_seconds": ready_s, "window_seconds": t1 - t0,
         "rss_ready": rss_ready, "rss_max": max(rss), "rss_min": min(rss), "hwm_window": hwm_window,
         "rss_after_state": rss_after_state, "rss_after_metrics": st_end.get("VmRSS"),
         "hwm_after_metrics": st_end.get("VmHWM"),
         "threads_max": max(threads), "threads_min": min(threads), "fds_max": max(fds),
         "fds_min": min(fds), "cpu_cores": (c1 - c0) / CLK_TCK / (t1 - t0),
         "state_bytes": len(body), "state_seconds": state_s, "metrics": metrics,
         "hung_runs_total": hung_runs, "hung_failures_total": hung_fail,
         "hung_runs_per_s": hung_runs / uptime if uptime > 0 else None,
         "hung_history": len(hung_hist), "hung_history_timeouts": hung_hist_timeout,
         "healthy_runs_total": ok_runs, "healthy_failures_total": ok_fail,
         "healthy_failure_reasons": ok_reasons}
    if s0 is not None and s1 is not None:
        lag = histogram_delta(histogram(s1, "canary_scheduler_lag_seconds"),
                              histogram(s0, "canary_scheduler_lag_seconds"))
        r["hist"] = {"n": lag[max(lag)], "p50": histogram_quantile(0.5, lag),
                     "p99": histogram_quantile(0.99, lag), "over_50ms": lag[max(lag)] - lag[0.05]}
        r["metrics_bytes_per_probe"] = metrics.get("bytes", 0) / n
    if cap and not cap.error:
        lags, gap = schedule_lag([c for c in cap.conns if c.tag and c.tag.startswith("ok")])
        r["wire"] = {"n": len(lags), "p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99),
                     "max": max(lags) if lags else None,
                     "over_50ms": sum(1 for x in lags if x > 0.05),
                     "empty_arc": gap, "saturated": gap < 0.25,
                     "expected_runs": HEALTHY * (t1 - t0)}

    log(f"  config loaded and ready in {ready_s:.1f} s (RSS then {mib(rss_ready)}); "
        f"window {t1 - t0:.1f} s; CPU {r['cpu_cores']:.2f} cores")
    if "hist" in r:
        h = r["hist"]
        log(f"  lag, histogram (all probes): p50 {h['p50'] * 1e3:.2f} ms, p99 {h['p99'] * 1e3:.2f} "
            f"ms; {h['over_50ms']:.0f} of {h['n']:.0f} runs > 50 ms late")
    else:
        log("  lag, histogram: not taken (/metrics too large to serve, see below)")
    if "wire" in r:
        w = r["wire"]

        def wms(x, digits=2):
            return "n/a" if x is None else f"{x * 1e3:.{digits}f}"

        log(f"  lag, wire (healthy probes' SYNs vs their schedule): p50 {wms(w['p50'])} ms, "
            f"p99 {wms(w['p99'])} ms, max {wms(w['max'], 1)} ms; {w['over_50ms']} of "
            f"{w['n']} runs > 50 ms late ({w['expected_runs']:.0f} slots in the window)")
        if w["saturated"]:
            log(f"  lag, wire: the loop is saturated (lags fill the 1 s circle, largest gap "
                f"{w['empty_arc'] * 1e3:.0f} ms): lags of a whole interval or more wrap "
                f"around, so these are lower bounds")
    log(f"  RSS {mib(r['rss_min'])}..{mib(r['rss_max'])} over the window, peak (VmHWM) "
        f"{mib(hwm_window) if hwm_window else 'n/a'}; threads {r['threads_min']}..."
        f"{r['threads_max']}; open fds {r['fds_min']}..{r['fds_max']}")
    log(f"  healthy: {ok_runs} runs, {ok_fail} failures {ok_reasons or ''}")
    if hung:
        log(f"  hung: {hung_runs} runs ({r['hung_runs_per_s']:.0f}/s), {hung_fail} failures; of "
            f"their last {len(hung_hist)} runs in history, {hung_hist_timeout} timeouts")
    log(f"  /api/v1/state: {len(body) / 1e6:.1f} MB in {state_s:.2f} s (RSS after "
        f"{mib(rss_after_state)})")
    if metrics["ok"]:
        log(f"  /metrics: {metrics['bytes'] / 1e6:.1f} MB in {metrics['seconds']:.2f} s")
    else:
        log(f"  /metrics FAILED after {metrics['seconds']:.1f} s: "
            f"{metrics.get('error') or metrics.get('status')}")
    log(f"  after the /metrics fetch: RSS {mib(r['rss_after_metrics'])}, peak "
        f"{mib(r['hwm_after_metrics'])}")
    return r


def main():
    lim = raise_fd_limit()
    log(f"== (c) scale: {HUNG} hung + {HEALTHY} healthy HTTP probes (fd limit {lim[0]}) ==")
    nginx, port = start_nginx("scale")
    bh, bh_ports = start_blackhole(BLACKHOLE_PORTS)
    base = run("baseline", port, bh_ports, 0)
    full = run("full", port, bh_ports, HUNG, base.get("metrics_bytes_per_probe"))
    floor = connect_floor(bh_ports[0])
    if floor and full.get("hung_runs_per_s"):
        per_run = full["cpu_cores"] / (full["hung_runs_per_s"] + HEALTHY) * 1e6
        due = HUNG + HEALTHY
        full["cpu_us_per_run"] = per_run
        log(f"loop budget: canaryd spent {per_run:.0f} µs of CPU per run; the kernel alone "
            f"charges {floor:.0f} µs per hung run on loopback (bench/connect_floor: socket, "
            f"connect, send, RST close; no HTTP client). {due:,} runs/s need "
            f"{due * per_run / 1e6:.2f} cores at canaryd's cost, {due * floor / 1e6:.2f} at the "
            "kernel's alone, of the one loop thread's 1.00")

    lag_src = "hist" if "hist" in full else "wire"
    lag = full.get(lag_src, {})
    saturated = lag_src == "wire" and lag.get("saturated", False)
    timeouts_ok = (full["hung_runs_total"] > 0
                   and full["hung_failures_total"] == full["hung_runs_total"]
                   and full["hung_history_timeouts"] == full["hung_history"])
    healthy_ok = full["healthy_failures_total"] == 0 and base["healthy_failures_total"] == 0
    res = {
        "baseline": base, "full": full, "lag_source": lag_src,
        "lag_p50": lag.get("p50"), "lag_p99": lag.get("p99"), "lag_lower_bound": saturated,
        "met_lag": lag.get("p99") is not None and lag["p99"] < TARGET_LAG_P99,
        "met_rss": full["rss_max"] < TARGET_RSS,
        "met_threads": full["threads_max"] <= base["threads_max"],
        "met_timeouts": timeouts_ok, "met_healthy": healthy_ok,
        "metrics_served": full["metrics"]["ok"],
        "target_lag_p99": TARGET_LAG_P99, "target_rss": TARGET_RSS,
        "kernel_us_per_hung_run": floor,
    }
    p99_text = "n/a" if lag.get("p99") is None else f"{lag['p99'] * 1e3:.2f} ms"
    if saturated:
        p99_text = ">= " + p99_text
    log(f"result: lag p99 ({lag_src}) {p99_text} (< 50 ms: "
        f"{'met' if res['met_lag'] else 'NOT met'}); RSS max {mib(full['rss_max'])} (< 300 MB: "
        f"{'met' if res['met_rss'] else 'NOT met'}); threads {base['threads_max']} -> "
        f"{full['threads_max']} ({'flat' if res['met_threads'] else 'GROWS'}); hung runs all "
        f"timeouts: {'yes' if timeouts_ok else 'NO'}; healthy failures: "
        f"{full['healthy_failures_total']}; /metrics at {full['probes']} probes: "
        f"{'served' if res['metrics_served'] else 'FAILED'}")
    save_result("c_scale", res)


if __name__ == "__main__":
    main()
