#!/usr/bin/env bash
# The committed rule file is exactly what the generator prints for
# config/example.yaml, Prometheus accepts it, and its unit tests pass.
# Usage: deploy/prometheus/check.sh CANARYD_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
canaryd=${1:?usage: check.sh CANARYD_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$canaryd" rules --config "$root/config/example.yaml" >"$tmp/generated.yml"
if ! diff -u "$here/canaryd.rules.yml" "$tmp/generated.yml"; then
  echo "deploy/prometheus/canaryd.rules.yml is stale: regenerate it with" >&2
  echo "  canaryd rules --config config/example.yaml > deploy/prometheus/canaryd.rules.yml" >&2
  exit 1
fi
promtool check rules "$here/canaryd.rules.yml"
shopt -s nullglob
tests=("$here"/tests/*.yml)
if ((${#tests[@]})); then
  (cd "$here/tests" && promtool test rules "${tests[@]##*/}")
fi
echo "prometheus rules: generated file current, check and ${#tests[@]} test files passed"
