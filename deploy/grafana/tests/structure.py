"""The structure checks of check_dashboards.py (step 1 of its docstring).

They need neither canaryd nor Prometheus: the dashboard JSON, the generator
and its inputs (probes/*/dashboard.json), docs/metrics.md, the rule file and
the provisioning files.
"""

import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
GRAFANA = HERE.parent
ROOT = GRAFANA.parent.parent
DASHBOARDS = GRAFANA / "dashboards"
METRICS_DOC = ROOT / "docs" / "metrics.md"

sys.path.insert(0, str(GRAFANA))
import type_panels  # noqa: E402  (the generator's schema for probes/*/dashboard.json)

# Grafana's built-ins, as the test substitutes them (Prometheus scrapes every 1 s).
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}

# Recording rules the dashboards may use (the rule generator's contract), used
# to check the names while deploy/prometheus/canaryd.rules.yml does not exist.
CONTRACT_RULES = {
    f"canary:{name}_{w}" for w in ("5m", "1h") for name in (
        "probe_success:ratio", "type_success:ratio", "category_success:ratio",
        "critical_success:ratio", "overall_success:ratio", "probe_latency_seconds:mean",
        "probe_latency_seconds:p95", "probe_runs:increase")}

# canaryd's own series carry no env/location: a panel on them must keep only
# the instances whose canary_probe_info matches the filters.
DAEMON_METRICS = {
    "canary_build_info", "canary_start_time_seconds", "canary_scheduler_lag_seconds",
    "canary_scheduler_skipped_runs_total", "canary_probes_in_flight",
    "canary_probes_configured", "canary_config_last_reload_successful",
    "canary_config_last_reload_success_timestamp_seconds", "canary_config_reloads_total"}

SELECTOR = re.compile(r"\b(ALERTS|canary[_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?")
VAR_REF = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
HIST_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def documented_metrics():
    return set(re.findall(r"`(canary_[a-z0-9_]+)`", METRICS_DOC.read_text()))


def recording_rules(path):
    if not path:
        return None
    return set(re.findall(r"^\s*-?\s*record:\s*['\"]?([A-Za-z0-9_:]+)", path.read_text(), re.M))


def check_expr(expr, want_probe, errors, where):
    if not SELECTOR.search(expr):
        errors.append(f"{where}: no canaryd metric in {expr!r}")
    daemon_only = []
    for m in SELECTOR.finditer(expr):
        name, labels = m.group(1), m.group(2) or ""
        base = HIST_SUFFIX.sub("", name)
        if base in DAEMON_METRICS:
            daemon_only.append(name)
            continue
        for want in ['env=~"$env"', 'location=~"$location"'] + (
                ['probe=~"$probe"'] if want_probe else []):
            if want not in labels:
                errors.append(f"{where}: {name}{labels} lacks {want}")
    if daemon_only and not re.search(
            r'on \(instance\) group by \(instance\) \(canary_probe_info\{env=~"\$env", '
            r'location=~"\$location"\}\)', expr):
        errors.append(f"{where}: {daemon_only} not joined with the filtered canary_probe_info")


def type_folders():
    """The probe types: every probes/<name>/ that holds <name>.cc, but common/."""
    return sorted(d.name for d in (ROOT / "probes").iterdir()
                  if d.is_dir() and d.name != "common" and (d / f"{d.name}.cc").is_file())


def generator_names_no_type(types):
    """A type's panels belong in its folder: the generator's sources name no type."""
    if not types:
        return [f"no probe type folders (probes/<name>/<name>.cc) under {ROOT}"]
    name = re.compile(r"\b(%s)\b" % "|".join(map(re.escape, types)), re.I)
    errors = []
    for src in sorted(GRAFANA.glob("*.py")):
        for n, line in enumerate(src.read_text().splitlines(), 1):
            for m in name.finditer(line):
                errors.append(f"{src.relative_to(ROOT)}:{n}: names the probe type "
                              f"{m.group(0)!r}; its panels go in probes/{m.group(0).lower()}/"
                              f"{type_panels.FILE_NAME}")
    return errors


def contribution_errors(types):
    """Every probes/*/dashboard.json, in a type's folder and following the schema."""
    errors = []
    for path in type_panels.files(ROOT):
        shown = path.relative_to(ROOT)
        if path.parent.name not in types:
            errors.append(f"{shown}: {path.parent.name}/ is not a probe type's folder "
                          f"(no {path.parent.name}.cc)")
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            errors.append(f"{shown}: invalid JSON: {e}")
            continue
        errors += type_panels.validate(shown, data)
    return errors


