"""Reads and checks the dashboard contributions of the probe types.

A probe type is one folder, probes/<type>/; if it has metrics or phases of its
own, its probes/<type>/dashboard.json declares what the dashboards show of
them. generate_dashboards.py turns every such file into panels and knows no
type by name; tests/check_dashboards.py validates the files with validate().

The schema (every probes/*/dashboard.json is an example):

    {
      "comment": "optional, free text for the file's readers",
      "row": "title of the type's row on the per-probe dashboard",
      "panels": [PANEL, ...],
      "mappings": {"NAME": [Grafana value mappings], ...},
      "non_connection_phases": "PromQL whose series have a `phase` label"
    }

"row" and "panels" are required; rows appear in the order of the folder
names, between the common phase panels and TLS. "non_connection_phases" is
the set of `phase` values that are not connection phases (e.g. ones timing
the events a run waits for): the per-probe "Connection phases" panel leaves
them out. It is one term, such as `group by (phase) (...)`, since the
generator appends it to `unless on (phase)`. "mappings" are value mappings
several panels share: a panel's defaults.mappings may name one.

    PANEL = {
      "kind": "stat" | "timeseries" | "bargauge" | "table" | "gauge"
              | "state-timeline"            (Grafana's panel type),
      "title": "...", "description": "...",
      "targets": [{"expr": "PromQL", "legend": "{{label}}",
                   "instant": false, "format": "table"}, ...],
      "w": 1-24, "h": rows, "unit": "s",
      "defaults": {Grafana fieldConfig.defaults},
      "options": {Grafana panel options},
      "overrides": [Grafana fieldConfig.overrides],
      "transformations": [Grafana transformations],
      "comment": "..."
    }

"kind", "title", "description" and "targets" are required, and each target's
"expr"; "legend" defaults to Grafana's auto legend, "instant" to false (a
range query). Without "w"/"h" a panel takes its kind's size: stat 4x4, gauge
6x4, timeseries, bargauge and table 12x8, state-timeline 24x8; panels fill
the row's 24 columns left to right in the order given. "defaults" and
"options" are merged key by key into the kind's own (generate_dashboards.py's
stat(), timeseries(), ...), so they hold only what differs; "overrides" and
"transformations" are taken as they are. Grafana's Inspect -> Panel JSON
shows all of these for a panel built in its UI.

Every metric selector in an expression carries the placeholder $FILTER
inside its braces, `canary_x_total{$FILTER}` or `canary_x_total{$FILTER,
a="b"}`: the generator puts the dashboard's env/location/probe filter there,
so every query follows the dashboard's variables. A bargauge shows bars in
the order of the query's series: sort in PromQL (`sort(...)`).
"""

import json
import pathlib
import re

FILTER = "$FILTER"
FILE_NAME = "dashboard.json"
KINDS = ("stat", "timeseries", "bargauge", "table", "gauge", "state-timeline")
TARGET_FORMATS = ("time_series", "table", "heatmap")

_TOP_KEYS = {"comment", "row", "panels", "mappings", "non_connection_phases"}
_PANEL_KEYS = {"comment", "kind", "title", "description", "targets", "w", "h", "unit",
               "defaults", "options", "overrides", "transformations"}
_TARGET_KEYS = {"expr", "legend", "instant", "format"}
_JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object",
               list: "a list"}
# A metric name and, if there is one, its label matchers.
_SELECTOR = re.compile(r"\b(canary[_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?")


class ContributionError(ValueError):
    """A dashboard.json that does not follow the schema; the text names file and panel."""


def files(root):
    """Every probes/*/dashboard.json under the repository root, by folder name."""
    return sorted((pathlib.Path(root) / "probes").glob("*/" + FILE_NAME),
                  key=lambda p: p.parent.name)


def _check_expr(expr, where, errors):
    selectors = list(_SELECTOR.finditer(expr))
    if not selectors:
        errors.append(f"{where}: no canary_* metric in {expr!r}")
    for m in selectors:
        if FILTER not in (m.group(2) or ""):
            errors.append(f"{where}: {m.group(0)} lacks {{{FILTER}}} (the dashboard's filter)")


def _top_level_set_operator(expr):
    """The first `or`/`and`/`unless` outside brackets and strings, or None."""
    depth = 0
    bare = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    for m in re.finditer(r"[({\[]|[)}\]]|\b(?:or|and|unless)\b", bare):
        if m.group(0) in "({[":
            depth += 1
        elif m.group(0) in ")}]":
            depth -= 1
        elif depth == 0:
            return m.group(0)
    return None


def _check_keys(obj, known, where, errors):
    for k in sorted(set(obj) - known):
        errors.append(f"{where}: unknown key {k!r} (known: {', '.join(sorted(known))})")


