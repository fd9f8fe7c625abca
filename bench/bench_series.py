#!/usr/bin/env python3
"""What 1,000 HTTP probes cost Prometheus in each metrics.detail mode (docs/metrics.md).

    python3 bench/bench_series.py [PROBES]

For `basic` and then `full`: canaryd (release build) runs PROBES (1,000) HTTP
probes against one nginx, every 5 s; once each has run twice, it is scraped
10 times. Printed per mode:
  * series and bytes per scrape, and per probe;
  * the CPU the endpoint thread (canaryd-http) spent per scrape: rendering
    /metrics, as the target says (basic: <= 50 ms);
  * prometheus_tsdb_head_series of a real Prometheus that scraped that canaryd
    for 20 s (its own series, about 700, included; printed apart).
Targets (issue 14): basic <= 4 MB a scrape and <= 50 ms of render CPU.
"""
import os
import sys
import time

from common import (CLK_TCK, Canaryd, cpu_ticks, canaryd_config, forget, free_port, http_get, log, start,
                    start_nginx, stop, stop_all, tmpdir, wait_http)

SCRAPES = 10


def head_series(canaryd_port, seconds=20):
    """Starts Prometheus scraping canaryd every second; its head series after `seconds`."""
    d = tmpdir("prometheus")
    port = free_port()
    with open(os.path.join(d, "prometheus.yml"), "w") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                "scrape_configs:\n"
                f"  - job_name: canaryd\n    static_configs: [{{targets: ['127.0.0.1:{canaryd_port}']}}]\n")
    p = start("prometheus", ["prometheus", f"--config.file={d}/prometheus.yml",
                             f"--storage.tsdb.path={d}/tsdb",
                             f"--web.listen-address=127.0.0.1:{port}"],
              log_path=os.path.join(d, "log"))
    wait_http(f"http://127.0.0.1:{port}/-/ready", proc=p, timeout=60)
    time.sleep(seconds)
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    for line in body.decode().splitlines():
        if line.startswith("prometheus_tsdb_head_series "):
            head = float(line.split()[1])
            break
    # Prometheus's own series are not in its head: it does not scrape itself here.
    stop(p)
    forget(p)
    return head


def run_mode(detail, probes, nginx_port):
    port = free_port()
    text = canaryd_config(port, [(f"p{i:04d}", f"http://127.0.0.1:{nginx_port}/health", "5s", "2s")
                                 for i in range(probes)], default_timing="5s", detail=detail)
    d = Canaryd(f"series-{detail}", text)
    time.sleep(11)  # every probe has run twice (5 s interval, first runs spread over it)
    sizes, series = [], []
    t0 = cpu_ticks(d.pid, "canaryd-http")
    for _ in range(SCRAPES):
        _, body = http_get(d.base + "/metrics")
        sizes.append(len(body))
        series.append(sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#")))
    cpu_ms = (cpu_ticks(d.pid, "canaryd-http") - t0) * 1000 / CLK_TCK / SCRAPES
    head = head_series(d.port)
    d.stop()
    return {"bytes": sum(sizes) / len(sizes), "series": max(series), "cpu_ms": cpu_ms,
            "head": head}


def main():
    probes = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    _, nginx_port = start_nginx("series")
    results = {}
    try:
        for detail in ("basic", "full"):
            log(f"== metrics.detail {detail}: {probes} HTTP probes")
            r = run_mode(detail, probes, nginx_port)
            results[detail] = r
            log(f"  series per scrape: {r['series']:,} ({r['series'] / probes:.1f} per probe)")
            log(f"  bytes per scrape:  {r['bytes'] / 1e6:.2f} MB ({r['bytes'] / probes:,.0f} per probe)")
            log(f"  render CPU:        {r['cpu_ms']:.1f} ms per scrape (canaryd-http thread, "
                f"mean of {SCRAPES})")
            log(f"  prometheus_tsdb_head_series after 20 s of 1 s scrapes: {r['head']:,.0f}")
        b = results["basic"]
        log(f"== basic targets: <= 4 MB a scrape: {'met' if b['bytes'] <= 4e6 else 'NOT met'}; "
            f"<= 50 ms of render CPU: {'met' if b['cpu_ms'] <= 50 else 'NOT met'}")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
