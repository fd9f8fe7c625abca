#!/usr/bin/env python3
"""Reload storm: valid, invalid and changed configs, through SIGHUP and
POST /-/reload, for BENCH_STORM_SECONDS (default 300) under load.

canaryd runs BENCH_STORM_PROBES (default 300) HTTP probes at 1 s against nginx,
so reloads land while hundreds of runs are in flight. Each step writes the next
config of a fixed cycle and asks for a reload, alternating the two ways, then
waits (bounded) for canary_config_reloads_total to move. After every step it
checks, from /metrics, what a user would check:

  - the daemon is alive and /metrics answers;
  - no reload is stuck (the reload counter moved within 20 s);
  - canary_config_last_reload_successful says 1 after a valid config, 0 after an
    invalid one;
  - the runs counters of the probes that every config keeps unchanged only go up;
  - the probe the changed configs alter shows its new interval
    (canary_probe_interval_seconds), and so does a probe that takes its interval
    from global.defaults when the defaults change.

Prints the counts and exits 0 whether or not the targets are met (a benchmark
asserts nothing); the last line says whether they were.
"""

import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import log  # noqa: E402

SECONDS = common.env_seconds("BENCH_STORM_SECONDS", 300)
PROBES = int(common.env_seconds("BENCH_STORM_PROBES", 300))


def config(listen, health_url, variant):
    """variant: 'a' and 'b' are valid (b changes 'changer' and the defaults),
    'bad_key' has an unknown key, 'bad_yaml' is not YAML, 'complex_key' has a
    complex mapping key in an agent probe's send.json."""
    default_interval = "3s" if variant == "b" else "2s"
    lines = ["global:", f"  listen: {listen}", "  labels: {env: bench}",
             f"  defaults: {{interval: {default_interval}, timeout: 1s}}", "probes:"]
    for i in range(PROBES):
        lines += [f"  - name: steady-{i}", "    type: http", "    interval: 1s",
                  "    timeout: 800ms", "    http:", f"      url: {health_url}"]
    changer_interval = "5s" if variant == "b" else "4s"
    lines += ["  - name: changer", "    type: http", f"    interval: {changer_interval}",
              "    timeout: 1s", "    http:", f"      url: {health_url}?v={variant}"]
    # Takes its interval from global.defaults: a defaults change must reach it.
    lines += ["  - name: by-defaults", "    type: http", "    http:", f"      url: {health_url}"]
    if variant == "bad_key":
        lines += ["  - name: broken", "    type: http", "    http:",
                  f"      url: {health_url}", "      no_such_key: 1"]
    elif variant == "bad_yaml":
        lines += ["  - name: broken", "    type: http", "    http: {url: [unclosed"]
    elif variant == "complex_key":
        lines += ["  - name: broken", "    type: agent_pipeline",
                  "    agent_pipeline:", "      websocket: {url: ws://127.0.0.1:1/ws}",
                  "      send:", "        json:", "          ? [a, b]", "          : 1",
                  "      events: [{type: agent_started}]"]
    return "\n".join(lines) + "\n"


CYCLE = ["a", "bad_key", "b", "bad_yaml", "a", "complex_key", "b"]
EXPECT = {"a": (1, 4.0, 2.0), "b": (1, 5.0, 3.0)}  # ok, changer interval, by-defaults interval


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def reloads(samples):
    return common.sum_samples(samples, "canary_config_reloads_total")


def value(samples, name, probe=None):
    for n, labels, v in samples:
        if n == name and (probe is None or labels.get("probe") == probe):
            return v
    return None


def runs_by_probe(samples):
    return {l["probe"]: v for n, l, v in samples
            if n == "canary_probe_runs_total" and l.get("probe", "").startswith("steady-")}


def main():
    common.raise_fd_limit()
    _, nginx_port = common.start_nginx("storm")
    health = f"http://127.0.0.1:{nginx_port}/health"
    listen_port = common.free_port()
    listen = f"127.0.0.1:{listen_port}"
    text = config(listen, health, "a")
    common.check_config("storm", text)
    # POST /-/reload needs the lifecycle endpoints switched on.
    d = common.Canaryd("storm", text, extra_args=["--web.enable-lifecycle"])
    names = ("canary_config_", "canary_probe_runs_total", "canary_probe_interval_seconds")
    common.warm_up(d, 5)

    counts = {"steps": 0, "sighup": 0, "http": 0, "valid": 0, "invalid": 0, "stuck": 0,
              "wrong_status": 0, "counter_went_down": 0, "settings_not_taken": 0,
              "metrics_failures": 0, "http_reload_status_other": 0}
    slowest_metrics = 0.0
    prev_runs = None
    started = time.monotonic()
    step = 0
    crashed = False
    while time.monotonic() - started < SECONDS:
        if d.proc.poll() is not None:
            crashed = True
            break
        variant = CYCLE[step % len(CYCLE)]
        via_http = step % 2 == 1
        step += 1
        try:
            before, _, _, _ = common.scrape(d.base, names, timeout=30)
        except Exception:
            counts["metrics_failures"] += 1
            continue
        write_atomic(d.config, config(listen, health, variant))
        if via_http:
            counts["http"] += 1
            status, _ = _post(d.base + "/-/reload")
            if status not in (200, 202, 500):
                counts["http_reload_status_other"] += 1
        else:
            counts["sighup"] += 1
            os.kill(d.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        after = None
        while time.monotonic() < deadline:
            try:
                after, took, _, _ = common.scrape(d.base, names, timeout=30)
                slowest_metrics = max(slowest_metrics, took)
            except Exception:
                counts["metrics_failures"] += 1
                after = None
            if after is not None and reloads(after) > reloads(before):
                break
            time.sleep(0.1)
        counts["steps"] += 1
        if after is None or reloads(after) <= reloads(before):
            counts["stuck"] += 1
            continue
        valid = variant in EXPECT
        counts["valid" if valid else "invalid"] += 1
        ok = value(after, "canary_config_last_reload_successful")
        if ok != (1 if valid else 0):
            counts["wrong_status"] += 1
        if valid:
            _, changer, by_defaults = EXPECT[variant]
            if (value(after, "canary_probe_interval_seconds", "changer") != changer or
                    value(after, "canary_probe_interval_seconds", "by-defaults") != by_defaults):
                counts["settings_not_taken"] += 1
        runs = runs_by_probe(after)
        if prev_runs is not None:
            for probe, v in runs.items():
                if probe in prev_runs and v < prev_runs[probe]:
                    counts["counter_went_down"] += 1
        prev_runs = runs
    elapsed = time.monotonic() - started
    rc = d.proc.poll()
    if rc is None:
        rc = common.stop(d.proc)
        common.forget(d.proc)
    else:
        crashed = True

    log(f"reload storm: {elapsed:.0f} s, {PROBES + 2} probes at 1-5 s "
        f"({PROBES} runs/s of load)")
    for k, v in counts.items():
        log(f"  {k:26} {v}")
    log(f"  {'slowest /metrics (s)':26} {slowest_metrics:.3f}")
    log(f"  {'crashed':26} {crashed}")
    log(f"  {'exit status on SIGTERM':26} {rc}")
    met = (not crashed and rc == 0 and counts["stuck"] == 0 and counts["wrong_status"] == 0
           and counts["counter_went_down"] == 0 and counts["settings_not_taken"] == 0
           and counts["metrics_failures"] == 0 and counts["steps"] > 0)
    log(f"reload storm targets {'met' if met else 'NOT met'}")


def _post(url):
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with common._opener.open(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


if __name__ == "__main__":
    main()
