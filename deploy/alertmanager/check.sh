#!/usr/bin/env bash
# Checks deploy/alertmanager/alertmanager.yml:
#   1. amtool check-config
#   2. every routing case in tests/routes.txt (amtool config routes test)
#   3. inhibition against a real Alertmanager (tests/check_inhibition.py)
# Exits 0 if everything passed, 1 on any failure, including amtool or
# Alertmanager missing (the suite installs them). Prints one summary line last.
#
# Usage: deploy/alertmanager/check.sh [CONFIG]   (default: alertmanager.yml
# next to this script). Needs amtool, alertmanager (Debian:
# prometheus-alertmanager) and python3. ALERTMANAGER_BIN / AMTOOL_BIN
# override the binaries.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="${1:-$here/alertmanager.yml}"
cases="$here/tests/routes.txt"
amtool="${AMTOOL_BIN:-amtool}"

if ! command -v "$amtool" >/dev/null 2>&1; then
  echo "FAIL: amtool not found (install prometheus-alertmanager or set AMTOOL_BIN)"
  exit 1
fi
if [[ ! -r "$config" ]]; then
  echo "FAIL: cannot read $config"
  exit 1
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# 1. Syntax and semantics.
if out="$(timeout 30 "$amtool" check-config "$config" 2>&1)"; then
  pass
  echo "ok   check-config $config"
else
  fail "amtool check-config $config"
  printf '%s\n' "$out" | sed 's/^/     /'
fi

# 2. Routing cases.
ncases=0
route_failed=$failed
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line%%$'\r'}"
  [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
  read -r -a words <<<"$line"
  expected="${words[0]}"
  labels=("${words[@]:1}")
  ncases=$((ncases + 1))
  # --config.file makes amtool read the file; it never contacts an Alertmanager.
  if out="$(timeout 30 "$amtool" config routes test --config.file="$config" \
              --verify.receivers="$expected" "${labels[@]}" 2>&1)"; then
    pass
  else
    got="$(printf '%s\n' "$out" | grep -v -e '^Warning:' -e '^WARNING:' | tr '\n' ' ')"
    fail "route ${labels[*]:-(no labels)}: expected $expected, got: ${got:-?}"
  fi
done <"$cases"
route_failed=$((failed - route_failed))
if ((ncases == 0)); then
  fail "no route cases in $cases"
elif ((route_failed == 0)); then
  echo "ok   $ncases route cases"
else
  echo "FAIL: $route_failed of $ncases route cases"
fi

# 3. Inhibition against a real Alertmanager (bounded: the script stops it by
#    PID itself; timeout is the backstop).
timeout -k 5 90 python3 "$here/tests/check_inhibition.py" "$config"
rc=$?
if ((rc == 0)); then
  pass
else
  fail "inhibition check (exit $rc)"
fi

echo "SUMMARY: $passed passed, $failed failed (check-config, $ncases route cases, inhibition check)"
((failed == 0))
