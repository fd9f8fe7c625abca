#!/usr/bin/env python3
"""Data-store probes at scale: 2,000 Redis probes and 500 PostgreSQL probes at
a 1 s interval against a local redis-server and a local PostgreSQL 15 cluster
for a measured window (60 s by default, after a warm-up).

Reports canaryd's CPU % (utime+stime over the window / wall time), RSS
(current and peak), p50/p99 scheduler lag (from canary_scheduler_lag_seconds
deltas over the window), runs and failures, and the open connection count on
both servers before, during and after: after canaryd stops it must be back to
the baseline (nothing leaks).

Knobs: BENCH_WINDOW (s, default 60), BENCH_WARMUP (s, default 10),
BENCH_REDIS_PROBES (2000), BENCH_PG_PROBES (500), BENCH_PG_AUTH (scram-sha-256
or md5; the role's password hashing, which dominates the client-side CPU of
a PostgreSQL login).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as c  # noqa: E402

REDIS_PW = "bench-redis-secret"
PG_SUPER_PW = "bench-super-secret"
PG_PW = "bench-canary-secret"


def start_redis():
    d = c.tmpdir("redis")
    port = c.free_port()
    conf = os.path.join(d, "redis.conf")
    with open(conf, "w") as f:
        f.write(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
                f"requirepass {REDIS_PW}\nmaxclients 20000\n")
    p = c.start("redis-server", ["redis-server", conf], log_path=os.path.join(d, "redis.log"))
    for _ in range(100):
        if redis_cli(port, "PING").strip() == "PONG":
            return p, port
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def redis_cli(port, *args):
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                       env={**os.environ, "REDISCLI_AUTH": REDIS_PW},
                       capture_output=True, text=True, timeout=30)
    return r.stdout


def redis_clients(port):
    for line in redis_cli(port, "INFO", "clients").splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":")[1]) - 1  # minus redis-cli itself
    return -1


def start_postgres(auth):
    d = c.tmpdir("pg")
    os.chmod(d, 0o755)
    data, sock = os.path.join(d, "data"), os.path.join(d, "sock")
    os.makedirs(data)
    os.makedirs(sock)
    pwfile = os.path.join(d, "pw")
    with open(pwfile, "w") as f:
        f.write(PG_SUPER_PW + "\n")
    for path in (data, sock, pwfile):
        subprocess.run(["chown", "postgres", path], check=True)
    pgbin = sorted(os.listdir("/usr/lib/postgresql"))[-1]
    pgbin = f"/usr/lib/postgresql/{pgbin}/bin"
    as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
    subprocess.run(as_pg + [f"{pgbin}/initdb", "-D", data, "-U", "postgres", f"--auth={auth}",
                            f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    port = c.free_port()
    p = c.start("postgres", as_pg + [f"{pgbin}/postgres", "-D", data, "-p", str(port),
                                     "-c", "listen_addresses=127.0.0.1", "-k", sock,
                                     "-c", "fsync=off", "-c", "max_connections=400",
                                     "-c", f"password_encryption={auth}"],
                log_path=os.path.join(d, "postgres.log"))
    for _ in range(150):
        try:
            psql(port, "SELECT 1")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.2)
    psql(port, f"CREATE ROLE canary LOGIN PASSWORD '{PG_PW}'")
    return p, port


def psql(port, sql):
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-AtXqc",
                        sql], env={**os.environ, "PGPASSWORD": PG_SUPER_PW},
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.strip()


def pg_sessions(port, attempts=10):
    # Under 500 logins a second, one monitoring login can lose a race for a
    # slot or time out; ask again rather than abort the benchmark.
    for i in range(attempts):
        try:
            return int(psql(port, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                  "'client backend' AND pid <> pg_backend_pid()"))
        except subprocess.CalledProcessError as e:
            if i == attempts - 1:
                c.log(f"  psql failed: {e.stderr.strip()}")
                return -1
            time.sleep(0.2)


def main():
    c.raise_fd_limit()
    window = c.env_seconds("BENCH_WINDOW", 60)
    warmup = c.env_seconds("BENCH_WARMUP", 10)
    n_redis = int(os.environ.get("BENCH_REDIS_PROBES", 2000))
    n_pg = int(os.environ.get("BENCH_PG_PROBES", 500))
    auth = os.environ.get("BENCH_PG_AUTH", "scram-sha-256")

    _, redis_port = start_redis()
    _, pg_port = start_postgres(auth)
    base_redis, base_pg = redis_clients(redis_port), pg_sessions(pg_port)

    port = c.free_port()
    lines = ["global:", f"  listen: 127.0.0.1:{port}", "  labels: {env: bench}",
             "  defaults: {interval: 1s, timeout: 1s}", "probes:"]
    for i in range(n_redis):
        lines += [f"  - name: redis-{i:05d}", "    type: redis", "    redis:",
                  f"      address: \"127.0.0.1:{redis_port}\"",
                  "      password: \"${env:BENCH_REDIS_PASSWORD}\""]
    for i in range(n_pg):
        lines += [f"  - name: pg-{i:05d}", "    type: postgres", "    postgres:",
                  "      dsn: \"${env:BENCH_PG_DSN}\""]
    os.environ["BENCH_REDIS_PASSWORD"] = REDIS_PW
    os.environ["BENCH_PG_DSN"] = (f"host=127.0.0.1 port={pg_port} user=canary "
                                  f"password={PG_PW} dbname=postgres")
    c.log(f"datastores: {n_redis} redis + {n_pg} postgres probes at 1s "
          f"(pg auth {auth}); warm-up {warmup:.0f}s, window {window:.0f}s")
    d = c.Canaryd("datastores", "\n".join(lines) + "\n")

    time.sleep(warmup)
    names = ("canary_scheduler_lag_seconds", "canary_probe_runs_total",
             "canary_probe_failures_total")
    before, _, _, _ = c.scrape(d.base, names)
    t0, cpu0 = time.monotonic(), c.cpu_ticks(d.pid)
    peak_rss, during_redis, during_pg = 0, 0, 0
    while time.monotonic() - t0 < window:
        time.sleep(min(5, max(0.1, window - (time.monotonic() - t0))))
        peak_rss = max(peak_rss, c.proc_status(d.pid)["VmRSS"])
        during_redis = max(during_redis, redis_clients(redis_port))
        during_pg = max(during_pg, pg_sessions(pg_port))
    t1, cpu1 = time.monotonic(), c.cpu_ticks(d.pid)
    after, _, _, _ = c.scrape(d.base, names)
    status = c.proc_status(d.pid)

    def total(samples, name, prefix, reason=None):
        return c.sum_samples(samples, name, lambda l: l.get("probe", "").startswith(prefix) and
                             (reason is None or l.get("reason") == reason))

    runs_r = total(after, "canary_probe_runs_total", "redis-") - total(before, "canary_probe_runs_total", "redis-")
    runs_p = total(after, "canary_probe_runs_total", "pg-") - total(before, "canary_probe_runs_total", "pg-")
    fail_r = total(after, "canary_probe_failures_total", "redis-") - total(before, "canary_probe_failures_total", "redis-")
    fail_p = total(after, "canary_probe_failures_total", "pg-") - total(before, "canary_probe_failures_total", "pg-")
    def reasons(prefix):
        out = {}
        for n, l, v in after:
            if n == "canary_probe_failures_total" and l.get("probe", "").startswith(prefix):
                out[l["reason"]] = out.get(l["reason"], 0) + v
        for n, l, v in before:
            if n == "canary_probe_failures_total" and l.get("probe", "").startswith(prefix):
                out[l["reason"]] = out.get(l["reason"], 0) - v
        return {k: int(v) for k, v in out.items() if v}

    reasons_r, reasons_p = reasons("redis-"), reasons("pg-")
    lag = c.histogram_delta(c.histogram(after, "canary_scheduler_lag_seconds"),
                            c.histogram(before, "canary_scheduler_lag_seconds"))
    cpu_pct = 100.0 * (cpu1 - cpu0) / c.CLK_TCK / (t1 - t0)
    d.stop()
    time.sleep(2)
    after_redis, after_pg = redis_clients(redis_port), pg_sessions(pg_port)

    rows = [
        ("runs in window (redis / postgres)", f"{runs_r:.0f} / {runs_p:.0f}",
         f"expected ~{n_redis * window:.0f} / ~{n_pg * window:.0f}"),
        ("failures (redis / postgres)", f"{fail_r:.0f} / {fail_p:.0f}",
         f"0 / 0; by reason: redis {reasons_r or '{}'}, postgres {reasons_p or '{}'}"),
        ("canaryd CPU", f"{cpu_pct:.1f} %", "of one core"),
        ("canaryd RSS (end / peak in window)", f"{c.mib(status['VmRSS'])} / {c.mib(peak_rss)}", ""),
        ("canaryd threads", str(status["Threads"]), ""),
        ("scheduler lag p50 / p99", f"{c.ms(c.histogram_quantile(0.5, lag))} / "
         f"{c.ms(c.histogram_quantile(0.99, lag))}", "bucket-interpolated"),
        ("redis clients: before / max during / after", f"{base_redis} / {during_redis} / {after_redis}",
         "after must equal before"),
        ("postgres sessions: before / max during / after", f"{base_pg} / {during_pg} / {after_pg}",
         "after must equal before"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print("datastores benchmark")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:<24} {note}")
    leaked = after_redis != base_redis or after_pg != base_pg
    print(f"  connections back to baseline: {'yes' if not leaked else 'NO'}")
    c.save_result("datastores", {"cpu_pct": cpu_pct, "rss": status["VmRSS"], "peak_rss": peak_rss,
                                 "lag_p50": c.histogram_quantile(0.5, lag),
                                 "lag_p99": c.histogram_quantile(0.99, lag),
                                 "runs_redis": runs_r, "runs_pg": runs_p, "fail_redis": fail_r,
                                 "fail_pg": fail_p, "leaked": leaked})
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
