#!/usr/bin/env python3
"""Writes canaryd's Grafana dashboards (dashboards/*.json) from one description.

    python3 deploy/grafana/generate_dashboards.py          # rewrite the JSON files
    python3 deploy/grafana/generate_dashboards.py --check  # exit 1 if they differ

The JSON files are the deliverable (Grafana provisions them as they are); this
script keeps the ~50 panels consistent: every query goes through the
$datasource variable and carries the env/location filter, every panel gets a
unique id and a place on the grid. Edit the panels here, run the script, and
commit both. tests/check_dashboards.py checks that the files match it.

Panels on a probe type's own metrics are not here: each type declares them in
probes/<type>/dashboard.json (schema: type_panels.py), and this script adds
them without knowing any type. The panel builders are in panels.py.

Metric names: docs/metrics.md. Recording rules (canary:*): the rule file
written by the rule generator (deploy/prometheus/canaryd.rules.yml).
"""

import functools
import json
import pathlib
import sys

import type_panels
from panels import (BLUE, BUILDERS, DS, GREEN, HIDDEN, ORANGE, RATIO_THRESHOLDS, RED,
                    RESULT_MAPPINGS, bargauge, heatmap, layout, merge, organize, ratio_stat,
                    row, stat, state_timeline, table, target, thresholds, timeseries)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "dashboards"

# Every probe series carries the config's global labels; the dashboards assume
# env and location (README.md's and the demo's), and "All" matches a missing
# label too, so a config without them still works.
F = 'env=~"$env", location=~"$location"'
FP = F + ', probe=~"$probe"'