def static_checks(rules_names):
    errors = []
    docs = documented_metrics()
    known_rules = rules_names if rules_names is not None else CONTRACT_RULES
    used_rules = set()
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        name = path.name
        try:
            dash = json.loads(path.read_text())
        except ValueError as e:
            errors.append(f"{name}: invalid JSON: {e}")
            continue
        for key in ("uid", "title", "panels", "templating", "schemaVersion"):
            if key not in dash:
                errors.append(f"{name}: no {key}")
        if not 36 <= dash.get("schemaVersion", 0) <= 39:
            errors.append(f"{name}: schemaVersion {dash.get('schemaVersion')} (want ~38)")
        if dash.get("uid") in uids:
            errors.append(f"{name}: duplicate uid {dash.get('uid')}")
        uids.add(dash.get("uid"))
        tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        want_probe = "probe" in tvars
        ds = tvars.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            errors.append(f"{name}: no datasource variable of type datasource/prometheus")
        for v in ("env", "location"):
            tv = tvars.get(v)
            if not tv:
                errors.append(f"{name}: no ${v} variable")
                continue
            q = tv.get("definition", "")
            if tv.get("type") != "query" or not q.startswith("label_values(canary_probe_info"):
                errors.append(f"{name}: ${v} is not label_values(canary_probe_info..., {v})")
            if not (tv.get("includeAll") and tv.get("allValue") == ".*"):
                errors.append(f"{name}: ${v} needs includeAll with allValue .*")
        for tv in tvars.values():
            if tv.get("type") == "query" and tv.get("datasource", {}).get("uid") not in (
                    "${datasource}", "$datasource"):
                errors.append(f"{name}: variable {tv.get('name')} does not use $datasource")
        defined = set(tvars) | set(BUILTINS)
        ids = set()
        for p in all_panels(dash):
            where = f"{name}: panel {p.get('id')} {p.get('title')!r}"
            if p.get("id") in ids:
                errors.append(f"{where}: duplicate id")
            ids.add(p.get("id"))
            gp = p.get("gridPos", {})
            if not all(k in gp for k in "hwxy") or gp["x"] + gp["w"] > 24:
                errors.append(f"{where}: bad gridPos {gp}")
            if p.get("type") == "row":
                continue
            if p.get("datasource", {}).get("uid") not in ("${datasource}", "$datasource"):
                errors.append(f"{where}: datasource is not $datasource")
            targets = p.get("targets") or []
            if not targets:
                errors.append(f"{where}: no targets")
            refs = [t.get("refId") for t in targets]
            if len(set(refs)) != len(refs) or None in refs:
                errors.append(f"{where}: refIds {refs}")
            for t in targets:
                tw = f"{where} {t.get('refId')}"
                if t.get("datasource", {}).get("uid") not in ("${datasource}", "$datasource"):
                    errors.append(f"{tw}: target datasource is not $datasource")
                expr = t.get("expr", "")
                if not expr:
                    errors.append(f"{tw}: no expr")
                    continue
                check_expr(expr, want_probe, errors, tw)
                for m in VAR_REF.finditer(expr):
                    v = m.group(1) or m.group(2) or m.group(3)
                    if v not in defined:
                        errors.append(f"{tw}: undefined variable ${v}")
                for m in SELECTOR.finditer(expr):
                    metric = m.group(1)
                    if metric.startswith("canary:"):
                        used_rules.add(metric)
                        if metric not in known_rules:
                            errors.append(f"{tw}: recording rule {metric} is not in the "
                                          f"{'rule file' if rules_names is not None else 'contract'}")
                    elif metric != "ALERTS" and HIST_SUFFIX.sub("", metric) not in docs \
                            and metric not in docs:
                        errors.append(f"{tw}: {metric} is not in docs/metrics.md")
    if len(uids) != 2:
        errors.append(f"expected the 2 dashboards in {DASHBOARDS}, found {sorted(uids)}")

    types = type_folders()
    errors += generator_names_no_type(types)
    bad_contributions = contribution_errors(types)
    errors += bad_contributions
    if bad_contributions:
        errors.append("dashboards not compared with generate_dashboards.py's output: it "
                      "reads the bad files above")
    else:
        import generate_dashboards
        for fname, build in generate_dashboards.DASHBOARDS.items():
            p = DASHBOARDS / fname
            if not p.exists() or p.read_text() != generate_dashboards.render(build):
                errors.append(f"{fname} differs from generate_dashboards.py's output: edit "
                              "the generator or the probes/*/dashboard.json, and run it")

    ds_yml = (GRAFANA / "provisioning" / "datasources" / "canaryd.yml").read_text()
    if not re.search(r"^\s*uid:\s*prometheus\s*$", ds_yml, re.M) or \
            not re.search(r"^\s*type:\s*prometheus\s*$", ds_yml, re.M):
        errors.append("provisioning/datasources/canaryd.yml: no type/uid prometheus")
    db_yml = (GRAFANA / "provisioning" / "dashboards" / "canaryd.yml").read_text()
    if not re.search(r"^\s*type:\s*file\s*$", db_yml, re.M) or "path:" not in db_yml:
        errors.append("provisioning/dashboards/canaryd.yml: no file provider with a path")
    return errors, used_rules
