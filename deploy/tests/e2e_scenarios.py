#!/usr/bin/env python3
"""The end-to-end test's signal-fidelity scenarios (e2e_alerting.py runs them):
every page is real and timely, and nothing else pages.

  * Flapping: four probes whose targets reset one connection in FLAP_EVERY for
    the whole test, two without retries (one failed run in 20) and two with
    `retries: {attempts: 2}` (the retry passes). Neither may notify anything.
  * A slow but passing database: every answer of PostgreSQL is held
    DB_DELAY s, so runs take ~0.7 s and still pass. The mean-latency P1
    (CanaryDatabaseLatencyHigh) and the p95 P2 (CanaryLatencyP95High, read from
    the duration histogram's buckets, so the metrics mode matters) must
    notify; no failure alert may.
  * canaryd itself stopped (both replicas): CanarydDown must notify, and no
    probe alert may even go pending, because a stopped canaryd's series are
    stale, not failing.

A mixin of E2E: it uses its Prometheus and notification helpers."""

import time

from e2e_incidents import RESOLVE_TIMEOUT, SHORT_WINDOW
from e2e_support import fmt_alert, log, matches, notifications, wait_until

DB_PROBE, DB_CATEGORY = "orders-db", "database"
DB_DELAY = 0.35          # s the slow database holds each answer (a run waits for two)
DB_LATENCY_HIGH = 0.4    # s, database_latency_high's threshold (mean run time)
LATENCY_P95 = 0.5        # s, latency_p95_high's threshold: a bound of the basic buckets
LATENCY_ALERTS = ("CanaryDatabaseLatencyHigh", "CanaryLatencyP95High")
FLAP_CATEGORY = "flaky"
FLAP_EVERY = 20
FLAP_PROBES = ("flap-http", "flap-http-retried", "flap-ws", "flap-ws-retried")

LATENCY_TIMEOUT = 150       # slow database -> latency notifications (expected ~55-65 s)
CANARYD_DOWN_TIMEOUT = 120  # canaryd stopped -> CanarydDown notification (expected ~55 s)
QUIET_TIMEOUT = 90          # every probe alert gone before canaryd is stopped


