#!/usr/bin/env python3
"""(b) Latency accuracy: canaryd's reported total vs the true latency.

nginx's echo module answers /sleep (a listener of its own) after
`echo_sleep 0.05`: a known 50 ms. canaryd runs LAT_PROBES probes on it, each
every 200 ms, with state_history 1000; its reported total for a run is
history[].duration_seconds from /api/v1/state/<probe> (libcurl's
CURLINFO_TOTAL_TIME inside canaryd). Runs that finished inside the window are
kept.

Two ways of saying what "true" is, both printed:

1. Direct curl, matched percentiles (the issue's method, in the table):
   the reference distribution is libcurl's time_total for the same URL on a
   fresh connection, measured outside canaryd by bench/loadgen --fresh
   (FRESH_CONNECT + FORBID_REUSE, CURLINFO_TOTAL_TIME_T: what
   `curl -w '%{time_total}'` prints) at the same rate, over the same window,
   concurrently; plus CURL_SAMPLES runs of the real `curl -w '%{time_total}'`
   as a cross-check. Error = p50(canaryd) - p50(reference), and the same at p99.

2. Wire truth, per request (bench/wirecap.py): kernel timestamps of the
   packets of each of canaryd's own connections on lo. What the network and
   nginx took for a run is (SYN -> SYN-ACK) + (request sent -> last response
   byte); error per run = reported - that. Its p50 and p99 are printed, and the
   loadgen reference gets the same treatment; canaryd is judged on its error
   beyond the loadgen's (what canaryd adds to what curl itself would report).
   Needs CAP_NET_RAW; skipped with a note if the capture can't be opened.

Why both: the target's own latency is not a constant. nginx's timers have
millisecond granularity and fire on its next wake-up, so /sleep takes
anywhere from ~49.5 to ~52 ms depending on when in the millisecond a request
lands and on what else nginx is doing. Two clients with different timing
patterns (canaryd's scheduler, the loadgen's pacing) can see distributions
shifted by a few tenths of a millisecond that neither measures wrongly.
Method 1 can't tell that from measurement error; method 2 can.

Phases: idle (only the /sleep probes), then under load (plus BACKGROUND probes
at a 1 s interval on /health of the same nginx = 1000 probes/s).

Knobs: BENCH_WARMUP (5 s; at least 10 s under load), BENCH_LAT_WINDOW (30 s per
phase), BENCH_BACKGROUND (1000).
"""

import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (LOADGEN, Canaryd, Hiccups, canaryd_config, env_seconds, forget, free_port,
                    http_get, log, ms, percentile, raise_fd_limit, save_result, scrape, signed_ms,
                    start, start_nginx, sum_samples, tmpdir)

