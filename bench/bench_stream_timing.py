#!/usr/bin/env python3
"""Stream timing accuracy: 200 SSE streams open at once (`canaryd once` runs
every probe of its config in parallel) against bench/sse_server, a punctual
event stream: after it has read a request it sends event k (`delta`, a token, k = 0 ..
24) at t0 + 50 ms + k x 20 ms and then `event: done` 20 ms later, each from a
nanosecond timerfd, with its send timestamp and lateness in the data.
canaryd (the release build) measures each stream (the agent probe's
`transport: sse`), and the run's details hold what /metrics aggregates:
first_event_seconds (from sending the request), max_gap_seconds and
events_per_second (events after the first per second between the first and
the last, so the mean gap is its inverse). Errors against the server's
schedule, over every stream of every round:

  first event: first_event_seconds - 50 ms
  mean gap:    1 / events_per_second - 20 ms
  max gap:     max_gap_seconds - 20 ms (each run's worst gap)

The first-event error holds the request's transit to the server (the
schedule starts once the server has read it; canaryd's clock when the
request is about to leave), as a real time to first token does. The server
also reports what each stream really did by its send times (GET /_streams,
paired by the probe's ?i=N), so each error splits into the server's
lateness (actual - schedule) and canaryd's own (measured - actual: the
request's transit, loopback delivery and canaryd's wake-up). The server's
schedule starts when a request arrived (the kernel's receive stamp), so
its own delay in reading 200 requests that come at once is its lateness,
not canaryd's error. Target: median
error < 1 ms (shown met / not met, never asserted).

Rounds are bounded in count and time (BENCH_STREAM_ROUNDS, 5;
BENCH_STREAM_BUDGET, s, 120); everything is on loopback and every child is
stopped by its PID (bench/common.py).

Knobs: BENCH_STREAM_PROBES (200), BENCH_STREAM_FIRST_MS (50),
BENCH_STREAM_EVERY_MS (20), BENCH_STREAM_EVENTS (tokens, 25).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

SSE_SERVER = os.path.join(c.BUILD, "bench", "sse_server")


def knob(name, default):
    return int(c.env_seconds(name, default))


def sse_server_binary():
    """The CMake-built tool, or one built here with g++ (Debian's, no other
    dependency) when the build tree has none."""
    if os.path.exists(SSE_SERVER):
        return SSE_SERVER
    out = os.path.join(c.tmpdir("sse-server-build"), "sse_server")
    src = os.path.join(c.BENCH_DIR, "sse_server.cc")
    subprocess.run(["g++", "-std=c++20", "-O2", "-o", out, src], check=True, timeout=300)
    return out


def start_server(binary, first_ms, every_ms, events):
    d = c.tmpdir("sse-server")
    ready = os.path.join(d, "ready")
    p = c.start("sse_server", [binary, "--first-ms", str(first_ms), "--every-ms", str(every_ms),
                               "--events", str(events), "--max-conns", "20000",
                               "--max-seconds", "900", "--ready-file", ready],
                log_path=os.path.join(d, "sse_server.log"))
    return p, int(c.wait_ready_file(p, ready, "sse_server")[1])


def config(port, probes, timeout_s):
    lines = ["global:", "  labels: {env: bench}", "probes:"]
    for i in range(probes):
        lines.append(
            f"- {{name: stream-{i:04d}, type: agent_pipeline, interval: 60s, "
            f"timeout: {timeout_s}s, agent_pipeline: {{transport: sse, sse: {{url: "
            f"\"http://127.0.0.1:{port}/sse?i={i}\", end_event: done}}, "
            f"send: {{json: {{q: \"{{{{run_id}}}}\"}}}}, events: [{{type: delta}}]}}}}")
    return "\n".join(lines) + "\n"


def once(config_path, timeout):
    """One `canaryd once --json`: its results (it exits 1 if any run failed)."""
    p = c.start("canaryd once", [c.CANARYD, "once", "--config", config_path, "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            c.stop(p)
        c.forget(p)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"canaryd once failed ({p.returncode}): {err.decode(errors='replace')}")
    return json.loads(out)["results"]


def stats(values):
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "median": c.percentile(v, 0.5), "p99": c.percentile(v, 0.99),
            "min": v[0], "max": v[-1]}


def main():
    if not os.path.exists(c.CANARYD):
        raise SystemExit(f"bench_stream_timing.py: {c.CANARYD} missing "
                         "(bash scripts/build.sh release builds it)")
    c.raise_fd_limit()
    probes = knob("BENCH_STREAM_PROBES", 200)
    first_ms = c.env_seconds("BENCH_STREAM_FIRST_MS", 50)
    every_ms = c.env_seconds("BENCH_STREAM_EVERY_MS", 20)
    events = knob("BENCH_STREAM_EVENTS", 25)
    rounds = knob("BENCH_STREAM_ROUNDS", 5)
    budget = c.env_seconds("BENCH_STREAM_BUDGET", 120)
    stream_s = (first_ms + events * every_ms) / 1000
    server, port = start_server(sse_server_binary(), first_ms, every_ms, events)
    d = c.tmpdir("stream-timing")
    path = os.path.join(d, "canaryd.yaml")
    with open(path, "w") as f:
        f.write(config(port, probes, max(5, int(stream_s * 4) + 1)))

    first, mean_gap, max_gap, failures, done = [], [], [], {}, 0
    own = {"first": [], "mean_gap": [], "max_gap": []}
    late = {"first": [], "mean_gap": [], "max_gap": []}
    started = time.monotonic()
    for _ in range(rounds):
        if time.monotonic() - started > budget:
            break
        results = once(path, timeout=60)
        actual = json.loads(c.http_get(f"http://127.0.0.1:{port}/_streams")[1])
        for r in results:
            det = r.get("details", {})
            if not r.get("success"):
                failures[r.get("reason")] = failures.get(r.get("reason"), 0) + 1
                continue
            measured = {"first": det["first_event_seconds"],
                        "mean_gap": 1 / det["events_per_second"],
                        "max_gap": det["max_gap_seconds"]}
            first.append(measured["first"] - first_ms / 1000)
            mean_gap.append(measured["mean_gap"] - every_ms / 1000)
            max_gap.append(measured["max_gap"] - every_ms / 1000)
            a = actual.get(str(int(r["name"].rsplit("-", 1)[1])))
            if a:
                sent = {"first": a[0] / 1e9, "mean_gap": a[1] / 1e9 / (a[3] - 1),
                        "max_gap": a[2] / 1e9}
                schedule = {"first": first_ms / 1000, "mean_gap": every_ms / 1000,
                            "max_gap": every_ms / 1000}
                for k in own:
                    own[k].append(measured[k] - sent[k])
                    late[k].append(sent[k] - schedule[k])
        done += 1
    server_stats = json.loads(c.http_get(f"http://127.0.0.1:{port}/_stats")[1])
    c.stop(server)
    c.forget(server)

    r = {"probes": probes, "rounds": done, "events_per_stream": events + 1,
         "first_ms": first_ms, "every_ms": every_ms, "failures": failures,
         "first_event_error": stats(first), "mean_gap_error": stats(mean_gap),
         "max_gap_error": stats(max_gap), "server": server_stats,
         "canaryd_own": {k: stats(v) for k, v in own.items()},
         "server_late": {k: stats(v) for k, v in late.items()}}
    row = lambda s: [c.signed_ms(s.get("median"), 3), c.signed_ms(s.get("p99"), 3),  # noqa: E731
                     c.signed_ms(s.get("max"), 3)]
    c.print_columns(
        f"stream timing: {probes} SSE streams at once x {done} rounds, "
        f"{events + 1} events each (first at {first_ms:g} ms, then every {every_ms:g} ms)",
        ["median", "p99", "max"],
        [("first event - schedule", row(r["first_event_error"])),
         ("mean gap - schedule", row(r["mean_gap_error"])),
         ("max gap - schedule", row(r["max_gap_error"])),
         ("  first event: server late (sent - schedule)", row(r["server_late"]["first"])),
         ("  first event: canaryd's own (measured - sent)", row(r["canaryd_own"]["first"])),
         ("  mean gap: server late", row(r["server_late"]["mean_gap"])),
         ("  mean gap: canaryd's own", row(r["canaryd_own"]["mean_gap"])),
         ("  max gap: server late", row(r["server_late"]["max_gap"])),
         ("  max gap: canaryd's own", row(r["canaryd_own"]["max_gap"])),
         ("sse_server's own lateness (its clock)",
          [c.ms(server_stats["late_p50_us"] / 1e6, 3), c.ms(server_stats["late_p99_us"] / 1e6, 3),
           c.ms(server_stats["late_max_us"] / 1e6, 3)]),
         ("  requests waiting in its socket before it read them",
          [c.ms(server_stats["read_delay_p50_us"] / 1e6, 3),
           c.ms(server_stats["read_delay_p99_us"] / 1e6, 3), ""])])
    print(f"  streams measured: {r['first_event_error']['n']:,}; failed runs: "
          f"{c.fmt_reasons(failures)}")
    met = all(abs(s.get("median", 1)) < 0.001 for s in (r["first_event_error"],
                                                         r["mean_gap_error"]))
    print(f"  target (median error < 1 ms, first event and gaps): {'met' if met else 'not met'}")
    met_own = all(abs(s.get("median", 1)) < 0.001 for s in (r["canaryd_own"]["first"],
                                                             r["canaryd_own"]["mean_gap"]))
    print(f"  the same for canaryd's own error: {'met' if met_own else 'not met'}")
    r["met"], r["met_own"] = met, met_own
    c.save_result("stream_timing", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
