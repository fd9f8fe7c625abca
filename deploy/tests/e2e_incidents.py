#!/usr/bin/env python3
"""The end-to-end test's P0 incidents (e2e_alerting.py runs them): break a
target, wait for the P0 page and check its timing, check that the P1/P2 alerts
it explains are muted in Alertmanager and never notified, check that the HA
pair pages once, repair, wait for the resolution. Also the timeline constants
that the test's configs and checks share. A mixin of E2E: it uses its
Prometheus and Alertmanager helpers."""

import json
import re
import time

from e2e_support import (GROUP_INTERVAL, TARGET_GROUP_WAIT, T0, Failure, Sink,
                         check_total_deadline, fmt_alert, log, matches, mono_of, mono_wall,
                         notifications, wait_until)

SHORT_WINDOW, WINDOW_S = "20s", 20  # the rules' short window
ENV, LOCATION = "e2e", "local"
REDIS_PROBE, REDIS_CATEGORY = "cache", "infrastructure"
WS_PROBE, WS_CATEGORY = "chat-ws", "chat"
HTTP_PROBE, HTTP_CATEGORY = "api-health", "api"
ALERT_FOR = 10           # `for` of the alerts this test exercises (s)
EVAL_INTERVAL = 1        # Prometheus's evaluation and scrape interval (s)
PROBE_INTERVAL = 1       # the probes' default interval (s)
FLUSH_MARGIN = 5         # s after a group's expected first flush
FLUSH_EXTRA_WAIT = 15    # s more for a flush that Alertmanager's log does not show yet

# Bounds (seconds).
BASELINE_TIMEOUT = 60   # every probe passing, in Prometheus, no alert firing
PAGE_TIMEOUT = 120      # break -> P0 notification (expected ~35-50 s)
INHIBIT_TIMEOUT = 45    # P0 notification -> P1/P2 seen suppressed
RESOLVE_TIMEOUT = 90    # repair -> resolved notification (expected ~15-25 s)


