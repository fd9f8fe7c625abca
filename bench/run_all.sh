#!/usr/bin/env bash
# Runs canaryd's benchmarks and prints a summary table (bench/README.md).
#
#   bench/run_all.sh          # all three: a (CPU), b (latency), c (scale)
#   bench/run_all.sh a c      # a subset
#   bench/run_all.sh a b c w  # w (WebSocket, bench_websocket.py, ~3 min) is optional:
#                             # not in the default set
#   bench/run_all.sh g        # g (agent conversations, bench_agent.py, ~2 min): optional too
#   bench/run_all.sh k        # k (capacity, overload, hung concurrency, bench_capacity.py,
#                             # ~10 min): optional too
#
# Builds a Release canaryd and the bench tools in $CANARYD_BUILD_DIR
# (default build-release/) if needed. Every server runs on 127.0.0.1, on a free
# port, in a temp dir, and is stopped by PID when its benchmark ends, whatever
# way it ends. Takes about 5 minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build=${CANARYD_BUILD_DIR:-$repo/build-release}
export CANARYD_BUILD_DIR=$build

benches=("$@")
((${#benches[@]})) || benches=(a b c)
for b in "${benches[@]}"; do
  case $b in a | b | c | k | w | g) ;; *) echo "run_all.sh: unknown benchmark '$b' (use a, b, c, k, w, g)" >&2; exit 2 ;; esac
done

missing=()
tools=(python3 cmake)
# nginx, curl and blackbox_exporter are for a, b and c; w and g need only the fixture (python3).
if [[ " ${benches[*]} " =~ [abck] ]]; then
  tools+=(nginx curl /usr/bin/prometheus-blackbox-exporter)
  [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || missing+=(libnginx-mod-http-echo)
fi
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "run_all.sh: missing ${missing[*]}; run scripts/install-deps.sh (as root)" >&2
  exit 1
fi

echo "== building Release canaryd and bench tools in $build =="
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCANARYD_TESTS=OFF -DCANARYD_BENCH=ON >/dev/null
if ! cmake --build "$build" -j2 --target canaryd loadgen blackhole agent_server hiccup connect_floor get_floor >"$build/bench-build.log" 2>&1; then
  tail -n 40 "$build/bench-build.log" >&2
  echo "run_all.sh: build failed (full log: $build/bench-build.log)" >&2
  exit 1
fi

# Thousands of probes hold thousands of sockets. Root may raise the hard limit;
# where it can't (a container without CAP_SYS_RESOURCE) take what there is.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files limit: $(ulimit -n)"

results="$build/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
export BENCH_RESULTS=$results

child=
stop_child() {
  # The benchmark stops its own servers when it gets SIGTERM.
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  child=
}
trap stop_child EXIT
trap 'stop_child; exit 130' INT TERM HUP

declare -A script=([a]=bench_cpu.py [b]=bench_latency.py [c]=bench_scale.py [k]=bench_capacity.py [w]=bench_websocket.py
                   [g]=bench_agent.py)
failed=()
start=$SECONDS
for b in "${benches[@]}"; do
  echo
  python3 "$here/${script[$b]}" &
  child=$!
  if ! wait "$child"; then
    failed+=("$b")
    echo "run_all.sh: benchmark $b failed" >&2
  fi
  child=
done

echo
echo "== summary ($((SECONDS - start)) s; raw results in $results) =="
python3 "$here/report.py" "$results"
if ((${#failed[@]})); then
  echo "run_all.sh: failed: ${failed[*]}" >&2
  exit 1
fi
