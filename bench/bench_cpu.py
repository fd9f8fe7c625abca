#!/usr/bin/env python3
"""(a) CPU per probe at a steady 1000 HTTP probes/s: canaryd vs blackbox_exporter,
and canaryd vs the floor (the least any client can spend on the same GETs).

All three probe the same local nginx /health with a fresh connection per
probe, one after the other (never concurrently, so they don't compete for the
2 cores):

  canaryd:  1000 probes at a 1 s interval on its own schedule. CPU is the
            daemon's utime+stime (/proc/PID/stat) over the window; probes are
            the window's share of the delta of sum(canary_probe_runs_total).
            The two /metrics scrapes that read the counters are kept out of
            the CPU window; what one scrape costs is measured separately and
            reported, amortized over a 15 s Prometheus scrape interval.
  blackbox: bench/loadgen sends GET /probe?target=...&module=http_2xx at 1000/s
            over kept-alive connections; CPU is the exporter's utime+stime over
            the loadgen's window, divided by the probes completed in it.
  floor:    bench/get_floor, one thread of raw non-blocking sockets and epoll,
            does the same fresh-connection GET /health at the same rate for the
            same window: connect, send, read the whole response, check the 200,
            close. Its own utime+stime (getrusage) over the window, divided by
            the requests that ended in it. On loopback this thread also runs
            nginx's half of the TCP work in its system calls, as canaryd does.
  libcurl:  bench/curl_floor, one libcurl multi handle and nothing else, does
            the same GETs at the same rate: what canaryd's HTTP library costs
            alone, so the part of canaryd's figure that is its own shows.

Targets (issue 12): canaryd's CPU per probe (probing only) <= 2x the floor's
and <= 0.12x blackbox's.

Knobs: BENCH_WARMUP (default 10 s), BENCH_WINDOW (default 30 s), BENCH_RATE
(default 1000 probes/s). BENCH_PERF=1 records `perf record -g` of canaryd for
BENCH_PERF_SECONDS (10) after its CPU window (so it does not inflate the
figures) into BENCH_PERF_OUT (default perf-a-canaryd.data in BENCH_RESULTS, or
in the build dir); BENCH_PERF_ARGS replaces `-g` (e.g. "--call-graph dwarf").
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shlex
import shutil
import subprocess

from common import (BLACKBOX, BUILD, CLK_TCK, CURL_FLOOR, GET_FLOOR, Canaryd, canaryd_config,
                    cpu_ticks, env_seconds, free_port, log, proc_status, raise_fd_limit,
                    run_json_tool, run_loadgen, save_result, scrape, start, start_nginx, stop,
                    forget, sum_samples, tmpdir, wait_http)

WARMUP = env_seconds("BENCH_WARMUP", 10)
WINDOW = env_seconds("BENCH_WINDOW", 30)
RATE = int(env_seconds("BENCH_RATE", 1000))
SCRAPE_INTERVAL = 15.0  # what a Prometheus server would typically use
TARGET_RATIO = 0.12  # canaryd / blackbox, probing only (issue 12)
TARGET_FLOOR = 2.0   # canaryd / get_floor, probing only (issue 12)
# The floor client allocates nothing per request and has nothing to warm up
# beyond the server's and the kernel's caches.
FLOOR_WARMUP = min(WARMUP, 3.0)


def measure_canaryd(nginx_pid, health_url):
    listen = free_port()
    probes = [(f"p{i:04d}", health_url, "1s", "1s") for i in range(RATE)]
    log(f"canaryd: {RATE} probes at 1s interval -> {health_url}")
    d = Canaryd("cpu", canaryd_config(listen, probes))
    time.sleep(WARMUP)
    names = ["canary_probe_runs_total", "canary_probe_failures_total"]

    s0, _, nbytes, t_s0 = scrape(d.base, names)
    c0, n0, t0 = cpu_ticks(d.pid), cpu_ticks(nginx_pid), time.monotonic()
    time.sleep(WINDOW)
    c1, n1, t1 = cpu_ticks(d.pid), cpu_ticks(nginx_pid), time.monotonic()
    s1, scrape_s, _, t_s1 = scrape(d.base, names)
    c2, t2 = cpu_ticks(d.pid), time.monotonic()
    status = proc_status(d.pid)

    runs = sum_samples(s1, "canary_probe_runs_total") - sum_samples(s0, "canary_probe_runs_total")
    fails = (sum_samples(s1, "canary_probe_failures_total")
             - sum_samples(s0, "canary_probe_failures_total"))
    rate = runs / (t_s1 - t_s0)          # probes/s, between the two counter snapshots
    probes_in_window = rate * (t1 - t0)  # the CPU window lies inside that span
    cpu_s = (c1 - c0) / CLK_TCK
    us_per_probe = cpu_s / probes_in_window * 1e6
    # The scrape's own cost: CPU during it, less the probing that went on meanwhile.
    scrape_cpu = max(0.0, (c2 - c1) / CLK_TCK - cpu_s / (t1 - t0) * (t2 - t1))
    amortized = scrape_cpu / (rate * SCRAPE_INTERVAL) * 1e6
    nginx_us = (n1 - n0) / CLK_TCK / probes_in_window * 1e6
    perf = record_perf(d.pid) if os.environ.get("BENCH_PERF") == "1" else None
    d.stop()
    r = {
        "probes_per_second": rate, "window_seconds": t1 - t0, "runs_in_window": probes_in_window,
        "failures": fails, "cpu_seconds": cpu_s, "us_per_probe": us_per_probe,
        "scrape_bytes": nbytes, "scrape_seconds": scrape_s, "scrape_cpu_seconds": scrape_cpu,
        "scrape_us_per_probe_at_15s": amortized, "us_per_probe_with_scrapes": us_per_probe + amortized,
        "nginx_us_per_probe": nginx_us, "rss_bytes": status.get("VmRSS"),
        "threads": status.get("Threads"), "perf_data": perf,
    }
    log(f"  achieved {rate:.1f} probes/s, {fails:.0f} failures; CPU {cpu_s:.2f} s over "
        f"{t1 - t0:.1f} s = {us_per_probe:.0f} us/probe")
    log(f"  one /metrics scrape ({nbytes / 1e6:.1f} MB, {scrape_s * 1e3:.0f} ms) costs "
        f"{scrape_cpu * 1e3:.0f} ms CPU = {amortized:.1f} us/probe at a {SCRAPE_INTERVAL:.0f} s "
        f"scrape interval -> {us_per_probe + amortized:.0f} us/probe with scrapes")
    log(f"  nginx: {nginx_us:.0f} us/probe; canaryd RSS {status.get('VmRSS', 0) / 2**20:.0f} MiB, "
        f"{status.get('Threads')} threads")
    return r


def record_perf(pid):
    """perf record of the running canaryd, after its CPU window; the data file's path."""
    perf = shutil.which("perf")
    if not perf:
        log("  BENCH_PERF=1 but perf is missing (apt-get install linux-perf): skipped")
        return None
    seconds = env_seconds("BENCH_PERF_SECONDS", 10)
    out = os.environ.get("BENCH_PERF_OUT") or os.path.join(
        os.environ.get("BENCH_RESULTS") or BUILD, "perf-a-canaryd.data")
    args = shlex.split(os.environ.get("BENCH_PERF_ARGS", "-g"))
    log(f"  perf record {' '.join(args)} -p {pid} for {seconds:.0f} s -> {out}")
    r = subprocess.run([perf, "record", *args, "-p", str(pid), "-o", out, "--",
                        "sleep", f"{seconds:g}"], capture_output=True, text=True,
                       timeout=seconds + 120)
    if r.returncode != 0:
        log(f"  perf record failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return None
    return out


def measure_blackbox(nginx_pid, health_url):
    d = tmpdir("blackbox")
    cfg = os.path.join(d, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n"
                "  http_2xx:\n"
                "    prober: http\n"
                "    timeout: 5s\n"
                "    http:\n"
                "      preferred_ip_protocol: ip4\n")
    port = free_port()
    p = start("blackbox", [BLACKBOX, f"--config.file={cfg}",
                           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
              log_path=os.path.join(d, "blackbox.log"))
    wait_http(f"http://127.0.0.1:{port}/metrics", proc=p)
    url = f"http://127.0.0.1:{port}/probe?target={health_url}&module=http_2xx"
    log(f"blackbox_exporter: loadgen {RATE}/s -> {url}")
    r = run_loadgen(["--url", url, "--rate", str(RATE), "--warmup", str(WARMUP),
                     "--duration", str(WINDOW), "--concurrency", "256", "--timeout-ms", "10000",
                     "--expect-body", "probe_success 1",
                     "--cpu-pid", str(p.pid), "--cpu-pid", str(nginx_pid)],
                    timeout=WARMUP + WINDOW + 60)
    status = proc_status(p.pid)
    stop(p)
    forget(p)
    bb_cpu = r["cpu"][0]["seconds"]
    us = bb_cpu / r["completed"] * 1e6 if r["completed"] else float("nan")
    nginx_us = r["cpu"][1]["seconds"] / r["completed"] * 1e6 if r["completed"] else float("nan")
    res = {
        "probes_per_second": r["achieved_rate"], "window_seconds": r["window_seconds"],
        "completed": r["completed"], "errors": r["errors"], "skipped": r["skipped"],
        "error_kinds": r["error_kinds"], "cpu_seconds": bb_cpu, "us_per_probe": us,
        "nginx_us_per_probe": nginx_us, "request_p50": r["total_p50"],
        "request_p99": r["total_p99"], "loadgen_cpu_seconds": r["loadgen_cpu_seconds"],
        "rss_bytes": status.get("VmRSS"), "threads": status.get("Threads"),
    }
    log(f"  achieved {r['achieved_rate']:.1f} probes/s ({r['completed']} completed, "
        f"{r['errors']} errors, {r['skipped']} skipped); CPU {bb_cpu:.2f} s over "
        f"{r['window_seconds']:.1f} s = {us:.0f} us/probe")
    log(f"  /probe request latency p50 {r['total_p50'] * 1e3:.2f} ms, p99 "
        f"{r['total_p99'] * 1e3:.2f} ms; nginx: {nginx_us:.0f} us/probe; exporter RSS "
        f"{status.get('VmRSS', 0) / 2**20:.0f} MiB, {status.get('Threads')} threads")
    if r["errors"]:
        log(f"  errors: {r['error_kinds']}")
    return res


def measure_floor(nginx_pid, port, tool="get_floor", binary=GET_FLOOR):
    log(f"floor: {tool} {RATE}/s fresh-connection GET /health -> 127.0.0.1:{port}")
    r = run_json_tool(tool, [binary, "--port", str(port), "--path", "/health", "--rate", str(RATE),
                             "--warmup", f"{FLOOR_WARMUP:g}", "--duration", f"{WINDOW:g}",
                             "--timeout-ms", "1000", "--cpu-pid", str(nginx_pid)],
                      FLOOR_WARMUP + WINDOW + 60)
    log(f"  achieved {r['achieved_rate']:.1f} requests/s ({r['requests']} in "
        f"{r['wall_seconds']:.1f} s, {r['failures']} failures, {r['skipped']} skipped); CPU "
        f"{r['cpu_seconds']:.2f} s = {r['cpu_us_per_request']:.0f} us/request (user "
        f"{r['user_us_per_request']:.0f}, sys {r['sys_us_per_request']:.0f}); nginx: "
        f"{r['cpu_pid_us_per_request']:.0f} us/request")
    return r


def main():
    raise_fd_limit()
    log(f"== (a) CPU per probe at {RATE} probes/s (warm-up {WARMUP:.0f} s, window "
        f"{WINDOW:.0f} s, CLK_TCK {CLK_TCK}) ==")
    nginx, port = start_nginx("cpu")
    health = f"http://127.0.0.1:{port}/health"
    c = measure_canaryd(nginx.pid, health)
    b = measure_blackbox(nginx.pid, health)
    f = measure_floor(nginx.pid, port)
    lc = measure_floor(nginx.pid, port, "curl_floor", CURL_FLOOR)
    ratio = c["us_per_probe_with_scrapes"] / b["us_per_probe"]
    ratio_probing = c["us_per_probe"] / b["us_per_probe"]
    floor_us = f["cpu_us_per_request"]
    floor_multiple = c["us_per_probe"] / floor_us if floor_us > 0 else float("nan")
    met_ratio = ratio_probing <= TARGET_RATIO
    met_floor = floor_multiple <= TARGET_FLOOR
    ok = lambda m: "met" if m else "NOT met"
    log("result (probing only; the /metrics scrapes at 15 s add "
        f"{c['scrape_us_per_probe_at_15s']:.0f} us/probe to canaryd):")
    log(f"  canaryd   {c['us_per_probe']:7.1f} us/probe")
    log(f"  blackbox  {b['us_per_probe']:7.1f} us/probe")
    log(f"  floor     {floor_us:7.1f} us/request (get_floor: raw sockets, epoll)")
    log(f"  canaryd / floor     {floor_multiple:5.2f}x  target <= {TARGET_FLOOR:g}x: "
        f"{ok(met_floor)}")
    log(f"  canaryd / blackbox  {ratio_probing:5.2f}x  target <= {TARGET_RATIO:g}x: "
        f"{ok(met_ratio)}  ({ratio:.2f}x with scrapes)")
    curl_us = lc["cpu_us_per_request"]
    log(f"  libcurl alone {curl_us:7.1f} us/request (curl_floor, libcurl "
        f"{lc.get('curl_version', '?')}): {curl_us / b['us_per_probe']:.2f}x blackbox, "
        f"{curl_us / floor_us:.2f}x the floor; canaryd / libcurl alone "
        f"{c['us_per_probe'] / curl_us:.2f}x")
    save_result("a_cpu", {"canaryd": c, "blackbox": b, "floor": f, "libcurl": lc, "ratio": ratio,
                          "ratio_probing_only": ratio_probing, "target_ratio": TARGET_RATIO,
                          "floor_multiple": floor_multiple, "target_floor": TARGET_FLOOR,
                          "met_ratio": met_ratio, "met_floor": met_floor,
                          "met": met_ratio and met_floor, "rate": RATE})


if __name__ == "__main__":
    main()