class P0Incidents:

    FLUSH_LINE = re.compile(
        r'^ts=(\S+) .*aggrGroup="((?:[^"\\]|\\.)*)" msg=flushing alerts=\[(.*)\]')

    def am_flushes(self, labels, since, until):
        """How often Alertmanager's log says it flushed the group holding an alert
        with these labels, with the alert active, between two wall times; None
        if the log has no flush lines at all (another log format)."""
        try:
            with open(self.am_log, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return None
        found, n = False, 0
        keys = [f'{k}=\\"{v}\\"' for k, v in sorted(labels.items())
                if k in ("alertname", "probe", "category", "env")]
        for line in lines:
            m = self.FLUSH_LINE.match(line)
            if not m:
                continue
            found = True
            group, alerts = m.group(2), m.group(3)
            if not all(k in group for k in keys) or "[active]" not in alerts:
                continue
            if since <= mono_wall(m.group(1)) <= until:
                n += 1
        return n if found else None


    # ---- one incident

    def related(self, labels, probe, category):
        """A P1/P2 alert about this probe or its category (what the P0 must mute)."""
        return (labels.get("severity") in ("P1", "P2") and labels.get("env") == ENV
                and labels.get("location") == LOCATION
                and (labels.get("probe") == probe or labels.get("category") == category))

    def await_notification(self, want, status, since, timeout, what, probe):
        """The first webhook notification after `since` with this status and labels."""
        def found():
            for t, receiver, a in notifications():
                if t >= since and a.get("status") == status and matches(a["labels"], want):
                    return t, receiver, a
            return None

        return wait_until(
            found, timeout, what,
            progress=lambda: (f"ratio {probe}={self.ratio(probe)}; " if probe else "")
            + self.prom_summary())

    def incident(self, title, p0, probe, category, expected_muted, break_fn, repair_fn):
        log(f"=== {title}")
        scenario = title.split(":", 1)[-1].strip()
        want = {"alertname": p0, "severity": "P0", "probe": probe, "category": category,
                "env": ENV, "location": LOCATION}
        t_break, t_break_wall = time.monotonic(), time.time()
        break_fn()

        # 1. The page.
        t, receiver, alert = self.await_notification(
            want, "firing", t_break, PAGE_TIMEOUT, f"the {p0} page", probe)
        t_page = t
        log(f"ok   {fmt_alert(alert['labels'])} reached receiver {receiver!r}"
            f" {t - t_break:.1f}s after the fault; summary: {alert['annotations'].get('summary')}")
        if receiver != "pager":
            self.fail(f"{p0} went to receiver {receiver!r}, not 'pager'")
        self.check_fired_in_time(scenario, p0, probe, t_break, t_break_wall)
        self.figures.append((scenario, f"fault -> {p0} page", f"{t - t_break:.1f} s"))

        # 2. Inhibition: the related P1/P2 alerts are suppressed by the P0.
        state = {}

        def muted():
            am = self.am_alerts()
            src = [a for a in am if matches(a["labels"], want)]
            if not src or src[0]["status"]["state"] != "active":
                return False
            fp = src[0]["fingerprint"]
            state["p0"] = src[0]
            firing = [a["labels"] for a in self.prom_alerts() if a["state"] == "firing"]
            related_am = [a for a in am if self.related(a["labels"], probe, category)]
            state.update(fp=fp, related=related_am, firing=firing, all=am)
            for name, sel in expected_muted:
                if not any(a["labels"].get("alertname") == name and matches(a["labels"], sel)
                           for a in related_am):
                    return False
            # Everything Prometheus fires about the probe/category has arrived...
            am_keys = {json.dumps(a["labels"], sort_keys=True) for a in am}
            for labels in firing:
                if self.related(labels, probe, category) and \
                        json.dumps(labels, sort_keys=True) not in am_keys:
                    return False
            # ... and is muted by the P0.
            return all(a["status"]["state"] == "suppressed" and fp in a["status"]["inhibitedBy"]
                       for a in related_am)

        try:
            wait_until(muted, INHIBIT_TIMEOUT,
                       f"the P1/P2 alerts about probe {probe} / category {category}"
                       f" to be suppressed by {p0}",
                       progress=lambda: ", ".join(
                           f"{fmt_alert(a['labels'])}={a['status']['state']}"
                           for a in state.get("related", [])) or "none in Alertmanager yet")
        except Failure as e:
            self.fail(str(e))
        for a in state.get("related", []):
            st = a["status"]
            ok = st["state"] == "suppressed" and state["fp"] in st["inhibitedBy"]
            log(f"{'ok  ' if ok else 'FAIL'} {fmt_alert(a['labels'])}: {st['state']}"
                + (f", inhibitedBy the {p0} page" if state["fp"] in st["inhibitedBy"] else ""))
        for a in state.get("all", []):
            if not self.related(a["labels"], probe, category) and a["fingerprint"] != state["fp"]:
                log(f"     (unrelated) {fmt_alert(a['labels'])}: {a['status']['state']}")

        # 3. Hold the fault until each muted alert's group has been flushed at
        #    least once while the P0 fires: a group's first flush is group_wait
        #    after its first alert arrived, i.e. after it started firing
        #    (Alertmanager's startsAt, which Prometheus sets to the firing
        #    time). Then "no notification" below means "muted when Alertmanager
        #    decided", not "not decided yet".
        related = state.get("related", [])
        p0_alert = state.get("p0")
        if related and p0_alert:
            p0_start = mono_of(p0_alert["startsAt"])
            flushes = [mono_of(a["startsAt"]) + TARGET_GROUP_WAIT for a in related]
            hold_until = min(max(flushes) + FLUSH_MARGIN, time.monotonic() + 60)
            log(f"     {p0} fires since +{p0_start - T0:.1f}s; the muted alerts' groups"
                f" first flush at +{min(flushes) - T0:.1f}s .. +{max(flushes) - T0:.1f}s;"
                f" holding the fault {max(0.0, hold_until - time.monotonic()):.0f}s more")
            if p0_start >= min(flushes) - 1:
                self.fail(f"{p0} started firing only {min(flushes) - p0_start:.1f}s before the"
                          f" first flush of a P1/P2 group: TARGET_GROUP_WAIT is too short for"
                          f" this machine's timing")
            while time.monotonic() < hold_until:
                check_total_deadline()
                time.sleep(0.5)
            # Evidence from Alertmanager's debug log that each group was flushed
            # (so its mute stage ran) while the P0 fired; a few more seconds if
            # a flush came later than computed.
            since = time.time() - (time.monotonic() - p0_start)
            counts = {}
            extra_until = time.monotonic() + FLUSH_EXTRA_WAIT
            while True:
                counts = {i: self.am_flushes(a["labels"], since, time.time())
                          for i, a in enumerate(related)}
                if None in counts.values() or all(counts.values()) \
                        or time.monotonic() > extra_until:
                    break
                time.sleep(0.5)
            time.sleep(1)  # a notification from the last flush would be in by now
            for i, a in enumerate(related):
                n = counts[i]
                if n is None:
                    log("     (no 'msg=flushing' lines in Alertmanager's debug log to confirm"
                        " the flushes)")
                    break
                if n == 0:
                    self.fail(f"Alertmanager never flushed the group of {fmt_alert(a['labels'])}"
                              f" while {p0} fired, so its muting was not exercised")
                else:
                    log(f"ok   Alertmanager flushed the group of {fmt_alert(a['labels'])}"
                        f" {n} time(s) while {p0} fired (its log)")
            am = {a["fingerprint"]: a for a in self.am_alerts()}
            for a in related:
                now = am.get(a["fingerprint"])
                st = now["status"]["state"] if now else "gone"
                if st != "suppressed":
                    self.fail(f"{fmt_alert(a['labels'])} is {st} at the end of the hold,"
                              f" not suppressed")

        # 4. Repair; no P1/P2 notification about the probe/category may have
        #    gone out while the P0 fired.
        t_repair = time.monotonic()
        leaked = [(r, a) for t, r, a in notifications()
                  if t_break <= t < t_repair and a.get("status") == "firing"
                  and self.related(a["labels"], probe, category)]
        for r, a in leaked:
            self.fail(f"{fmt_alert(a['labels'])} was notified to {r!r} while {p0} fired")
        if not leaked:
            log(f"ok   no P1/P2 notification about probe {probe} / category {category}"
                f" reached the webhook while {p0} fired")
        self.check_one_page(want, t_break, t_page)
        log(f"repairing after {t_repair - t_break:.1f}s")
        repair_fn()

        # 5. The resolved notification.
        t, receiver, alert = self.await_notification(
            want, "resolved", t_repair, RESOLVE_TIMEOUT, f"the {p0} resolved notification", probe)
        log(f"ok   {p0} resolved at receiver {receiver!r} {t - t_repair:.1f}s after the repair"
            f" (endsAt {alert.get('endsAt')})")
        self.figures.append((scenario, f"repair -> {p0} resolved", f"{t - t_repair:.1f} s"))
        if receiver != "pager":
            self.fail(f"{p0}'s resolution went to receiver {receiver!r}, not 'pager'")

    def check_fired_in_time(self, title, p0, probe, t_break, t_break_wall):
        """A P0 must fire within two evaluation intervals after its window.
        Read on Prometheus's own clock, so neither this test's polling nor the
        machine's load blurs it: from the scrape that carried the probe's last
        passing run (the first sample of its last
        canary_probe_last_success_timestamp_seconds, the latest over the
        replicas, since the P0 needs every replica failing) to the first
        evaluation that fired the alert (its ALERTS sample). Once that scrape
        has left the window, the ratio is 0 (not before: a counter's
        extrapolation stops at its first sample); the recording group sees it
        at its next evaluation, the alerting group at its next, and the alert
        fires `for` later."""
        bound = WINDOW_S + ALERT_FOR + 2 * EVAL_INTERVAL
        fired = [float(v[1]) for r in self.prom_range(
            f'timestamp(ALERTS{{alertname="{p0}",alertstate="firing",probe="{probe}"}})',
            t_break_wall - 5, time.time()) for v in r["values"]]
        if not fired:
            self.fail(f"{p0} paged but Prometheus has no firing sample of it")
            return
        fired_at = min(fired)
        carried = []
        for r in self.prom_query(
                f'canary_probe_last_success_timestamp_seconds{{probe="{probe}"}}[2m]', at=fired_at):
            last = r["values"][-1][1]
            carried.append(min(float(ts) for ts, v in r["values"] if v == last))
        if not carried:
            self.fail(f"no canary_probe_last_success_timestamp_seconds for {probe}")
            return
        took = fired_at - max(carried)
        self.figures.append((title, f"last passing run's scrape -> {p0} firing",
                             f"{took:.1f} s (bound {bound} s)"))
        self.figures.append((title, f"fault -> {p0} firing", f"{fired_at - t_break_wall:.1f} s"))
        if took > bound:
            self.fail(f"{p0} fired {took:.1f}s after the scrape of the last passing run, later"
                      f" than window {WINDOW_S}s + for {ALERT_FOR}s + two evaluation intervals"
                      f" = {bound}s")
        else:
            log(f"ok   {p0} fired {took:.1f}s after the scrape of the last passing run (bound"
                f" {bound}s: window + for + two evaluation intervals),"
                f" {fired_at - t_break_wall:.1f}s after the fault")

    def check_one_page(self, want, since, t_page):
        """Every replica saw the incident, and it must page once: Prometheus fires
        one alert, and its Alertmanager group has had one firing notification,
        holding that one alert. A second alert (one per replica) would join the
        group and go out a group_interval after the first page: the check waits
        that long."""
        p0 = want["alertname"]
        until = t_page + int(GROUP_INTERVAL.rstrip("s")) + FLUSH_MARGIN
        while time.monotonic() < until:
            check_total_deadline()
            time.sleep(0.5)
        firing = [a["labels"] for a in self.prom_alerts()
                  if a["state"] == "firing" and a["labels"].get("alertname") == p0]
        group = {k: want[k] for k in ("alertname", "env", "probe", "category")}
        with Sink.lock:
            got = list(Sink.received)
        pages = [payload for t, _, payload in got
                 if t >= since and payload.get("status") == "firing"
                 and payload.get("groupLabels") == group]
        alerts = [a for page in pages for a in page.get("alerts", [])]
        if len(firing) == 1 and len(pages) == 1 and len(alerts) == 1:
            log(f"ok   one page from {len(self.canaryd_ports)} replicas: Prometheus fires one"
                f" {p0}, and its group had one firing notification with one alert")
            return
        self.fail(f"{len(self.canaryd_ports)} replicas saw the incident and it paged more than"
                  f" once: Prometheus fires {len(firing)} {p0} ({firing}); {len(pages)} firing"
                  f" notifications of group {group} with {len(alerts)} alerts")
