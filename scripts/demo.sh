#!/usr/bin/env bash
# README command (a): install everything, build, start the bundled fake
# platform backend and run canaryd on config/demo.yaml in the foreground.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh
bash scripts/build.sh release

demo=/tmp/canaryd-demo
mkdir -p "$demo"
bash tests/fixtures/make_certs.sh "$demo/certs" >/dev/null
certs=$demo/certs

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

rm -f "$demo/platform.ready"
python3 tests/fixtures/fake_platform.py --port 18080 \
  --tls "good:$certs/good.pem:$certs/good.key:18443" \
  --tls "wronghost:$certs/wronghost.pem:$certs/wronghost.key:18444" \
  --tls "expired:$certs/expired.pem:$certs/expired.key:18445" \
  --ready-file "$demo/platform.ready" --quiet >"$demo/platform.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  [ -s "$demo/platform.ready" ] && break
  sleep 0.1
done
if [ ! -s "$demo/platform.ready" ]; then
  echo "the fake platform did not start; see $demo/platform.log" >&2
  exit 1
fi

cat <<MSG

canaryd demo: the fake platform backend is on 127.0.0.1:18080 (TLS on 18443-18445).
canaryd is starting on http://127.0.0.1:9464 with config/demo.yaml. Look at:
  curl -s http://127.0.0.1:9464/metrics | grep ^canary_
  curl -s http://127.0.0.1:9464/api/v1/state
  $root/build-release/canaryd status
  $root/build-release/canaryd once --config $root/config/demo.yaml
Ctrl-C stops the demo.

MSG
"$root/build-release/canaryd" run --config config/demo.yaml &
pids+=($!)
wait "${pids[-1]}"
