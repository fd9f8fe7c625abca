#!/usr/bin/env python3
"""Shards of one config, as real processes on loopback (ctest `shards`).

For N = 1..4 it starts N canaryd processes with the same config of 400 probes
(`--shard I --total-shards N --web.listen-address 127.0.0.1:PORT`) and reads
each one's state API and /metrics. It checks that:
  - the shards' probe sets are disjoint and together are the whole config;
  - each shard's /metrics and state API show only its own probes, and it
    exports canary_shard_info, canary_probes_assigned and
    canary_probes_configured as the rules expect;
  - from N to N+1 shards, a probe that moves goes to the new shard, and about
    1/(N+1) of them move (printed; bounded loosely, it is a hash);
  - a shard at or above the total, a non-number and a pod name without an
    ordinal are refused with exit 2 and a message, and --shard-from-pod-name
    takes the ordinal from POD_NAME.
What killing a shard does to the alerts is deploy/prometheus/tests/shards.yml.

Usage: check_shards.py CANARYD_BINARY
"""
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PROBES = 400
TOTAL_TIMEOUT = 240

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _child_setup():
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with this script


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def metric_lines(text, name):
    return [l for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " ")]


def write_config(folder):
    # Probes of a closed port with a long interval: the point is who owns
    # them, not what they find.
    lines = ["global:", "  labels: {env: test, location: loopback}", "probes:"]
    for i in range(PROBES):
        lines += [f"  - name: probe-{i:03d}", "    type: http", "    category: infrastructure",
                  "    interval: 300s", "    timeout: 1s",
                  "    http: {url: \"http://127.0.0.1:1/health\"}"]
    path = os.path.join(folder, "shards.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Shard:
    def __init__(self, binary, config, index, total, log_dir):
        self.port = free_port()
        self.log = open(os.path.join(log_dir, f"shard-{total}-{index}.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", config, "--shard", str(index), "--total-shards",
             str(total), "--web.listen-address", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_child_setup)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"FAIL: a shard exited with {self.proc.returncode}: "
                                 f"see {self.log.name}")
            try:
                if get(self.url("/-/ready")):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"FAIL: a shard was not ready in time ({self.log.name})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_shards(binary, config, total, log_dir, deadline):
    shards = [Shard(binary, config, i, total, log_dir) for i in range(total)]
    try:
        owned = []
        for i, s in enumerate(shards):
            s.wait_ready(deadline)
            state = json.loads(get(s.url("/api/v1/state")))
            names = {p["name"] for p in state["probes"]}
            metrics = get(s.url("/metrics"))
            # /metrics shows the same probes as the state API, and only those.
            info = metric_lines(metrics, "canary_probe_info")
            in_metrics = {l.split('probe="')[1].split('"')[0] for l in info}
            assert in_metrics == names, f"shard {i}/{total}: /metrics and state API differ"
            shard_info = metric_lines(metrics, "canary_shard_info")
            assert len(shard_info) == 1 and f'shard="{i}"' in shard_info[0] and \
                f'total_shards="{total}"' in shard_info[0] and \
                'location="loopback"' in shard_info[0], shard_info
            assigned = [l for l in metric_lines(metrics, "canary_probes_assigned")
                        if 'type="http"' in l]
            configured = [l for l in metric_lines(metrics, "canary_probes_configured")
                          if 'type="http"' in l]
            assert float(assigned[0].rsplit(" ", 1)[1]) == len(names), assigned
            assert float(configured[0].rsplit(" ", 1)[1]) == PROBES, configured
            owned.append(names)
        return owned
    finally:
        for s in shards:
            s.stop()


def refused(binary, config, args, env, expect):
    r = subprocess.run([binary, "run", "--config", config, *args], capture_output=True,
                       text=True, timeout=30, env={**os.environ, **env})
    assert r.returncode == 2, f"{args} {env}: exit {r.returncode}, {r.stderr!r}"
    assert expect in r.stderr, f"{args} {env}: {r.stderr!r} lacks {expect!r}"


def main():
    binary = sys.argv[1]
    deadline = time.monotonic() + TOTAL_TIMEOUT
    with tempfile.TemporaryDirectory(prefix="canaryd-shards-") as folder:
        config = write_config(folder)
        everything = {f"probe-{i:03d}" for i in range(PROBES)}
        owners = {}
        for total in range(1, 5):
            owned = run_shards(binary, config, total, folder, deadline)
            union = set().union(*owned)
            assert union == everything, f"N={total}: {len(everything - union)} probes run nowhere"
            assert sum(len(o) for o in owned) == PROBES, f"N={total}: a probe runs twice"
            now = {name: i for i, names in enumerate(owned) for name in names}
            sizes = " ".join(str(len(o)) for o in owned)
            if owners:
                moved = [n for n in everything if owners[n] != now[n]]
                wrong = [n for n in moved if now[n] != total - 1]
                assert not wrong, f"N={total - 1}->{total}: {wrong[:5]} moved between old shards"
                share = len(moved) / PROBES
                print(f"N={total - 1}->{total}: {len(moved)} of {PROBES} probes moved "
                      f"({share:.1%}; ideal 1/{total} = {1 / total:.1%}); shard sizes {sizes}")
                # Loose bounds: 400 draws of a 1/N event.
                assert 0.5 / total < share < 1.6 / total, share
            else:
                print(f"N=1: one shard runs all {PROBES} probes")
            owners = now

        refused(binary, config, ["--shard", "3", "--total-shards", "3"], {}, "is not below")
        refused(binary, config, ["--total-shards", "0"], {}, "at least 1")
        refused(binary, config, ["--shard-from-pod-name", "--total-shards", "3"],
                {"POD_NAME": "canaryd"}, "does not end in -<ordinal>")
        refused(binary, config, ["--shard-from-pod-name", "--total-shards", "3"],
                {"POD_NAME": "canaryd-7"}, "is not below")
        refused(binary, config, ["--web.listen-address", "localhost:x"], {}, "not host:port")
        # The ordinal of a StatefulSet pod picks the shard.
        port = free_port()
        env = {**os.environ, "POD_NAME": "canaryd-eu-2"}
        log = open(os.path.join(folder, "pod.log"), "w")
        p = subprocess.Popen([binary, "run", "--config", config, "--shard-from-pod-name",
                              "--total-shards", "4", "--web.listen-address",
                              f"127.0.0.1:{port}"], env=env, stdout=log,
                             stderr=subprocess.STDOUT, preexec_fn=_child_setup)
        try:
            text = ""
            while time.monotonic() < deadline and 'shard="2"' not in text:
                try:
                    text = get(f"http://127.0.0.1:{port}/metrics")
                except OSError:
                    time.sleep(0.1)
            assert 'shard="2"' in text, "--shard-from-pod-name did not pick shard 2"
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
            log.close()
    print("shards: disjoint and complete for N=1..4, movement as a consistent hash; PASS")


if __name__ == "__main__":
    main()
