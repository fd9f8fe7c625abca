#!/usr/bin/env python3
"""(c) Capacity, overload and hung concurrency of the worker loops (issue 12).

Three parts, one canaryd at a time, against the same two targets:
  healthy: nginx /health (one process, one event loop);
  hung:    bench/blackhole (accepts, reads, never answers), started under
           `nice -n 19` so that, on this 2-core machine, it takes CPU only
           when canaryd does not want it: a hung target costs canaryd a
           connect and a timeout, and the blackhole's own accept/read work
           should not be charged to canaryd's capacity.

1. Capacity, at `workers: 1` and `workers: 2`: 100 healthy probes plus H hung
   ones, all at 1 s interval and 1 s timeout, so H + 100 runs are due a
   second. H doubles from 500 until a trial misses, then is bisected. A trial
   passes when the scheduler lag p99 (canary_scheduler_lag_seconds over the
   window, every loop, Prometheus-style bucket interpolation) is under 50 ms,
   the healthy probes have no failure and no slot was skipped as late, missed
   or starved. Capacity is the runs/s actually done in the best passing
   trial; the scaling ratio is workers 2 over workers 1.
2. Overload, at `workers: 1`: twice its capacity. Healthy probes must get no
   failure; the excess must show as skipped runs (by cause), and hung runs
   that were judged must be timeouts.
3. Hung concurrency, at `workers` = the CPUs: 15,000 hung probes (30 s
   interval, 30 s timeout: 15,000 connections open at once) plus 100 healthy
   at 1 s. Targets: lag p99 < 10 ms, no healthy failure, RSS < 400 MB,
   threads = workers + a constant.

Per-core cost: CPU µs per run at workers 1 capacity gives runs/s per core; a
16-core machine is projected from that and the measured 1 -> 2 scaling (a
projection, not a measurement).

Knobs: BENCH_CAP_WINDOW (15 s), BENCH_CAP_WARMUP (8 s), BENCH_CAP_STEPS (3
bisection steps), BENCH_CAP_PARTS (capacity,overload,hung), BENCH_HUNG_COUNT
(15000). Every canaryd, nginx and blackhole is stopped by PID when done.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (CLK_TCK, Canaryd, canaryd_config, cpu_ticks, delta_by_label, env_seconds,
                    free_port, histogram, histogram_delta, histogram_quantile, http_get, log, mib,
                    proc_status, raise_fd_limit, save_result, scrape, start_blackhole, start_nginx)

WINDOW = env_seconds("BENCH_CAP_WINDOW", 15)
WARMUP = env_seconds("BENCH_CAP_WARMUP", 8)
STEPS = int(env_seconds("BENCH_CAP_STEPS", 3))
PARTS = os.environ.get("BENCH_CAP_PARTS", "capacity,overload,hung").split(",")
HUNG_COUNT = int(env_seconds("BENCH_HUNG_COUNT", 15000))
HEALTHY = 100
LAG_P99 = 0.050
MAX_HUNG = 16000  # 1 s hung runs hold a descriptor each; the limit is 20,000
NAMES = ["canary_scheduler_lag_seconds", "canary_scheduler_skipped_runs_total",
         "canary_probe_runs_total", "canary_probe_failures_total", "canary_loop_saturation_ratio"]


def trial(tag, workers, hung, targets, hung_timing="1s", warmup=WARMUP, window=WINDOW):
    health_port, hung_ports = targets
    os.environ["BENCH_WORKERS"] = str(workers)
    probes = [(f"ok{i:03d}", f"http://127.0.0.1:{health_port}/health?probe=ok{i:03d}", "1s", "1s")
              for i in range(HEALTHY)]
    # Short lines, the hung probes' timing as the defaults: 15,100 probes must
    # fit canaryd's 1 MiB config limit.
    probes += [(f"h{i:05d}", f"http://127.0.0.1:{hung_ports[i % len(hung_ports)]}",
                hung_timing, hung_timing) for i in range(hung)]
    text = canaryd_config(free_port(), probes, default_timing=hung_timing)
    d = Canaryd(f"cap-{tag}", text, ready_timeout=180)
    try:
        time.sleep(warmup)
        s0 = scrape(d.base, NAMES)
        c0, t0 = cpu_ticks(d.pid), time.monotonic()
        rss, threads = [], []
        while time.monotonic() < t0 + window:
            st = proc_status(d.pid)
            rss.append(st["VmRSS"])
            threads.append(st["Threads"])
            time.sleep(min(1.0, max(0.0, t0 + window - time.monotonic())))
        c1, t1 = cpu_ticks(d.pid), time.monotonic()
        s1 = scrape(d.base, NAMES)
        status, body = http_get(d.base + "/api/v1/state", timeout=120)
        state = json.loads(body)["probes"] if status == 200 else []
    finally:
        d.stop()
    after, before = s1[0], s0[0]
    lag = histogram_delta(histogram(after, "canary_scheduler_lag_seconds"),
                          histogram(before, "canary_scheduler_lag_seconds"))
    skipped = {k: int(v) for k, v in delta_by_label(
        after, before, "canary_scheduler_skipped_runs_total", "cause").items()}
    runs = delta_by_label(after, before, "canary_probe_runs_total", "probe")
    fails = delta_by_label(after, before, "canary_probe_failures_total", "reason",
                           lambda l: l["probe"].startswith("h0"))
    ok_state = [p for p in state if p["name"].startswith("ok")]
    ok_reasons = {}
    for p in ok_state:
        for h in p["history"]:
            if not h["success"]:
                ok_reasons[h["reason"]] = ok_reasons.get(h["reason"], 0) + 1
    span = s1[3] - s0[3]
    all_runs = sum(runs.values())
    r = {
        "workers": workers, "hung": hung, "hung_timing": hung_timing, "window_seconds": span,
        "runs_per_s": all_runs / span,
        "healthy_runs_per_s": sum(v for k, v in runs.items() if k.startswith("ok")) / span,
        "lag_p50": histogram_quantile(0.5, lag) if lag else None,
        "lag_p99": histogram_quantile(0.99, lag) if lag else None,
        "skipped": skipped,
        "hung_failure_reasons": {k: int(v) for k, v in fails.items()},
        "healthy_failures_total": sum(p["failures_total"] for p in ok_state),
        "healthy_runs_total": sum(p["runs_total"] for p in ok_state),
        "healthy_failure_reasons": ok_reasons,
        "cpu_cores": (c1 - c0) / CLK_TCK / (t1 - t0),
        "rss_max": max(rss), "threads_max": max(threads), "threads_min": min(threads),
        "saturation": {l.get("loop"): v for n, l, v in after
                       if n == "canary_loop_saturation_ratio"},
    }
    r["cpu_us_per_run"] = r["cpu_cores"] / r["runs_per_s"] * 1e6 if r["runs_per_s"] else None
    overload_skips = sum(v for k, v in skipped.items() if k != "overlap")
    r["passed"] = (r["lag_p99"] is not None and r["lag_p99"] < LAG_P99
                   and r["healthy_failures_total"] == 0 and overload_skips == 0)
    log(f"  {tag}: workers {workers}, {hung} hung ({hung_timing}) + {HEALTHY} healthy: "
        f"{r['runs_per_s']:.0f} runs/s, lag p50 {r['lag_p50'] * 1e3:.1f} ms p99 "
        f"{r['lag_p99'] * 1e3:.1f} ms, skipped {skipped or 0}, healthy failures "
        f"{r['healthy_failures_total']} {ok_reasons or ''}, hung failures {r['hung_failure_reasons']}, "
        f"CPU {r['cpu_cores']:.2f} cores ({r['cpu_us_per_run'] or 0:.0f} µs/run), RSS "
        f"{mib(r['rss_max'])}, threads {r['threads_max']}, saturation {r['saturation']}"
        f" -> {'pass' if r['passed'] else 'miss'}")
    return r


def capacity(workers, targets):
    log(f"capacity at workers: {workers} (lag p99 < 50 ms, no healthy failure, no overload skip)")
    best, low, high = None, 0, None
    hung = 500
    while high is None and hung <= MAX_HUNG:
        r = trial(f"w{workers}-{hung}", workers, hung, targets)
        if r["passed"]:
            best, low = r, hung
            hung *= 2
        else:
            high = hung
    for _ in range(STEPS if high else 0):
        mid = (low + high) // 2
        r = trial(f"w{workers}-{mid}", workers, mid, targets)
        if r["passed"]:
            best, low = r, mid
        else:
            high = mid
    if best:
        log(f"  capacity at workers {workers}: {best['runs_per_s']:.0f} runs/s "
            f"({best['hung']} hung + {HEALTHY} healthy), lag p99 {best['lag_p99'] * 1e3:.1f} ms, "
            f"{best['cpu_us_per_run']:.0f} µs of CPU per run")
    return best


def main():
    raise_fd_limit()
    nginx, health_port = start_nginx("capacity")
    bh, bh_ports = start_blackhole(max_seconds=1800, nice=19)
    targets = (health_port, bh_ports)
    res = {"cpus": os.cpu_count()}
    if "capacity" in PARTS or "overload" in PARTS:
        res["w1"] = capacity(1, targets)
    if "capacity" in PARTS:
        res["w2"] = capacity(2, targets)
        w1, w2 = res["w1"], res["w2"]
        if w1 and w2:
            res["scaling"] = w2["runs_per_s"] / w1["runs_per_s"]
            per_core = 1e6 / w1["cpu_us_per_run"]
            res["runs_per_core_s"] = per_core
            res["projection_16_cores"] = per_core * 16 * res["scaling"] / 2
            log(f"scaling workers 1 -> 2: {res['scaling']:.2f}x; one core does {per_core:.0f} "
                f"runs/s at {w1['cpu_us_per_run']:.0f} µs each; 16 cores would do about "
                f"{res['projection_16_cores']:.0f} runs/s at the same per-core scaling "
                "(a projection, not measured)")
    if "overload" in PARTS and res.get("w1"):
        hung = min(MAX_HUNG, int(2 * res["w1"]["runs_per_s"]) - HEALTHY)
        log(f"overload: workers 1 at twice its capacity ({hung + HEALTHY} runs due a second)")
        r = trial("overload", 1, hung, targets, window=30)
        res["overload"] = r
        judged_ok = set(r["hung_failure_reasons"]) <= {"timeout"}
        log(f"  overload: healthy failures {r['healthy_failures_total']} (target 0: "
            f"{'met' if r['healthy_failures_total'] == 0 else 'NOT met'}); skipped {r['skipped']}; "
            f"hung runs judged all timeouts: {'yes' if judged_ok else 'NO'}")
    if "hung" in PARTS:
        workers = os.cpu_count()
        log(f"hung concurrency: {HUNG_COUNT} hung probes at 30 s interval and timeout + "
            f"{HEALTHY} healthy at 1 s, workers {workers}")
        r = trial("hung", workers, HUNG_COUNT, targets, hung_timing="30s", warmup=35, window=30)
        res["hung"] = r
        met = {"lag": r["lag_p99"] < 0.010, "healthy": r["healthy_failures_total"] == 0,
               "rss": r["rss_max"] < 400e6}
        log(f"  hung: lag p99 {r['lag_p99'] * 1e3:.2f} ms (< 10 ms: "
            f"{'met' if met['lag'] else 'NOT met'}), healthy failures "
            f"{r['healthy_failures_total']}, RSS {mib(r['rss_max'])} (< 400 MB: "
            f"{'met' if met['rss'] else 'NOT met'}), threads {r['threads_max']} with {workers} "
            "workers")
    for p in (bh, nginx):
        p.terminate()
    save_result("c_capacity", res)


if __name__ == "__main__":
    main()
