#!/usr/bin/env bash
# README command (a): install everything, build, start the bundled fake
# platform backend and run canaryd on config/demo.yaml in the foreground.
# Ctrl-C stops both.
#   scripts/demo.sh --screenshot   the same demo, but once every probe has run
#                                  a few times, headless Chromium saves the
#                                  status page as docs/images/status-page.png
#                                  (the README's picture) and the demo stops.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
screenshot=false
case "${1:-}" in
  "") ;;
  --screenshot) screenshot=true ;;
  *)
    echo "usage: scripts/demo.sh [--screenshot]" >&2
    exit 2
    ;;
esac
bash scripts/install-deps.sh
bash scripts/build.sh release

demo=/tmp/canaryd-demo
mkdir -p "$demo"
bash tests/fixtures/make_certs.sh "$demo/certs" >/dev/null
certs=$demo/certs

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # The postmaster runs under setpriv in a subshell, so pids holds the
  # subshell's id, not its own: Ctrl-C reaches it through the terminal, the
  # end of --screenshot does not. pg_ctl stops it by its postmaster.pid.
  if [ -n "${pgbin:-}" ] && [ -f "$demo/pgdata/postmaster.pid" ]; then
    as_postgres "$pgbin/pg_ctl" -D "$demo/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

rm -f "$demo/platform.ready"
# The auth service's bypass key: the agent pipeline probe's token step sends it.
export CANARYD_DEMO_BYPASS_KEY="bypass-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
python3 tests/fixtures/fake_platform.py --port 18080 --bypass-key "$CANARYD_DEMO_BYPASS_KEY" \
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

# A local redis-server with a password and a throwaway PostgreSQL cluster, so
# the demo shows the data-store probes too. Secrets reach canaryd the way they
# should in production: from the environment and from files.
export CANARYD_DEMO_REDIS_PASSWORD=demo-redis-secret
redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no \
  --requirepass "$CANARYD_DEMO_REDIS_PASSWORD" >"$demo/redis.log" 2>&1 &
pids+=($!)

# dnsmasq as the platform's DNS: the names the dns probes look up, and
# NXDOMAIN for every other name under demo.test.
dnsmasq --keep-in-foreground --log-facility=- --port=15353 --listen-address=127.0.0.1 \
  --bind-interfaces --no-resolv --no-hosts --conf-file=/dev/null --local=/demo.test/ \
  --pid-file="$demo/dnsmasq.pid" --user="$(id -un)" \
  --host-record=api.demo.test,127.0.0.1 --cname=www.demo.test,api.demo.test \
  --txt-record=demo.test,"v=spf1 -all" >"$demo/dnsmasq.log" 2>&1 &
pids+=($!)

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
rm -rf "$demo/pgdata" "$demo/pgsock"
mkdir -p "$demo/pgdata" "$demo/pgsock"
chmod 0755 "$demo"
echo demo-postgres-superuser >"$demo/pg.superpw"
chown postgres "$demo/pgdata" "$demo/pgsock" "$demo/pg.superpw"
as_postgres() { setpriv --reuid=postgres --regid=postgres --clear-groups "$@"; }
as_postgres "$pgbin/initdb" -D "$demo/pgdata" -U postgres --auth=scram-sha-256 \
  --pwfile="$demo/pg.superpw" -E UTF8 --no-sync >"$demo/initdb.log" 2>&1
as_postgres "$pgbin/postgres" -D "$demo/pgdata" -p 15432 -c listen_addresses=127.0.0.1 \
  -k "$demo/pgsock" -c fsync=off >"$demo/postgres.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  PGPASSWORD=demo-postgres-superuser psql -h 127.0.0.1 -p 15432 -U postgres -AtXqc \
    "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.2
done
PGPASSWORD=demo-postgres-superuser psql -h 127.0.0.1 -p 15432 -U postgres -AtXqc \
  "CREATE ROLE canary LOGIN PASSWORD 'demo-canary-secret'" >/dev/null
umask 077
echo "host=127.0.0.1 port=15432 user=canary password=demo-canary-secret dbname=postgres" >"$demo/pg.dsn"
echo "host=127.0.0.1 port=15432 user=canary password=not-the-password dbname=postgres" >"$demo/pg-wrong.dsn"
# The demo's WebSocket token: sent inside a subprotocol entry, never shown.
echo "demo$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$demo/ws.jwt"
umask 022

cat <<MSG

canaryd demo: the fake platform backend is on 127.0.0.1:18080 (TLS on 18443-18445),
redis-server on 16379, PostgreSQL on 15432 and dnsmasq on 15353.
canaryd is starting on http://127.0.0.1:9464 with config/demo.yaml. Look at:
  curl -s http://127.0.0.1:9464/metrics | grep ^canary_
  curl -s http://127.0.0.1:9464/api/v1/state
  $root/build-release/canaryd status
  $root/build-release/canaryd once --config $root/config/demo.yaml
Ctrl-C stops the demo.

MSG
"$root/build-release/canaryd" run --config config/demo.yaml &
pids+=($!)
if $screenshot; then
  # Six runs of each probe (10 s apart) fill the strips and sparklines a little.
  python3 - <<'PY'
import json, sys, time, urllib.request
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen("http://127.0.0.1:9464/api/v1/state", timeout=5) as r:
            probes = json.load(r)["probes"]
        if probes and min(len(p["history"]) for p in probes) >= 6:
            sys.exit(0)
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(1)
sys.exit("the demo's probes did not run six times within 180 s")
PY
  python3 tests/status_page/chromium.py screenshot http://127.0.0.1:9464/ \
    docs/images/status-page.png 1280x1400
  exit 0
fi
wait "${pids[-1]}"
