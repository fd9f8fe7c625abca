#!/usr/bin/env bash
# Each committed rule file is exactly what the generator prints for its
# config, Prometheus accepts it, and the unit tests pass:
#   canaryd.rules.yml                  config/example.yaml (the shipped rules)
#   tests/locations/canaryd.rules.yml  tests/locations/canaryd.yaml (P0s that
#                                      need two failing locations; for
#                                      tests/locations.yml)
# Usage: deploy/prometheus/check.sh CANARYD_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
canaryd=${1:?usage: check.sh CANARYD_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# config (relative to the repository) -> rule file (relative to here)
pairs=(
  "config/example.yaml canaryd.rules.yml"
  "deploy/prometheus/tests/locations/canaryd.yaml tests/locations/canaryd.rules.yml"
)
for pair in "${pairs[@]}"; do
  read -r config rules <<<"$pair"
  "$canaryd" rules --config "$root/$config" >"$tmp/generated.yml"
  if ! diff -u "$here/$rules" "$tmp/generated.yml"; then
    echo "deploy/prometheus/$rules is stale: regenerate it with" >&2
    echo "  canaryd rules --config $config > deploy/prometheus/$rules" >&2
    exit 1
  fi
  promtool check rules "$here/$rules"
done
shopt -s nullglob
tests=("$here"/tests/*.yml)
if ((${#tests[@]})); then
  (cd "$here/tests" && promtool test rules "${tests[@]##*/}")
fi
echo "prometheus rules: ${#pairs[@]} generated files current, check and ${#tests[@]} test files passed"