class SignalScenarios:

    def by_probe(self, q):
        return {r["metric"].get("probe"): float(r["value"][1]) for r in self.prom_query(q)}

    def sum_value(self, q):
        res = self.prom_query(q)
        return float(res[0]["value"][1]) if res else 0.0

    # ---- a slow but passing database

    def slow_database_begin(self):
        log(f"=== slow database: PostgreSQL's answers held {DB_DELAY * 1000:.0f} ms (runs still"
            f" pass); this runs alongside incident 1")
        self.db_failures_before = self.sum_value(
            f'sum(canary_probe_failures_total{{probe="{DB_PROBE}"}})')
        self.t_slow, self.t_slow_wall = time.monotonic(), time.time()
        self.slow_db.slow.set()

    def slow_database_finish(self):
        title = "slow database"
        for name, severity, receiver in (("CanaryDatabaseLatencyHigh", "P1", "high-priority"),
                                         ("CanaryLatencyP95High", "P2", "ticket")):
            want = {"alertname": name, "severity": severity, "probe": DB_PROBE,
                    "category": DB_CATEGORY}
            t, got, alert = self.await_notification(
                want, "firing", self.t_slow, LATENCY_TIMEOUT, f"the {name} notification",
                DB_PROBE)
            log(f"ok   {fmt_alert(alert['labels'])} reached receiver {got!r}"
                f" {t - self.t_slow:.1f}s after the database slowed down;"
                f" summary: {alert['annotations'].get('summary')}")
            if got != receiver:
                self.fail(f"{name} went to receiver {got!r}, not {receiver!r}")
            self.figures.append((title, f"slow -> {name} ({severity}) notified",
                                 f"{t - self.t_slow:.1f} s"))

        mean = self.prom_query(f'canary:probe_latency_seconds:mean_{SHORT_WINDOW}{{probe="{DB_PROBE}"}}')
        p95 = self.prom_query(f'canary:probe_latency_seconds:p95_{SHORT_WINDOW}{{probe="{DB_PROBE}"}}')
        log(f"     {DB_PROBE}: mean run time over {SHORT_WINDOW}"
            f" {float(mean[0]['value'][1]) if mean else float('nan'):.3f}s, p95"
            f" {float(p95[0]['value'][1]) if p95 else float('nan'):.3f}s")
        failures = self.sum_value(f'sum(canary_probe_failures_total{{probe="{DB_PROBE}"}})')
        if failures != self.db_failures_before:
            self.fail(f"{DB_PROBE} failed {failures - self.db_failures_before:.0f} runs while"
                      f" slow: the scenario is slow-but-passing")
        else:
            log(f"ok   {DB_PROBE} passed every run while slow")

        # No failure alert about it: only the latency alerts, in Prometheus and
        # at the webhook.
        sel = f'ALERTS{{probe="{DB_PROBE}"}} or ALERTS{{category="{DB_CATEGORY}"}}'
        seen = {r["metric"].get("alertname") for r in
                self.prom_range(sel, self.t_slow_wall, time.time())}
        wrong = sorted(seen - set(LATENCY_ALERTS))
        if wrong:
            self.fail(f"the slow database raised failure alerts: {', '.join(wrong)}")
        else:
            log(f"ok   the slow database raised only latency alerts: {', '.join(sorted(seen))}")
        for _, receiver, a in notifications():
            labels = a["labels"]
            if (labels.get("probe") == DB_PROBE or labels.get("category") == DB_CATEGORY) \
                    and labels.get("alertname") not in LATENCY_ALERTS:
                self.fail(f"{fmt_alert(labels)} was notified to {receiver!r}")

        log("repairing the database: answers no longer held")
        t_fix = time.monotonic()
        self.slow_db.slow.clear()
        want = {"alertname": "CanaryDatabaseLatencyHigh", "probe": DB_PROBE}
        t, _, _ = self.await_notification(want, "resolved", t_fix, RESOLVE_TIMEOUT,
                                          "the CanaryDatabaseLatencyHigh resolution", DB_PROBE)
        log(f"ok   CanaryDatabaseLatencyHigh resolved {t - t_fix:.1f}s after the repair")
        self.figures.append((title, "repair -> CanaryDatabaseLatencyHigh resolved",
                             f"{t - t_fix:.1f} s"))

    # ---- flapping targets, with and without retries

    def check_flapping(self, since_wall):
        title = f"flap (1 run in {FLAP_EVERY})"
        log(f"=== flapping: {', '.join(FLAP_PROBES)} have flapped for"
            f" {time.time() - since_wall:.0f}s")
        probes = 'probe=~"flap-.+"'
        runs = self.by_probe(f"sum by (probe) (canary_probe_runs_total{{{probes}}})")
        fails = self.by_probe(f"sum by (probe) (canary_probe_failures_total{{{probes}}})")
        saved = self.by_probe(f"sum by (probe) (canary_probe_retry_successes_total{{{probes}}})")
        for name in FLAP_PROBES:
            n, f, s = runs.get(name, 0), fails.get(name, 0), saved.get(name, 0)
            dropped = self.flappers[name].dropped
            if name.endswith("-retried"):
                ok = f == 0 and s >= 1
                log(f"{'ok  ' if ok else 'FAIL'} {name}: {dropped} connections reset, {n:.0f}"
                    f" runs, {s:.0f} passed on the retry, {f:.0f} failed")
                if not ok:
                    self.fail(f"{name} with retries: {f:.0f} failed runs and {s:.0f} passed on"
                              f" a retry (want 0 and at least 1)")
            else:
                ok = f >= 1
                log(f"{'ok  ' if ok else 'FAIL'} {name}: {dropped} connections reset, {n:.0f}"
                    f" runs, {f:.0f} failed")
                if not ok:
                    self.fail(f"{name} never failed a run: the flap did not reach canaryd")
            self.figures.append((title, f"{name}: runs / failed / passed on retry",
                                 f"{n:.0f} / {f:.0f} / {s:.0f}"))

        sel = f'ALERTS{{{probes}}} or ALERTS{{category="{FLAP_CATEGORY}"}}'
        states = sorted({(r["metric"].get("alertname"), r["metric"].get("alertstate"))
                         for r in self.prom_range(sel, since_wall, time.time())})
        firing = [f"{n} ({s})" for n, s in states if s == "firing"]
        if firing:
            self.fail(f"alerts fired about the flapping probes: {', '.join(firing)}")
        elif states:
            log(f"     alerts pending (never firing) about the flapping probes:"
                f" {', '.join(f'{n} ({s})' for n, s in states)}")
        else:
            log("ok   no alert about the flapping probes was ever pending or firing")
        sent = [(r, a) for _, r, a in notifications()
                if a["labels"].get("probe") in FLAP_PROBES
                or a["labels"].get("category") == FLAP_CATEGORY]
        for r, a in sent:
            self.fail(f"{fmt_alert(a['labels'])} ({a.get('status')}) was notified to {r!r}")
        if not sent:
            log("ok   no notification about the flapping probes")
        self.figures.append((title, "notifications", str(len(sent))))

    # ---- canaryd itself stopped

    def canaryd_stopped(self):
        title = "canaryd stopped"
        log("=== canaryd stopped: waiting for every probe alert to resolve first")
        wait_until(lambda: not [a for a in self.prom_alerts() if a["labels"].get("probe")
                                or a["labels"].get("category")],
                   QUIET_TIMEOUT, "no probe or category alert pending or firing",
                   progress=self.prom_summary)
        t_stop, t_stop_wall = time.monotonic(), time.time()
        for child in self.canaryds:
            child.stop()
        want = {"alertname": "CanarydDown", "severity": "P1"}
        t, receiver, alert = self.await_notification(
            want, "firing", t_stop, CANARYD_DOWN_TIMEOUT, "the CanarydDown notification", None)
        log(f"ok   {fmt_alert(alert['labels'])} reached receiver {receiver!r}"
            f" {t - t_stop:.1f}s after canaryd stopped")
        if receiver != "high-priority":
            self.fail(f"CanarydDown went to receiver {receiver!r}, not 'high-priority'")
        self.figures.append((title, "stop -> CanarydDown (P1) notified", f"{t - t_stop:.1f} s"))
        time.sleep(2)  # the other replica's alert, if it came in a second notification
        down = {a["labels"].get("instance") for t2, _, a in notifications()
                if t2 >= t_stop and a.get("status") == "firing" and matches(a["labels"], want)}
        expected = {f"127.0.0.1:{p}" for p in self.canaryd_ports}
        if down != expected:
            self.fail(f"CanarydDown notified for {sorted(down)}, want {sorted(expected)}")
        else:
            log(f"ok   CanarydDown notified for both replicas: {', '.join(sorted(down))}")

        # By now every probe alert's `for` has passed many times over.
        ratios = self.prom_query(f"canary:probe_success:ratio_{SHORT_WINDOW}")
        if ratios:
            self.fail(f"{len(ratios)} success ratios still computed from a stopped canaryd")
        else:
            log("ok   no success ratio is computed from the stopped canaryd's stale series")
        active = sorted({(r["metric"].get("alertname"),
                          r["metric"].get("probe") or r["metric"].get("category"),
                          r["metric"].get("alertstate"))
                         for r in self.prom_range('ALERTS{probe=~".+"} or ALERTS{category=~".+"}',
                                                  t_stop_wall + 2, time.time())})
        if active:
            self.fail("probe alerts while canaryd was stopped: "
                      + ", ".join(f"{n}{{{p}}} {s}" for n, p, s in active))
        else:
            log("ok   no probe alert was pending or firing while canaryd was stopped")
        sent = [(r, a) for t2, r, a in notifications()
                if t2 >= t_stop and a.get("status") == "firing"
                and (a["labels"].get("probe") or a["labels"].get("category"))]
        for r, a in sent:
            self.fail(f"{fmt_alert(a['labels'])} was notified to {r!r} while canaryd was stopped")
        if not sent:
            log("ok   no probe alert was notified while canaryd was stopped")

    def print_figures(self):
        log("--- fault-to-notification figures"
            f" (metrics detail {self.detail}; Prometheus evaluates every 1 s)")
        width = max(len(f"{s}: {w}") for s, w, _ in self.figures) if self.figures else 0
        for scenario, what, value in self.figures:
            print(f"    {f'{scenario}: {what}':<{width}}  {value}", flush=True)

