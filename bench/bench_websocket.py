#!/usr/bin/env python3
"""WebSocket probes at scale: 1,000 `type: websocket` probes at a 1 s interval
(opening handshake + subprotocol negotiation + close handshake, a fresh
connection each) against the local fixture (tests/fixtures/fake_platform.py)
for a measured window (60 s by default, after a warm-up); then the same load in
`connections: 7` form (1,000 probes, 7 connections per run).

For each form it reports the handshakes/s canaryd achieved (deltas of
canary_probe_runs_total x connections, and the fixture's own count of 101s),
failures by reason and skipped slots, canaryd's CPU % (utime+stime over the
window / wall time) and that CPU normalised per 1,000 handshakes/s, RSS (end
and max sampled every second), p50/p99 scheduler lag (deltas of
canary_scheduler_lag_seconds over the window), and the fixture's CPU %, so a
reader sees whether the Python fixture rather than canaryd is the limit.
Targets are not asserted: figures only.

usage: bench_websocket.py [plain|c7|both]      (default both; or BENCH_WS_FORMS)

Knobs: BENCH_WS_PROBES (1000), BENCH_WS_WINDOW (s, 60), BENCH_WARMUP (s, 10),
BENCH_WS_FIXTURES (fixture processes, 1-3, default 2; probes are spread over
them round-robin).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

FORMS = {"plain": 1, "c7": 7}  # form -> connections per run
INTERVAL_S = 1.0
TIMEOUT = "1s"  # <= interval; canaryd keeps a tenth of it to hold the next slot
SATURATED_PCT = 90.0  # a single-threaded fixture above this share of a core is the limit
METRICS = ("canary_scheduler_lag_seconds", "canary_probe_runs_total",
           "canary_probe_failures_total", "canary_scheduler_skipped_runs_total",
           "canary_ws_connections")


def parse_forms(argv):
    args = argv or os.environ.get("BENCH_WS_FORMS", "both").replace(",", " ").split()
    forms = []
    for a in args:
        if a == "both":
            forms += ["plain", "c7"]
        elif a in FORMS:
            forms.append(a)
        else:
            raise SystemExit(f"bench_websocket.py: unknown form {a!r} (use plain, c7 or both)")
    return list(dict.fromkeys(forms))


def ws_config(listen_port, n_probes, fixture_ports, connections):
    lines = ["global:", f"  listen: 127.0.0.1:{listen_port}", "  labels: {env: bench}",
             f"  defaults: {{interval: 1s, timeout: {TIMEOUT}}}", "probes:"]
    for i in range(n_probes):
        port = fixture_ports[i % len(fixture_ports)]
        lines += [f"  - name: ws-{i:04d}", "    type: websocket", "    interval: 1s",
                  f"    timeout: {TIMEOUT}", "    websocket:",
                  f"      url: ws://127.0.0.1:{port}/ws?subprotocol=first",
                  "      subprotocols: [jwt-auth, other]",
                  "      expect_subprotocol: jwt-auth"]
        if connections != 1:
            lines.append(f"      connections: {connections}")
    return "\n".join(lines) + "\n"


def run_form(form, n_probes, fixtures, warmup, window):
    conns = FORMS[form]
    port = c.free_port()
    text = ws_config(port, n_probes, [p for _, p in fixtures], conns)
    c.check_config(f"websocket-{form}", text)
    c.log(f"\nwebsocket [{form}]: {n_probes} probes x {conns} connection(s) at 1s "
          f"(timeout {TIMEOUT}) on {len(fixtures)} fixture process(es); expecting "
          f"{n_probes * conns / INTERVAL_S:,.0f} handshakes/s; warm-up {warmup:.0f}s, "
          f"window {window:.0f}s")
    r = {"form": form, "connections": conns, "probes": n_probes,
         "expected_handshakes_per_s": n_probes * conns / INTERVAL_S}
    return c.run_daemon_against_fixtures(r, f"ws-{form}", text, fixtures,
                                         lambda d: measure(r, d, fixtures, warmup, window))


def measure(r, d, fixtures, warmup, window):
    conns = r["connections"]
    r["rss_ready"] = c.proc_status(d.pid)["VmRSS"]

    c.warm_up(d, warmup)

    fx0, tf0 = c.fixtures_stats(fixtures)
    s0 = c.try_scrape(d, METRICS)
    if s0 is None:
        raise RuntimeError("/metrics cannot be served at the start of the window")
    net0 = c.tcp_ext()
    win = c.Window(d, [p.pid for p, _ in fixtures])
    while win.elapsed() < window:
        time.sleep(min(1.0, max(0.05, window - win.elapsed())))
        c.ensure_alive(d, "window")
        win.sample()
    figures, net1 = win.close(), c.tcp_ext()
    s1 = c.try_scrape(d, METRICS)
    fx1, tf1 = c.fixtures_stats(fixtures)

    fx = {k: fx1.get(k, 0) - fx0.get(k, 0) for k in fx1}
    r.update(figures)
    r.update({
        "listen_overflows": net1["ListenOverflows"] - net0["ListenOverflows"],
        "fixture_attempts_per_s": fx.get("attempts_total", 0) / (tf1 - tf0),
        "fixture_101_per_s": fx.get("upgrades_total", 0) / (tf1 - tf0),
        "fixture_ends": {k: fx.get(k, 0) for k in
                         ("client_closes", "eofs", "server_closes", "drops", "protocol_errors")},
        "fixture_refused": {k: fx.get(k, 0) for k in
                            ("rejected_total", "invalid_total", "over_limit_total")},
        "metrics_bytes": s0[2],
        # Filled from the end-of-window scrape, if there was one.
        "runs": None, "runs_per_s": None, "handshakes_per_s": None, "failures": None,
        "failure_reasons": {}, "skipped": None, "lag_p50": None, "lag_p99": None,
        "last_run_conns_ok": None, "last_run_conns": None,
    })
    if s1 is not None:
        deltas = c.scrape_deltas(s0, s1)
        r.update(deltas)
        after = s1[0]
        r.update({
            "handshakes_per_s": deltas["runs_per_s"] * conns,
            # Gauges of each probe's last run, summed at the end of the window.
            "last_run_conns_ok": c.sum_samples(after, "canary_ws_connections_ok"),
            "last_run_conns": c.sum_samples(after, "canary_ws_connections_configured"),
        })
    hs, fx101 = r["handshakes_per_s"], r["fixture_101_per_s"]
    r["cpu_pct_per_1k_hs"] = r["cpu_pct"] / (hs / 1000.0) if hs else None
    r["cpu_pct_per_1k_101"] = r["cpu_pct"] / (fx101 / 1000.0) if fx101 else None


def print_table(results, n_fixtures):
    def row(label, f):
        return (label, [f(r) for r in results])

    rows = [
        row("probes x connections per run", lambda r: f"{r['probes']} x {r['connections']}"),
        row("handshakes/s expected", lambda r: c.num(r["expected_handshakes_per_s"])),
        row("handshakes/s achieved (runs x conns)", lambda r: c.num(r["handshakes_per_s"])),
        row("  fixture: upgrades / 101s per s", lambda r: f"{c.num(r['fixture_attempts_per_s'])}"
                                                         f" / {c.num(r['fixture_101_per_s'])}"),
        row("  accept-queue overflows (machine)", lambda r: c.num(r["listen_overflows"])),
        row("runs / failed runs in window",
            lambda r: f"{c.num(r['runs'])} / {c.num(r['failures'])}"),
        row("  failed runs by reason", lambda r: c.fmt_reasons(r["failure_reasons"])),
        row("  skipped slots", lambda r: c.num(r["skipped"])),
        row("  connections ok in each probe's last run",
            lambda r: f"{c.num(r['last_run_conns_ok'])} of {c.num(r['last_run_conns'])}"),
        row("canaryd CPU (of one core)", lambda r: c.num(r["cpu_pct"], ".1f", " %")),
        row("canaryd CPU per 1,000 handshakes/s",
            lambda r: c.num(r["cpu_pct_per_1k_hs"], ".1f", " %")),
        row("  per 1,000 fixture 101s/s", lambda r: c.num(r["cpu_pct_per_1k_101"], ".1f", " %")),
        row("canaryd RSS end / max", lambda r: f"{c.mib(r['rss_end'])} / {c.mib(r['rss_max'])}"),
        row("scheduler lag p50 / p99", lambda r: f"{c.ms(r['lag_p50'])} / {c.ms(r['lag_p99'])}"),
        row(f"fixture CPU ({n_fixtures} process(es), each)",
            lambda r: " + ".join(f"{x:.0f} %" for x in r["fixture_cpu_pct"])),
        row("machine CPU busy (2 cores = 100 %)",
            lambda r: c.num(r["machine_busy_pct"], ".1f", " %")),
        row("fixture: client close / EOF", lambda r: f"{r['fixture_ends']['client_closes']:,} / "
                                                     f"{r['fixture_ends']['eofs']:,}"),
        row("fixture WS open after canaryd stopped", lambda r: str(r["fixture_open_after"])),
        row("canaryd threads / fds end / fds max",
            lambda r: f"{r['threads']} / {r['fds_end']:,} / {r['fds_max']:,}"),
        row("canaryd log lines (warn+)", lambda r: str(r["log_lines"])),
    ]
    heads = [f"{r['form']} (conns {r['connections']})" for r in results]
    c.print_columns(f"websocket benchmark ({results[0]['probes']} probes at 1s, "
                    f"{results[0]['window_s']:.0f} s window)", heads, rows)
    for r in results:
        for n in notes(r):
            print(f"  [{r['form']}] {n}")
    print("  CPU per 1,000 handshakes/s = canaryd CPU % / (achieved handshakes/s / 1000); "
          "targets are not asserted (figures only).")


def notes(r):
    out = []
    if any(x >= SATURATED_PCT for x in r["fixture_cpu_pct"]):
        out.append("the fixture is saturated (a Python process at ~a full core): the "
                   "achieved rate is its limit as much as canaryd's")
    if r["machine_busy_pct"] >= 95.0:
        out.append("both cores are busy: canaryd and the fixture compete for CPU")
    if r["handshakes_per_s"] is None:
        out.append("canaryd could not serve /metrics at the end of the window")
    elif r["handshakes_per_s"] < 0.95 * r["expected_handshakes_per_s"]:
        out.append(f"achieved {r['handshakes_per_s'] / r['expected_handshakes_per_s']:.0%}"
                   " of the expected rate")
    if r["fds_max"] > r["probes"] * r["connections"] + 100:
        out.append(f"canaryd held up to {r['fds_max']:,} fds for at most "
                   f"{r['probes'] * r['connections']:,} connections in flight: "
                   "connections outlive their runs")
    if r["handshakes_per_s"] and r["fixture_101_per_s"] < 0.9 * r["handshakes_per_s"]:
        out.append("the fixture completed fewer handshakes than canaryd's runs x "
                   "connections: failed runs count their connections as attempted")
    if r["fixture_open_after"]:
        out.append(f"{r['fixture_open_after']} WebSocket(s) still open on the fixture "
                   "10 s after canaryd stopped")
    if r["log_tail"]:
        out.append("canaryd log ends with: " + " | ".join(r["log_tail"][-3:]))
    return out


def main():
    forms = parse_forms(sys.argv[1:])
    c.raise_fd_limit()
    n_probes = int(os.environ.get("BENCH_WS_PROBES", 1000))
    window = c.env_seconds("BENCH_WS_WINDOW", 60)
    warmup = c.env_seconds("BENCH_WARMUP", 10)
    n_fix = min(3, max(1, int(os.environ.get("BENCH_WS_FIXTURES", 2))))
    if not os.path.exists(c.CANARYD):
        raise SystemExit(f"bench_websocket.py: {c.CANARYD} missing (bench/run_all.sh builds it)")

    fixtures = [c.start_fake_platform(f"ws{i}") for i in range(n_fix)]
    c.log(f"fixtures: {', '.join(f'pid {p.pid} :{port}' for p, port in fixtures)}")
    results, failed = [], []
    for form in forms:
        try:
            r = run_form(form, n_probes, fixtures, warmup, window)
        except Exception as e:  # report the other form anyway
            c.log(f"  [{form}] failed: {e}")
            failed.append(form)
            continue
        results.append(r)
        c.log(f"  {c.num(r['handshakes_per_s'])} handshakes/s, {c.num(r['failures'])} failed runs "
              f"({c.fmt_reasons(r['failure_reasons'])}), canaryd CPU {r['cpu_pct']:.1f} %, "
              f"fixture CPU {' + '.join(f'{x:.0f} %' for x in r['fixture_cpu_pct'])}, "
              f"lag p99 {c.ms(r['lag_p99'])}")
    if results:
        print_table(results, n_fix)
        c.save_result("websocket", {"probes": n_probes, "fixtures": n_fix, "timeout": TIMEOUT,
                                    "forms": {r["form"]: r for r in results}})
    if failed:
        print(f"bench_websocket.py: did not run to the end: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