def variables(with_probe):
    def query_var(name, label, definition, multi):
        v = {"type": "query", "name": name, "label": label, "datasource": DS,
             "definition": definition,
             "query": {"query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
             "refresh": 2, "sort": 1, "regex": "", "hide": 0, "skipUrlSync": False,
             "multi": multi, "includeAll": multi, "options": []}
        if multi:
            v["allValue"] = ".*"
            v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        else:
            v["current"] = {}
        return v

    out = [
        {"type": "datasource", "name": "datasource", "label": "Data source",
         "query": "prometheus", "regex": "", "hide": 0, "refresh": 1, "skipUrlSync": False,
         "includeAll": False, "multi": False, "options": [],
         # the provisioned datasource (provisioning/datasources/canaryd.yml)
         "current": {"selected": False, "text": "Prometheus", "value": "prometheus"}},
        query_var("env", "env", "label_values(canary_probe_info, env)", True),
        query_var("location", "location",
                  'label_values(canary_probe_info{env=~"$env"}, location)', True),
    ]
    if with_probe:
        out.append(query_var("probe", "probe",
                             'label_values(canary_probe_info{%s}, probe)' % F, False))
    return out


def dashboard(uid, title, desc, panels, with_probe, links):
    return {
        "__inputs": [], "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}],
        "uid": uid, "title": title, "description": desc, "tags": ["canaryd"],
        "editable": True, "graphTooltip": 1, "timezone": "", "weekStart": "",
        "fiscalYearStartMonth": 0, "liveNow": False, "refresh": "30s",
        "schemaVersion": 38, "version": 1, "style": "dark",
        "time": {"from": "now-6h", "to": "now"}, "timepicker": {},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana",
                                                               "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": links,
        "templating": {"list": variables(with_probe)},
        "panels": layout(panels),
    }


# Data link from any series with a `probe` label to the drill-down.
PROBE_LINK = [{"title": "Open probe ${__field.labels.probe}", "targetBlank": False,
               "url": "/d/canaryd-probe/canaryd-probe?var-probe=${__field.labels.probe}"
                      "&${env:queryparam}&${location:queryparam}&${datasource:queryparam}"
                      "&${__url_time_range}"}]
TABLE_PROBE_LINK = [{"title": "Open probe ${__data.fields.probe}", "targetBlank": False,
                     "url": "/d/canaryd-probe/canaryd-probe?var-probe=${__data.fields.probe}"
                            "&${env:queryparam}&${location:queryparam}"
                            "&${datasource:queryparam}&${__url_time_range}"}]


def probe_link_override(field="probe"):
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": "links", "value": TABLE_PROBE_LINK}]}


# ------------------------------------------------------------------ overview

def overview():
    P = []
    P.append(row("Now"))
    P.append(ratio_stat("Overall success (5m)", "canary:overall_success:ratio_5m{%s}" % F,
                        "{{env}} {{location}}",
                        "Share of all runs that succeeded over the last 5 minutes "
                        "(recording rule canary:overall_success:ratio_5m), per env and "
                        "location."))
    P.append(ratio_stat("Critical probes success (5m)",
                        "canary:critical_success:ratio_5m{%s}" % F, "{{env}} {{location}}",
                        "Success of the probes marked critical: true over the last 5 minutes "
                        "(canary:critical_success:ratio_5m)."))
    P.append(stat("Probes failing now",
                  target("count(canary_probe_success{%s} == 0) or vector(0)" % F, "failing",
                         instant=True),
                  "Probes whose last run failed (canary_probe_success == 0).",
                  defaults={"thresholds": thresholds((None, GREEN), (1, RED))}))
    P.append(stat("Probes",
                  target("count(canary_probe_info{%s})" % F, "probes", instant=True),
                  "Probes in the running configs (canary_probe_info).",
                  defaults={"thresholds": thresholds((None, BLUE))}))
    P.append(stat("Firing alerts by severity",
                  target('count by (severity) (ALERTS{alertstate="firing", %s})' % F,
                         "{{severity}}", instant=True),
                  "Firing alerts from Prometheus's ALERTS series, by severity label "
                  "(P0 pages, P1 high-priority notice, P2 ticket). Alerts without env/location "
                  "labels (e.g. CanarydDown) show only when env and location are All.",
                  w=8, text_mode="value_and_name",
                  defaults={"thresholds": thresholds((None, RED)), "noValue": "none firing",
                            "color": {"mode": "fixed", "fixedColor": RED}}))
    P.append(table(
        "Probes failing now",
        [target("sum by (env, location, probe, type, category, reason) "
                "(increase(canary_probe_failures_total{%s}[15m]) > 0) "
                "and on (env, location, probe) (canary_probe_success{%s} == 0)" % (F, F),
                instant=True, fmt="table"),
         target("max by (env, location, probe, type, category) "
                "(time() - canary_probe_last_success_timestamp_seconds{%s}) "
                "and on (env, location, probe) (canary_probe_success{%s} == 0)" % (F, F),
                instant=True, fmt="table")],
        "Probes whose last run failed, with the failure reasons counted over the last 15 "
        "minutes and the time since their last success (empty: never succeeded since "
        "canaryd started). The reason text and message are in canaryd's state API "
        "(/api/v1/state/<probe>).",
        w=14, h=8,
        transformations=[{"id": "merge", "options": {}},
                         organize(HIDDEN, {"Value #A": "failures (15m)",
                                           "Value #B": "since last success"},
                                  ["probe", "reason", "Value #A", "Value #B", "type",
                                   "category", "env", "location"])],
        overrides=[probe_link_override(),
                   {"matcher": {"id": "byName", "options": "since last success"},
                    "properties": [{"id": "unit", "value": "dtdurations"}]},
                   {"matcher": {"id": "byName", "options": "reason"},
                    "properties": [{"id": "custom.cellOptions",
                                    "value": {"type": "color-text"}},
                                   {"id": "color", "value": {"mode": "fixed",
                                                             "fixedColor": RED}}]}],
        sort=[{"displayName": "probe", "desc": False}]))
    P.append(table(
        "Firing alerts",
        target('ALERTS{alertstate="firing", %s}' % F, instant=True, fmt="table"),
        "Every firing alert with its labels. Summaries and descriptions are in "
        "Alertmanager.",
        w=10, h=8,
        transformations=[organize(HIDDEN + ("alertstate", "Value"),
                                  order=["severity", "alertname", "probe", "type",
                                         "category", "env", "location"])],
        overrides=[probe_link_override()],
        sort=[{"displayName": "severity", "desc": False}]))

    P.append(row("Success"))
    P.append(timeseries(
        "Overall success",
        [target("canary:overall_success:ratio_5m{%s}" % F, "5m {{env}} {{location}}"),
         target("canary:overall_success:ratio_1h{%s}" % F, "1h {{env}} {{location}}")],
        "Share of all runs that succeeded, over 5 minutes and over 1 hour.",
        unit="percentunit", w=12, defaults={"min": 0, "max": 1}))
    P.append(timeseries(
        "Success by category (5m)",
        target("canary:category_success:ratio_5m{%s}" % F, "{{category}} {{env}} {{location}}"),
        "Success per business function (the probes' category), over 5 minutes.",
        unit="percentunit", w=12, defaults={"min": 0, "max": 1}))
    P.append(bargauge(
        "Success by category (1h)",
        target("canary:category_success:ratio_1h{%s}" % F, "{{category}} {{env}} {{location}}",
               instant=True),
        "Success per category over the last hour, worst first.",
        unit="percentunit", w=8, sort="asc",
        defaults={"min": 0, "max": 1, "thresholds": RATIO_THRESHOLDS}))
    P.append(timeseries(
        "Success by probe type (5m)",
        target("canary:type_success:ratio_5m{%s}" % F, "{{type}} {{env}} {{location}}"),
        "Success per probe type (the `type` label), over 5 minutes.",
        unit="percentunit", w=8, defaults={"min": 0, "max": 1}))
    P.append(bargauge(
        "Success per probe (1h)",
        target("canary:probe_success:ratio_1h{%s}" % F, "{{probe}} {{location}}",
               instant=True),
        "Each probe's success over the last hour, worst first. Click a bar for the probe's "
        "dashboard.",
        unit="percentunit", w=8, sort="asc", links=PROBE_LINK,
        defaults={"min": 0, "max": 1, "thresholds": RATIO_THRESHOLDS}))
    P.append(state_timeline(
        "Probe results",
        target("max by (probe, env, location) (canary_probe_success{%s})" % F,
               "{{probe}} {{location}}"),
        "Last result of each probe over time: green OK, red FAIL.", h=10))

    P.append(row("Latency"))
    P.append(timeseries(
        "p95 run duration per probe (5m)",
        target("canary:probe_latency_seconds:p95_5m{%s}" % F, "{{probe}} {{location}}"),
        "95th percentile of each probe's run duration, end to end, over 5 minutes "
        "(canary:probe_latency_seconds:p95_5m; histogram buckets, so it is an estimate).",
        unit="s", links=PROBE_LINK))
    P.append(timeseries(
        "p50 run duration per probe",
        target("histogram_quantile(0.5, sum by (le, probe, env, location) "
               "(rate(canary_probe_duration_seconds_bucket{%s}[$__rate_interval])))" % F,
               "{{probe}} {{location}}"),
        "Median run duration of each probe (canary_probe_duration_seconds).",
        unit="s", links=PROBE_LINK))
    P.append(heatmap(
        "Run duration, all probes",
        "sum by (le) (increase(canary_probe_duration_seconds_bucket{%s}[$__rate_interval]))" % F,
        "How many runs fell in each duration bucket, all probes together.", w=24))

    P.append(row("Failures"))
    P.append(timeseries(
        "Failures by reason",
        target("sum by (reason) (rate(canary_probe_failures_total{%s}[$__rate_interval])) * 60"
               % F, "{{reason}}"),
        "Failed runs per minute, by reason (canary_probe_failures_total).",
        unit="short", w=12, bars=True, stack=True))
    P.append(bargauge(
        "Failures by reason (time range)",
        target("sort_desc(sum by (reason) "
               "(increase(canary_probe_failures_total{%s}[$__range])) > 0)" % F,
               "{{reason}}", instant=True),
        "Failed runs in the dashboard's time range, by reason.",
        w=12, defaults={"thresholds": thresholds((None, RED)), "decimals": 0}))
    P.append(table(
        "Failures by probe and reason (time range)",
        target("sum by (probe, type, category, reason, env, location) "
               "(increase(canary_probe_failures_total{%s}[$__range])) > 0" % F,
               instant=True, fmt="table"),
        "Failed runs in the dashboard's time range per probe and reason.",
        w=24,
        transformations=[organize(HIDDEN, {"Value": "failures"},
                                  ["probe", "reason", "Value", "type", "category", "env",
                                   "location"])],
        overrides=[probe_link_override(),
                   {"matcher": {"id": "byName", "options": "failures"},
                    "properties": [{"id": "decimals", "value": 0}]}],
        sort=[{"displayName": "failures", "desc": True}]))

    # canaryd's own series have no env/location: they are kept for the
    # instances (Prometheus targets) that export probes of the selected ones.
    inst = ("on (instance) group by (instance) (canary_probe_info{%s})" % F)
    P.append(row("canaryd"))
    P.append(timeseries(
        "Scheduler lag p99",
        target("histogram_quantile(0.99, sum by (le, instance) "
               "(rate(canary_scheduler_lag_seconds_bucket[$__rate_interval]) and %s))" % inst,
               "{{instance}}"),
        "How late runs start (canary_scheduler_lag_seconds). A growing lag means the probe "
        "loop is overloaded and results come late.", unit="s", w=8))
    P.append(timeseries(
        "Runs in flight and skipped",
        [target("sum by (instance) (canary_probes_in_flight and %s)" % inst,
                "in flight {{instance}}"),
         target("sum by (instance) (rate(canary_scheduler_skipped_runs_total[$__rate_interval]) "
                "and %s) * 60" % inst, "skipped/min {{instance}}")],
        "Runs in progress, and slots skipped per minute because the previous run was still "
        "going or the loop fell behind.", w=8))
    P.append(stat(
        "Config reload",
        target("min by (instance) (canary_config_last_reload_successful and %s)" % inst,
               "{{instance}}", instant=True),
        "Whether each canaryd's last config load or reload succeeded (a failed reload keeps "
        "the old config running).",
        w=8, h=8, text_mode="value_and_name",
        defaults={"mappings": [{"type": "value", "options": {
            "0": {"text": "reload FAILED", "color": RED, "index": 0},
            "1": {"text": "OK", "color": GREEN, "index": 1}}}],
            "thresholds": thresholds((None, RED), (1, GREEN))}))
    return dashboard(
        "canaryd-overview", "canaryd / Overview",
        "Synthetic monitoring: success by category and overall, failing probes and reasons, "
        "latency, firing alerts.", P, False,
        [{"type": "dashboards", "tags": ["canaryd"], "asDropdown": False, "includeVars": True,
          "keepTime": True, "title": "canaryd", "icon": "external link", "targetBlank": False,
          "tooltip": "", "url": ""}])


# ------------------------------------------------------------------ probe types

@functools.lru_cache(maxsize=None)
def type_contributions():
    """[(path, contribution)] of probes/*/dashboard.json; exits naming any bad file."""
    try:
        return type_panels.load(ROOT)
    except type_panels.ContributionError as e:
        sys.exit("bad dashboard contribution (schema: deploy/grafana/type_panels.py):\n%s" % e)


def with_filter(expr, labels):
    return expr.replace(type_panels.FILTER, labels)


def type_panel(spec, mappings):
    """A panel of a type's row, from its dashboard.json entry (type_panels.py)."""
    targets = [target(with_filter(t["expr"], FP), t.get("legend", "__auto"),
                      t.get("instant", False), t.get("format"))
               for t in spec["targets"]]
    size = {k: spec[k] for k in ("unit", "w", "h") if k in spec}
    p = BUILDERS[spec["kind"]](spec["title"], targets, spec["description"], **size)
    defaults = dict(spec.get("defaults", {}))
    if isinstance(defaults.get("mappings"), str):
        defaults["mappings"] = mappings[defaults["mappings"]]
    merge(p["fieldConfig"]["defaults"], defaults)
    merge(p["options"], spec.get("options", {}))
    if "overrides" in spec:
        p["fieldConfig"]["overrides"] = spec["overrides"]
    if "transformations" in spec:
        p["transformations"] = spec["transformations"]
    return p


# ------------------------------------------------------------------ per probe

def per_probe():
    types = type_contributions()
    P = []
    P.append(row("Result"))
    P.append(stat("Last result",
                  target("canary_probe_success{%s}" % FP, "{{location}}", instant=True),
                  "Result of the last run (canary_probe_success). The reason and message are "
                  "in canaryd's state API: /api/v1/state/<probe>.",
                  defaults={"mappings": RESULT_MAPPINGS,
                            "thresholds": thresholds((None, RED), (1, GREEN))}))
    P.append(ratio_stat("Success (5m)", "canary:probe_success:ratio_5m{%s}" % FP,
                        "{{location}}", "Share of runs that succeeded over 5 minutes."))
    P.append(ratio_stat("Success (1h)", "canary:probe_success:ratio_1h{%s}" % FP,
                        "{{location}}", "Share of runs that succeeded over 1 hour."))
    P.append(stat("Since last success",
                  target("time() - canary_probe_last_success_timestamp_seconds{%s}" % FP,
                         "{{location}}", instant=True),
                  "Time since the last successful run (no value: no success since canaryd "
                  "started). Compare with the interval.", unit="dtdurations",
                  defaults={"thresholds": thresholds((None, GREEN), (300, ORANGE),
                                                     (3600, RED)),
                            "noValue": "never"}))
    P.append(stat("Runs (1h)",
                  target("canary:probe_runs:increase_1h{%s}" % FP, "{{location}}",
                         instant=True),
                  "Runs completed over the last hour (canary:probe_runs:increase_1h).",
                  defaults={"thresholds": thresholds((None, BLUE)), "decimals": 0}))
    P.append(stat("Interval / timeout",
                  [target("canary_probe_interval_seconds{%s}" % FP, "interval", instant=True),
                   target("canary_probe_timeout_seconds{%s}" % FP, "timeout", instant=True)],
                  "The probe's configured interval and timeout.", unit="s",
                  text_mode="value_and_name",
                  defaults={"thresholds": thresholds((None, BLUE))}))
    P.append(table(
        "Probe",
        target("canary_probe_info{%s}" % FP, instant=True, fmt="table"),
        "The probe's labels: type, category, critical, the config's global labels and the "
        "probe's own labels.", w=24, h=4,
        transformations=[organize(HIDDEN + ("Value",),
                                  order=["probe", "type", "category", "critical", "env",
                                         "location"])]))
    P.append(state_timeline(
        "Result over time",
        target("canary_probe_success{%s}" % FP, "{{probe}} {{location}}"),
        "Each run's result as scraped: green OK, red FAIL.", h=5))
    P.append(timeseries(
        "Success ratio",
        [target("canary:probe_success:ratio_5m{%s}" % FP, "5m {{location}}"),
         target("canary:probe_success:ratio_1h{%s}" % FP, "1h {{location}}")],
        "Share of runs that succeeded, over 5 minutes and 1 hour.", unit="percentunit",
        w=8, defaults={"min": 0, "max": 1}))
    P.append(timeseries(
        "Failures by reason",
        target("sum by (reason) (rate(canary_probe_failures_total{%s}[$__rate_interval])) * 60"
               % FP, "{{reason}}"),
        "Failed runs per minute by reason. Every reason the probe type knows exists from "
        "the start at 0.", w=8, bars=True, stack=True))
    P.append(bargauge(
        "Failures by reason (time range)",
        target("sort_desc(sum by (reason) "
               "(increase(canary_probe_failures_total{%s}[$__range])))" % FP,
               "{{reason}}", instant=True),
        "Failed runs in the dashboard's time range, per reason (all the type's reasons, "
        "zeros included).", w=8, defaults={"thresholds": thresholds((None, GREEN), (1, RED)),
                                             "decimals": 0}))

    P.append(row("Latency and phases"))
    P.append(timeseries(
        "Run duration",
        [target("histogram_quantile(0.5, sum by (le) "
                "(rate(canary_probe_duration_seconds_bucket{%s}[$__rate_interval])))" % FP,
                "p50"),
         target("canary:probe_latency_seconds:p95_5m{%s}" % FP, "p95 (5m) {{location}}"),
         target("histogram_quantile(0.99, sum by (le) "
                "(rate(canary_probe_duration_seconds_bucket{%s}[$__rate_interval])))" % FP,
                "p99"),
         target("canary:probe_latency_seconds:mean_5m{%s}" % FP, "mean (5m) {{location}}")],
        "End-to-end run duration (canary_probe_duration_seconds): percentiles from the "
        "histogram, and the 5-minute mean and p95 recording rules the alerts use.",
        unit="s"))
    P.append(heatmap(
        "Run duration distribution",
        "sum by (le) (increase(canary_probe_duration_seconds_bucket{%s}[$__rate_interval]))"
        % FP, "Runs per duration bucket."))
    # metrics.detail full has a histogram per phase; basic only the last
    # run's phase times, as gauges: each phase query reads whichever the
    # probe exports (docs/metrics.md, "Detail").
    phase_mean = ("(sum by (phase) (rate(canary_probe_phase_duration_seconds_sum{%s}"
                  "[$__rate_interval])) / sum by (phase) "
                  "(rate(canary_probe_phase_duration_seconds_count{%s}[$__rate_interval])))"
                  " or avg by (phase) (avg_over_time(canary_probe_phase_last_seconds{%s}"
                  "[$__rate_interval]))"
                  % (FP, FP, FP))
    others = [with_filter(c["non_connection_phases"], FP) for _, c in types
              if "non_connection_phases" in c]
    if others:
        # `or` binds after `unless`: a union of several needs its parentheses.
        union = others[0] if len(others) == 1 else "(%s)" % " or ".join(others)
        phase_mean = "(%s) unless on (phase) %s" % (phase_mean, union)
    P.append(timeseries(
        "Connection phases (mean)",
        target(phase_mean, "{{phase}}"),
        "Mean duration of each connection phase the probe's type reports "
        "(canary_probe_phase_duration_seconds, or canary_probe_phase_last_seconds with "
        "metrics.detail basic; config/README.md lists each type's phases). "
        "Phases a run never reached are left out, and so are the phases a type marks as "
        "not connection phases, which its own row shows.", unit="s"))
    P.append(bargauge(
        "Phase p95 (time range)",
        target("(histogram_quantile(0.95, sum by (le, phase) "
               "(rate(canary_probe_phase_duration_seconds_bucket{%s}[$__range]))) > 0)"
               " or max by (phase) (quantile_over_time(0.95, "
               "canary_probe_phase_last_seconds{%s}[$__range]))" % (FP, FP),
               "{{phase}}", instant=True),
        "95th percentile of every phase over the dashboard's time range, connection phases "
        "or not (with metrics.detail basic: of the last-run phase times scraped).", unit="s",
        sort="asc",
        defaults={"thresholds": thresholds((None, BLUE))}))

    for _, contribution in types:
        P.append(row(contribution["row"]))
        P.extend(type_panel(spec, contribution.get("mappings", {}))
                 for spec in contribution["panels"])

    P.append(row("TLS"))
    P.append(stat("Certificate expires in",
                  target("canary_tls_cert_expiry_timestamp_seconds{%s} - time()" % FP,
                         "{{location}}", instant=True),
                  "Time until the target's leaf certificate expires "
                  "(canary_tls_cert_expiry_timestamp_seconds - time()); probes that connect "
                  "over TLS only. Negative: already expired.", w=8, unit="dtdurations",
                  defaults={"thresholds": thresholds((None, RED), (3 * 86400, ORANGE),
                                                     (14 * 86400, GREEN))}))
    P.append(timeseries(
        "Certificate expiry",
        target("(canary_tls_cert_expiry_timestamp_seconds{%s} - time()) / 86400" % FP,
               "days left {{location}}"),
        "Days until the leaf certificate expires; a jump up is a renewal.", w=16, h=4,
        unit="d"))
    return dashboard(
        "canaryd-probe", "canaryd / Probe",
        "One probe in detail: result, reasons, phases, %sTLS expiry." % (
            "a row per type with metrics of its own (%s), "
            % ", ".join(c["row"] for _, c in types) if types else ""), P, True,
        [{"type": "link", "title": "Overview", "icon": "dashboard", "includeVars": True,
          "keepTime": True, "targetBlank": False, "tooltip": "", "asDropdown": False,
          "tags": [], "url": "/d/canaryd-overview/canaryd-overview"}])


DASHBOARDS = {"canaryd-overview.json": overview, "canaryd-probe.json": per_probe}


def render(build):
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run deploy/grafana/generate_dashboards.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
