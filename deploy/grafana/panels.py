"""Building blocks of Grafana dashboard JSON, for generate_dashboards.py.

Each builder returns one panel in the dashboards' common style (every query
through the $datasource variable, the options all panels of a kind share);
its size rides along as _w/_h until layout() gives every panel an id and a
place on the grid.
"""

DS = {"type": "prometheus", "uid": "${datasource}"}

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


def thresholds(*steps):
    """steps: (value or None, color) pairs, lowest first."""
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in steps]}


RATIO_THRESHOLDS = thresholds((None, RED), (0.75, ORANGE), (0.9, GREEN))
RESULT_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "FAIL", "color": RED, "index": 0},
    "1": {"text": "OK", "color": GREEN, "index": 1}}}]


def target(expr, legend="__auto", instant=False, fmt=None, ref=None):
    t = {"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend,
         "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    if ref:
        t["refId"] = ref
    return t


def panel(kind, title, targets, w, h, desc, unit=None, defaults=None, options=None,
          custom=None, overrides=None, transformations=None, links=None):
    if not isinstance(targets, list):
        targets = [targets]
    for i, t in enumerate(targets):
        t.setdefault("refId", chr(ord("A") + i))
    fd = {"color": {"mode": "thresholds" if kind in ("stat", "bargauge", "gauge", "table",
                                                      "state-timeline") else "palette-classic"}}
    if unit:
        fd["unit"] = unit
    if custom:
        fd["custom"] = custom
    if links:
        fd["links"] = links
    fd.update(defaults or {})
    p = {"type": kind, "title": title, "description": desc, "datasource": DS,
         "targets": targets, "fieldConfig": {"defaults": fd, "overrides": overrides or []},
         "options": options or {}, "_w": w, "_h": h}
    if transformations:
        p["transformations"] = transformations
    return p


def stat(title, targets, desc, unit=None, w=4, h=4, text_mode="auto", defaults=None,
         graph=False, links=None):
    return panel("stat", title, targets, w, h, desc, unit=unit, defaults=defaults, links=links,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "colorMode": "background", "graphMode": "area" if graph else "none",
                          "textMode": text_mode, "justifyMode": "auto",
                          "orientation": "auto"})


def timeseries(title, targets, desc, unit=None, w=12, h=8, bars=False, stack=False,
               defaults=None, links=None, overrides=None):
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
              "fillOpacity": 80 if bars else 10, "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    return panel("timeseries", title, targets, w, h, desc, unit=unit, custom=custom,
                 defaults=defaults, links=links, overrides=overrides,
                 options={"legend": {"displayMode": "table", "placement": "right",
                                     "showLegend": True, "calcs": ["lastNotNull"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}})


def bargauge(title, targets, desc, unit=None, w=12, h=8, defaults=None, sort=None, links=None):
    # Bars keep the order of the instant query's series: sort in PromQL.
    if sort:
        for t in targets if isinstance(targets, list) else [targets]:
            t["expr"] = "%s(%s)" % ("sort" if sort == "asc" else "sort_desc", t["expr"])
    return panel("bargauge", title, targets, w, h, desc, unit=unit, defaults=defaults,
                 links=links,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "orientation": "horizontal", "displayMode": "gradient",
                          "showUnfilled": True, "minVizHeight": 10, "minVizWidth": 0})


def ratio_stat(title, expr, legend, desc):
    """A success ratio, now: red below 75 %, orange below 90 %."""
    return stat(title, target(expr, legend, instant=True), desc, unit="percentunit",
                defaults={"thresholds": RATIO_THRESHOLDS, "decimals": 1})


def state_timeline(title, targets, desc, unit=None, w=24, h=8, mappings=None, defaults=None):
    d = {"mappings": mappings or RESULT_MAPPINGS, "thresholds": thresholds((None, BLUE))}
    d.update(defaults or {})
    return panel("state-timeline", title, targets, w, h, desc, unit=unit, defaults=d,
                 custom={"fillOpacity": 80, "lineWidth": 0},
                 options={"showValue": "never", "mergeValues": True, "rowHeight": 0.9,
                          "alignValue": "left",
                          "legend": {"showLegend": False, "displayMode": "list",
                                     "placement": "bottom"},
                          "tooltip": {"mode": "single", "sort": "none"}})


def table(title, targets, desc, w=12, h=8, transformations=None, overrides=None, unit=None,
          defaults=None, sort=None):
    return panel("table", title, targets, w, h, desc, unit=unit, defaults=defaults,
                 overrides=overrides, transformations=transformations,
                 custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                 options={"showHeader": True, "cellHeight": "sm",
                          "footer": {"show": False, "reducer": ["sum"], "fields": ""},
                          "sortBy": sort or []})


def gauge(title, targets, desc, unit=None, w=6, h=4, defaults=None):
    return panel("gauge", title, targets, w, h, desc, unit=unit, defaults=defaults,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "showThresholdLabels": False, "showThresholdMarkers": True})


def heatmap(title, expr, desc, w=12, h=8):
    p = panel("heatmap", title, target(expr, legend="{{le}}", fmt="heatmap"), w, h, desc,
              custom={"scaleDistribution": {"type": "linear"},
                      "hideFrom": {"legend": False, "tooltip": False, "viz": False}})
    p["options"] = {"calculate": False, "cellGap": 1, "yAxis": {"axisPlacement": "left",
                                                                 "unit": "s"},
                    "rowsFrame": {"layout": "auto"},
                    "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64,
                              "exponent": 0.5, "fill": "dark-orange", "reverse": False},
                    "cellValues": {"unit": "short"}, "exemplars": {"color": "orange"},
                    "filterValues": {"le": 1e-9}, "legend": {"show": True},
                    "tooltip": {"show": True, "yHistogram": False},
                    "showValue": "never"}
    return p


def organize(exclude=(), rename=None, order=None):
    opts = {"excludeByName": {k: True for k in exclude}, "renameByName": rename or {},
            "indexByName": {k: i for i, k in enumerate(order or [])}}
    return {"id": "organize", "options": opts}


HIDDEN = ("Time", "__name__", "job", "instance")


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(items):
    """Assigns ids and grid positions: panels fill rows of 24 columns."""
    out, x, y, line_h, next_id = [], 0, 0, 0, 1
    for it in items:
        if it["type"] == "row":
            if x:
                y, x, line_h = y + line_h, 0, 0
            it["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y += 1
        else:
            w, h = it.pop("_w"), it.pop("_h")
            if x + w > 24:
                y, x, line_h = y + line_h, 0, 0
            it["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            x += w
            line_h = max(line_h, h)
        it["id"] = next_id
        next_id += 1
        out.append(it)
    return out


def merge(into, extra):
    """Objects merge key by key; any other value replaces."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


# By Grafana panel type: what a probe type's dashboard.json may ask for (type_panels.py).
BUILDERS = {"stat": stat, "timeseries": timeseries, "bargauge": bargauge, "table": table,
            "gauge": gauge, "state-timeline": state_timeline}