WARMUP = env_seconds("BENCH_WARMUP", 5)
WINDOW = env_seconds("BENCH_LAT_WINDOW", 30)
BACKGROUND = int(env_seconds("BENCH_BACKGROUND", 1000))
LAT_PROBES = 16
LAT_INTERVAL_MS = 200  # each probe: 5 runs/s; 80 samples/s in all
CURL_SAMPLES = 100
TARGET_P50 = 0.0001
TARGET_P99 = 0.0005


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def curl_cli_samples(url, count, deadline):
    out = []
    for _ in range(count):
        if time.monotonic() >= deadline:
            break
        r = subprocess.run(["curl", "-q", "-s", "-o", "/dev/null", "--noproxy", "*",
                            "--max-time", "5", "-w", "%{time_total}", url],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        if r.returncode == 0:
            out.append(float(r.stdout))
    return out


def open_capture(port):
    try:
        from wirecap import WireCapture
        return WireCapture(port).start(), None
    except (OSError, PermissionError) as e:
        return None, f"packet capture unavailable ({e}); wire-truth figures skipped"


def quantiles(values):
    return {"n": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}


def phase(name, sleep_port, health_url, background):
    from wirecap import pair
    sleep_url = f"http://127.0.0.1:{sleep_port}/sleep"
    listen = free_port()
    iv = f"{LAT_INTERVAL_MS}ms"
    probes = [(f"lat{i:02d}", f"{sleep_url}?probe=lat{i:02d}", iv, iv) for i in range(LAT_PROBES)]
    probes += [(f"bg{i:04d}", health_url, "1s", "1s") for i in range(background)]
    log(f"{name}: {LAT_PROBES} probes every {LAT_INTERVAL_MS} ms on /sleep"
        + (f" + {background} probes at 1 s on /health (background)" if background else ""))
    d = Canaryd(f"lat-{name.replace(' ', '-')}", canaryd_config(listen, probes, state_history=1000))
    time.sleep(max(WARMUP, 10) if background else WARMUP)

    cap, cap_note = open_capture(sleep_port)
    time.sleep(0.3)
    samples_file = os.path.join(tmpdir("lat-ref"), "ref.txt")
    rate = LAT_PROBES * 1000 / LAT_INTERVAL_MS
    w_start = time.time()
    deadline = time.monotonic() + WINDOW
    hiccups = Hiccups(WINDOW)
    lg = start("loadgen", [LOADGEN, "--url", f"{sleep_url}?probe=ref", "--fresh",
                           "--rate", str(rate), "--concurrency", "64", "--duration", str(WINDOW),
                           "--timeout-ms", "2000", "--samples-out", samples_file],
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cli = curl_cli_samples(f"{sleep_url}?probe=cli", CURL_SAMPLES, deadline - 0.5)
    out, err = lg.communicate(timeout=WINDOW + 30)
    forget(lg)
    if lg.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.decode(errors='replace')}")
    lg_result = json.loads(out)
    w_end = w_start + lg_result["window_seconds"]
    stalls = hiccups.result()
    time.sleep(0.5)  # the last runs of the window finish and are recorded
    if cap:
        cap.stop()
    with open(samples_file) as f:
        ref_rows = [tuple(float(x) for x in line.split()) for line in f if line.strip()]
    ref = [t for _, t, _ in ref_rows]

    reported, failed, per_probe = [], 0, {}
    for i in range(LAT_PROBES):
        pname = f"lat{i:02d}"
        _, body = http_get(f"{d.base}/api/v1/state/{pname}")
        for h in json.loads(body)["history"]:
            t = parse_time(h["time"])
            if not (w_start <= t <= w_end):
                continue
            if h["success"]:
                reported.append(h["duration_seconds"])
                per_probe.setdefault(pname, []).append((t, h["duration_seconds"]))
            else:
                failed += 1
    bg_fail = 0.0
    if background:
        s, _, _, _ = scrape(d.base, ["canary_probe_failures_total"])
        bg_fail = sum_samples(s, "canary_probe_failures_total",
                              lambda l: l.get("probe", "").startswith("bg"))
    d.stop()

    r = {"reported": quantiles(reported), "reported_failed": failed,
         "reference": quantiles(ref), "reference_errors": lg_result["errors"],
         "curl_cli": quantiles(cli), "background_failures": bg_fail,
         "hiccups": stalls}
    for tag in ("p50", "p99"):
        r[f"error_{tag}"] = r["reported"][tag] - r["reference"][tag]
        r[f"error_vs_cli_{tag}"] = r["reported"][tag] - r["curl_cli"][tag]
    r["met_p50"] = abs(r["error_p50"]) <= TARGET_P50
    r["met_p99"] = abs(r["error_p99"]) <= TARGET_P99

    log(f"  canaryd reported      n={r['reported']['n']:5d}  p50 {ms(r['reported']['p50'], 3)}"
        f"  p99 {ms(r['reported']['p99'], 3)}  ({failed} failed runs)")
    log(f"  reference (loadgen)   n={r['reference']['n']:5d}  p50 {ms(r['reference']['p50'], 3)}"
        f"  p99 {ms(r['reference']['p99'], 3)}  ({lg_result['errors']} errors)")
    log(f"  curl -w time_total    n={r['curl_cli']['n']:5d}  p50 {ms(r['curl_cli']['p50'], 3)}"
        f"  p99 {ms(r['curl_cli']['p99'], 3)}  (cross-check)")
    log(f"  [1] matched percentiles, canaryd - reference: p50 {signed_ms(r['error_p50'], 3)}, "
        f"p99 {signed_ms(r['error_p99'], 3)}   (canaryd - curl CLI: p50 "
        f"{signed_ms(r['error_vs_cli_p50'], 3)}, p99 {signed_ms(r['error_vs_cli_p99'], 3)})")

    if cap is None or cap.error:
        r["wire_note"] = cap_note or f"capture failed: {cap.error}"
        log(f"  [2] {r['wire_note']}")
    else:
        conns = cap.finished()
        pairs = []
        for pname, rows in per_probe.items():
            pairs += pair(rows, [c for c in conns if c.tag == pname], max_gap=0.1)
        by_port = {}
        for c in conns:
            if c.tag == "ref":
                by_port.setdefault(c.client_port, []).append(c)
        ref_pairs = []
        rows_by_port = {}
        for fin, tot, port in ref_rows:
            rows_by_port.setdefault(int(port), []).append((fin, tot))
        for port, rows in rows_by_port.items():
            ref_pairs += pair(rows, by_port.get(port, []), max_gap=0.1, slack=0.0005)
        pairs = [(a, c) for a, c in pairs if c.served is not None]
        ref_pairs = [(a, c) for a, c in ref_pairs if c.served is not None]
        err = [a - c.served for a, c in pairs]
        ref_err = [a - c.served for a, c in ref_pairs]
        wire = [c.served for _, c in pairs]
        ref_wire = [c.served for _, c in ref_pairs]
        send = [c.req - c.syn for _, c in pairs if c.req]
        ref_send = [c.req - c.syn for _, c in ref_pairs if c.req]
        serve = [c.end - c.req for _, c in pairs if c.req]
        ref_serve = [c.end - c.req for _, c in ref_pairs if c.req]
        r["wire"] = {
            "packets": cap.packets, "paired": len(pairs), "unpaired": len(reported) - len(pairs),
            "canaryd_wire": quantiles(wire),
            "error_p50": percentile(err, 0.5), "error_p99": percentile(err, 0.99),
            "error_max": max(err) if err else None, "error_min": min(err) if err else None,
            "reference_paired": len(ref_pairs), "reference_wire": quantiles(ref_wire),
            "excess_error_p50": percentile(err, 0.5) - percentile(ref_err, 0.5),
            "excess_error_p99": percentile(err, 0.99) - percentile(ref_err, 0.99),
            "syn_to_request_p50": percentile(send, 0.5),
            "reference_syn_to_request_p50": percentile(ref_send, 0.5),
            "request_to_end_p50": percentile(serve, 0.5),
            "reference_request_to_end_p50": percentile(ref_serve, 0.5),
            "reference_error_p50": percentile(ref_err, 0.5),
            "reference_error_p99": percentile(ref_err, 0.99),
        }
        w = r["wire"]
        # canaryd is held to what a direct curl measures for the same kind of
        # request: its error beyond curl's own error.
        w["met_p50"] = w["excess_error_p50"] <= TARGET_P50
        w["met_p99"] = w["excess_error_p99"] <= TARGET_P99
        log(f"  [2] wire truth of canaryd's own runs: n={len(pairs)} paired "
            f"({w['unpaired']} not), served p50 {ms(w['canaryd_wire']['p50'], 3)}, p99 "
            f"{ms(w['canaryd_wire']['p99'], 3)}")
        log(f"      per-run error (reported - served): p50 {signed_ms(w['error_p50'], 3)}, p99 "
            f"{signed_ms(w['error_p99'], 3)}, max {signed_ms(w['error_max'], 3)}; loadgen's own: "
            f"p50 {signed_ms(w['reference_error_p50'], 3)}, p99 "
            f"{signed_ms(w['reference_error_p99'], 3)} (n={len(ref_pairs)})")
        log(f"      canaryd's error beyond direct curl's: p50 {signed_ms(w['excess_error_p50'], 3)},"
            f" p99 {signed_ms(w['excess_error_p99'], 3)}")
        log(f"      wire p50, canaryd vs loadgen: served {ms(w['canaryd_wire']['p50'], 3)} vs "
            f"{ms(w['reference_wire']['p50'], 3)}; SYN->request "
            f"{ms(w['syn_to_request_p50'], 3)} vs {ms(w['reference_syn_to_request_p50'], 3)}; "
            f"request->response end {ms(w['request_to_end_p50'], 3)} vs "
            f"{ms(w['reference_request_to_end_p50'], 3)}")
    if stalls:
        a = stalls["all"]
        log(f"  this machine's own stalls in the window (bench/hiccup, 1 ms sleeps): p50 "
            f"{ms(a['p50'], 3)}, p99 {ms(a['p99'], 3)}, max {ms(a['max'], 3)}: the floor "
            "under any p99 here")
    if background:
        log(f"  background probes: {bg_fail:.0f} failures")
    return r


def main():
    raise_fd_limit()
    log(f"== (b) latency accuracy against a known 50 ms (echo_sleep 0.05), window "
        f"{WINDOW:.0f} s per phase ==")
    log("method [1]: matched percentiles of canaryd's reported total (state history) and of "
        "libcurl's time_total for the same URL on fresh connections, measured outside canaryd "
        "(loadgen --fresh, same rate and window, concurrently; `curl -w %{time_total}` as a "
        "cross-check)")
    log("method [2]: per run, canaryd's reported total minus what the network and nginx took "
        "for that very run (kernel packet timestamps on lo: SYN to SYN-ACK, plus request sent "
        "to last response byte); canaryd judged on its error beyond a direct libcurl client's")
    nginx, health_port, sleep_port = start_nginx("lat", echo=True)
    health_url = f"http://127.0.0.1:{health_port}/health"
    idle = phase("idle", sleep_port, health_url, 0)
    loaded = phase("under load", sleep_port, health_url, BACKGROUND)
    ok = all(p[k] for p in (idle, loaded) for k in ("met_p50", "met_p99"))
    wire_ok = None
    if "wire" in idle and "wire" in loaded:
        wire_ok = all(p["wire"][k] for p in (idle, loaded) for k in ("met_p50", "met_p99"))
    log(f"result: targets p50 <= 0.1 ms, p99 <= 0.5 ms: [1] vs direct curl "
        f"{'met' if ok else 'NOT met'}; [2] vs wire "
        f"{'n/a' if wire_ok is None else ('met' if wire_ok else 'NOT met')}")
    save_result("b_latency", {"idle": idle, "loaded": loaded, "background_rate": BACKGROUND,
                              "target_p50": TARGET_P50, "target_p99": TARGET_P99, "met": ok,
                              "wire_met": wire_ok})


if __name__ == "__main__":
    main()