def _check_type(value, want, where, errors, what):
    # JSON's true and false are Python ints too; they are no width.
    ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
    if not ok:
        errors.append(f"{where}: {what} must be {_JSON_NAMES[want]}")
    return ok


def _check_target(t, where, errors):
    if not isinstance(t, dict):
        errors.append(f"{where}: not an object")
        return
    _check_keys(t, _TARGET_KEYS, where, errors)
    expr = t.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        errors.append(f"{where}: no expr")
    else:
        _check_expr(expr, where, errors)
    if "legend" in t:
        _check_type(t["legend"], str, where, errors, "legend")
    if "instant" in t:
        _check_type(t["instant"], bool, where, errors, "instant")
    if "format" in t and t["format"] not in TARGET_FORMATS:
        errors.append(f"{where}: format {t['format']!r} is not one of "
                      f"{', '.join(TARGET_FORMATS)}")


def _check_panel(p, where, mappings, errors):
    if not isinstance(p, dict):
        errors.append(f"{where}: not an object")
        return
    _check_keys(p, _PANEL_KEYS, where, errors)
    if p.get("kind") not in KINDS:
        errors.append(f"{where}: kind {p.get('kind')!r} is not one of {', '.join(KINDS)}")
    for k in ("title", "description"):
        if not isinstance(p.get(k), str) or not p[k].strip():
            errors.append(f"{where}: no {k}")
    targets = p.get("targets")
    if not isinstance(targets, list) or not targets:
        errors.append(f"{where}: targets must be a non-empty list")
    else:
        for i, t in enumerate(targets, 1):
            _check_target(t, f"{where} target {i}", errors)
    if "w" in p and _check_type(p["w"], int, where, errors, "w") and not 1 <= p["w"] <= 24:
        errors.append(f"{where}: w {p['w']} is not in 1..24 (the grid is 24 wide)")
    if "h" in p and _check_type(p["h"], int, where, errors, "h") and p["h"] < 1:
        errors.append(f"{where}: h {p['h']} is below 1")
    if "unit" in p:
        _check_type(p["unit"], str, where, errors, "unit")
    for k in ("defaults", "options"):
        if k in p:
            _check_type(p[k], dict, where, errors, k)
    for k in ("overrides", "transformations"):
        if k in p:
            _check_type(p[k], list, where, errors, k)
    defaults = p.get("defaults")
    named = defaults.get("mappings") if isinstance(defaults, dict) else None
    if isinstance(named, str) and named not in mappings:
        errors.append(f"{where}: defaults.mappings names {named!r}, which the file's "
                      "mappings do not define")


def validate(path, data):
    """-> error strings for one parsed dashboard.json, each naming the file and panel."""
    name = str(path)
    if not isinstance(data, dict):
        return [f"{name}: not a JSON object"]
    errors = []
    _check_keys(data, _TOP_KEYS, name, errors)
    if not isinstance(data.get("row"), str) or not data["row"].strip():
        errors.append(f"{name}: no row (the title of the type's row)")
    mappings = data.get("mappings", {})
    if not isinstance(mappings, dict) or not all(isinstance(v, list) for v in mappings.values()):
        errors.append(f"{name}: mappings must map names to lists of Grafana value mappings")
        mappings = {}
    if "non_connection_phases" in data:
        expr = data["non_connection_phases"]
        if not isinstance(expr, str) or not expr.strip():
            errors.append(f"{name}: non_connection_phases must be a PromQL expression")
        else:
            _check_expr(expr, f"{name}: non_connection_phases", errors)
            op = _top_level_set_operator(expr)
            if op:
                # The generator appends it to `... unless on (phase)`.
                errors.append(f"{name}: non_connection_phases has a top-level `{op}`: "
                              "put the expression in parentheses")
    panels = data.get("panels")
    if not isinstance(panels, list) or not panels:
        errors.append(f"{name}: panels must be a non-empty list")
        return errors
    titles = set()
    for i, p in enumerate(panels, 1):
        title = p.get("title") if isinstance(p, dict) else None
        where = f"{name}: panel {i}" + (f" {title!r}" if title else "")
        _check_panel(p, where, mappings, errors)
        if title and title in titles:
            errors.append(f"{where}: a second panel with this title")
        titles.add(title)
    return errors


def load(root):
    """-> [(path, contribution)] for every type's file, in folder order.

    Raises ContributionError listing every problem of every file."""
    out, errors = [], []
    for path in files(root):
        shown = path.relative_to(root)
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            errors.append(f"{shown}: invalid JSON: {e}")
            continue
        problems = validate(shown, data)
        errors += problems
        if not problems:
            out.append((shown, data))
    if errors:
        raise ContributionError("\n".join(errors))
    return out
