#!/usr/bin/env python3
"""Prints the summary table of the benchmark results in a directory
(the JSON files bench_cpu.py, bench_latency.py and bench_scale.py write, and
bench_websocket.py's and bench_agent.py's when they ran).

usage: report.py RESULTS_DIR
"""

import json
import math
import os
import sys


def load(d, name):
    try:
        with open(os.path.join(d, f"{name}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def sms(x, digits=2):
    return f"{x * 1e3:+.{digits}f} ms" if num(x) else "n/a"


def pms(x, digits=2):
    return f"{x * 1e3:.{digits}f} ms" if num(x) else "n/a"


def mib(x):
    return f"{x / 2**20:.0f} MiB" if num(x) else "n/a"


def mb(x):
    return f"{x / 1e6:.0f} MB" if num(x) else "n/a"


def yes(ok, extra=""):
    return ("yes" if ok else "no") + (f" ({extra})" if extra else "")


def rows_a(a):
    if not a:
        return [("(a) CPU per probe @1000/s", "not run", "", "<= 0.12x", "n/a")], []
    c, b, f = a["canaryd"], a["blackbox"], a.get("floor")
    rows = [(f"(a) CPU per probe @{a['rate']}/s", f"{c['us_per_probe']:.0f} µs",
             f"blackbox {b['us_per_probe']:.0f} µs", f"<= {a['target_ratio']}x",
             yes(a.get("met_ratio", a["met"]), f"{a['ratio_probing_only']:.2f}x"))]
    if f:  # results from before the floor have no such row
        rows.append((f"(a) CPU per probe vs floor", f"{c['us_per_probe']:.0f} µs",
                     f"floor {f['cpu_us_per_request']:.0f} µs", f"<= {a['target_floor']:g}x",
                     yes(a["met_floor"], f"{a['floor_multiple']:.2f}x")))
    floor = (f" floor (get_floor, raw sockets + epoll): {f['achieved_rate']:.0f} requests/s, "
             f"{f['failures']} failures, nginx {f['cpu_pid_us_per_request']:.0f} µs/request."
             if f else "")
    notes = [f"(a) probing only; a /metrics scrape every 15 s adds "
             f"{c['scrape_us_per_probe_at_15s']:.0f} µs/probe "
             f"({c['scrape_bytes'] / 1e6:.1f} MB each; {a['ratio']:.2f}x blackbox with it); "
             f"{c['probes_per_second']:.0f} probes/s, "
             f"{c['failures']:.0f} failures. blackbox: {b['probes_per_second']:.0f} probes/s, "
             f"{b['errors']} errors. nginx: {c['nginx_us_per_probe']:.0f} µs/probe (canaryd) vs "
             f"{b['nginx_us_per_probe']:.0f} µs/probe (blackbox)." + floor]
    return rows, notes


def rows_b(b):
    if not b:
        return [("(b) latency error", "not run", "", "", "n/a")], []
    rows, notes = [], []
    for key, label in (("idle", "idle"), ("loaded", f"{b['background_rate']}/s bg")):
        p = b[key]
        rows.append((f"(b) err p50 vs curl, {label}", sms(p["error_p50"]),
                     f"curl p50 {pms(p['reference']['p50'])}", "<= 0.1 ms",
                     yes(p["met_p50"])))
        rows.append((f"(b) err p99 vs curl, {label}", sms(p["error_p99"]),
                     f"curl p99 {pms(p['reference']['p99'])}", "<= 0.5 ms",
                     yes(p["met_p99"])))
    for key, label in (("idle", "idle"), ("loaded", f"{b['background_rate']}/s bg")):
        w = b[key].get("wire")
        if not w:
            continue
        rows.append((f"(b) err p50 vs wire, {label}", sms(w["error_p50"]),
                     f"curl {sms(w['reference_error_p50'])}", "<= 0.1 ms*",
                     yes(w["met_p50"], f"{sms(w['excess_error_p50'])} beyond curl")))
        rows.append((f"(b) err p99 vs wire, {label}", sms(w["error_p99"]),
                     f"curl {sms(w['reference_error_p99'])}", "<= 0.5 ms*",
                     yes(w["met_p99"], f"{sms(w['excess_error_p99'])} beyond curl")))
    notes.append("(b) 'vs curl': p50(canaryd reported) - p50(libcurl time_total of the same URL, "
                 "fresh connections, same window), same at p99 (the issue's method). 'vs wire': "
                 "per run, reported - what the network and nginx took for that very run "
                 "(packet timestamps on lo); * judged on canaryd's error beyond a direct curl's "
                 "own error against the same truth. blackbox (issue): +0.35 ms p50, up to "
                 "+2.5 ms p99 under load.")
    return rows, notes


def rows_c(c):
    if not c:
        return [("(c) scale", "not run", "", "", "n/a")], []
    f, base = c["full"], c["baseline"]
    n = f"{f['probes']:,}"
    src = c["lag_source"]
    bl = base.get(src, {})
    lb = ">= " if c.get("lag_lower_bound") else ""
    rows = [
        (f"(c) sched lag p50 @{n} ({src})", lb + pms(c["lag_p50"]),
         f"@100: {pms(bl.get('p50'))}", "", ""),
        (f"(c) sched lag p99 @{n} ({src})", lb + pms(c["lag_p99"]),
         f"@100: {pms(bl.get('p99'))}",
         "< 50 ms", yes(c["met_lag"], f"{c['lag_p99'] / 0.05:.1f}x the target"
                        if num(c["lag_p99"]) and not c["met_lag"] else "")),
        (f"(c) RSS max @{n}", mb(f["rss_max"]), f"@100: {mb(base['rss_max'])}", "< 300 MB",
         yes(c["met_rss"], f"{(f['rss_max'] - c['target_rss']) / 1e6:+.0f} MB"
             if not c["met_rss"] else "")),
        (f"(c) threads @100 -> @{n}", f"{f['threads_max']}", f"@100: {base['threads_max']}",
         "no growth", yes(c["met_threads"])),
        ("(c) hung runs counted as timeout", f"{f['hung_failures_total']}/{f['hung_runs_total']}",
         "", "all", yes(c["met_timeouts"])),
        ("(c) healthy probes' failures", f"{f['healthy_failures_total']} of "
         f"{f['healthy_runs_total']}", f"@100: {base['healthy_failures_total']}", "0",
         yes(c["met_healthy"])),
        (f"(c) /metrics served @{n}", "yes" if f["metrics"]["ok"] else "no",
         f"@100: {base['metrics'].get('bytes', 0) / 1e6:.1f} MB", "served",
         yes(f["metrics"]["ok"])),
    ]
    notes = [f"(c) lag '{src}': " + ("delta of canary_scheduler_lag_seconds (all probes)"
                                      if src == "hist" else
                                      "the healthy probes' SYNs on lo against their schedule "
                                      "(the histogram is in /metrics, which could not be served)")
             + ("; the loop is saturated, lags of a whole interval or more wrap around, so "
                "'>=' marks lower bounds" if lb else "")
             + f"; at 100 probes histogram p99 {pms(base.get('hist', {}).get('p99'))} vs wire "
             f"p99 {pms(base.get('wire', {}).get('p99'))}. RSS right after loading {n} probes: "
             f"{mb(f['rss_ready'])}; peak after one /api/v1/state + one /metrics fetch: "
             f"{mb(f['hwm_after_metrics'])}. Hung runs: {f['hung_runs_per_s']:.0f}/s "
             f"(timeout = interval, so every other slot is skipped)."]
    return rows, notes


def rows_w(w):
    if not w:  # optional (run_all.sh w): no "not run" row
        return [], []
    rows, notes = [], []
    for form, r in w["forms"].items():
        tag = f"(w) WS {w['probes']} x {r['connections']} conn"
        per_1k = r.get("cpu_pct_per_1k_hs")
        rows.append((f"{tag}: CPU per 1k hs/s", f"{per_1k:.1f} %" if num(per_1k) else "n/a",
                     (f"{r['handshakes_per_s']:,.0f}" if num(r["handshakes_per_s"]) else "n/a")
                     + f" of {r['expected_handshakes_per_s']:,.0f} hs/s",
                     "", "not asserted"))
        rows.append((f"{tag}: RSS max, lag p99", f"{mib(r['rss_max'])}, {pms(r['lag_p99'])}",
                     f"fixture CPU {' + '.join(f'{x:.0f} %' for x in r['fixture_cpu_pct'])}",
                     "", "not asserted"))
        if not num(r["runs"]):
            notes.append(f"(w) {form}: canaryd could not serve /metrics at the end of the window; "
                         f"the fixtures completed {r['fixture_101_per_s']:,.0f} handshakes/s.")
            continue
        notes.append(f"(w) {form}: {r['failures']:.0f} failed runs of {r['runs']:.0f} "
                     f"({', '.join(f'{k} {v}' for k, v in r['failure_reasons'].items()) or '-'}), "
                     f"{r['skipped']:.0f} skipped slots, canaryd CPU {r['cpu_pct']:.1f} %, "
                     f"fds max {r['fds_max']:,}, machine busy {r['machine_busy_pct']:.0f} % "
                     "of 2 cores.")
    return rows, notes


def rows_g(g):
    if not g:  # optional (run_all.sh g): no "not run" row
        return [], []
    st, e, w = g["settings"], g["error_vs_injected"], g.get("wire") or {}
    own = w.get("canaryd_own") or {}
    late = w.get("fixture_late") or {}
    tag = f"(g) agent ~{g['fixture_open_mean']:,.0f} open"
    rows = [
        (f"{tag}: event err p50", pms(e["median"]), f"canaryd own {pms(own.get('median'))}",
         "< 2 ms", yes(g["met_median"]) if num(e["median"]) else "n/a"),
        (f"{tag}: event err max", pms(e["max"]), f"canaryd own {pms(own.get('max'))}",
         "< 10 ms", yes(g["met_max"]) if num(e["max"]) else "n/a"),
        (f"{tag}: CPU, RSS max", f"{g['cpu_pct']:.1f} %, {mib(g['rss_max'])}",
         f"fixture CPU {' + '.join(f'{x:.0f} %' for x in g['fixture_cpu_pct'])}",
         "", "not asserted"),
    ]
    runs = f"{g['runs_per_s']:,.0f}" if num(g["runs_per_s"]) else "n/a"
    fails = f"{g['failures']:.0f}" if num(g["failures"]) else "n/a"
    notes = [f"(g) {st['probes']} agent_pipeline probes at {st['interval']:g} s, events "
             f"{st['delay_ms']} ms apart: {runs} conversations/s, {fails} failed runs "
             f"({', '.join(f'{k} {v}' for k, v in g['failure_reasons'].items()) or '-'}), "
             f"lag p99 {pms(g['lag_p99'])}. Error = canaryd's per-event phase - the injected "
             f"delay, {e['n']:,} samples (mean {pms(e['mean'])}, p99 {pms(e['p99'])}); of it "
             f"the fixture's lateness on the wire: p50 {pms(late.get('median'))}, max "
             f"{pms(late.get('max'))}. Machine busy {g['machine_busy_pct']:.0f} % of 2 cores."]
    return rows, notes


def rows_k(k):
    if not k:  # optional (run_all.sh k): no "not run" row
        return [], []
    rows, notes = [], []
    for w in ("w1", "w2"):
        r = k.get(w)
        if r:
            rows.append((f"(k) capacity, workers {r['workers']}", f"{r['runs_per_s']:,.0f} runs/s",
                         f"lag p99 {pms(r['lag_p99'])}, {r['cpu_us_per_run']:.0f} µs/run",
                         "lag p99 < 50 ms", "measured"))
    if num(k.get("scaling")):
        rows.append(("(k) scaling workers 1 -> 2", f"{k['scaling']:.2f}x",
                     f"16 cores ~{k['projection_16_cores']:,.0f} runs/s (projection)", "", "-"))
    o = k.get("overload")
    if o:
        rows.append(("(k) overload 2x: healthy failures", f"{o['healthy_failures_total']}",
                     f"skipped {o['skipped']}", "0", yes(o["healthy_failures_total"] == 0)))
    h = k.get("hung")
    if h:
        rows.append((f"(k) {h['hung']:,} hung: lag p99, RSS", f"{pms(h['lag_p99'])}, "
                     f"{mib(h['rss_max'])}", f"threads {h['threads_max']}, healthy failures "
                     f"{h['healthy_failures_total']}", "< 10 ms, < 400 MB",
                     yes(h["lag_p99"] < 0.010 and h["rss_max"] < 400e6
                         and h["healthy_failures_total"] == 0)))
    return rows, notes


def main():
    d = sys.argv[1]
    rows, notes = [], []
    for fn, name in ((rows_a, "a_cpu"), (rows_b, "b_latency"), (rows_c, "c_scale"),
                     (rows_k, "c_capacity"), (rows_w, "websocket"), (rows_g, "agent")):
        r, n = fn(load(d, name))
        rows += r
        notes += n
    header = ("benchmark", "canaryd", "reference", "target", "met")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(5)]
    line = lambda r: "  ".join(str(x).ljust(widths[i]) for i, x in enumerate(r)).rstrip()
    print(line(header))
    for r in rows:
        print(line(r))
    print()
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
