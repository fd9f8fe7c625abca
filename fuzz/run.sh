#!/usr/bin/env bash
# Runs every libFuzzer target (or the ones named) for SECONDS each, one after
# the other, on a throw-away copy of its seed corpus, and prints the executions
# each one reached. Exits 1 if any target finds a crash, a leak, a UBSan report
# or a timeout; the input that did it is kept and its path printed.
#   fuzz/run.sh 60                 # every target, 60 s each
#   fuzz/run.sh 10 resp config     # two of them
# Builds build-fuzz/ first if needed (scripts/build.sh fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
  exit 2
fi
shift
all=()
for f in fuzz/*_fuzz.cc; do
  f=${f##*/}
  all+=("${f%_fuzz.cc}")
done
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz/run.sh: unknown target $t (${all[*]})" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/canaryd-fuzz.XXXXXX")
# One build at a time, even when several runs start together (ctest -j).
mkdir -p build-fuzz
if ! flock build-fuzz/.build.lock bash scripts/build.sh fuzz >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  echo "fuzz/run.sh: the fuzz build failed" >&2
  exit 1
fi
failed=0
summary=()
for t in "${targets[@]}"; do
  corpus=$work/$t/corpus
  artifacts=$work/$t/artifacts/
  mkdir -p "$corpus" "$artifacts"
  cp fuzz/corpus/"$t"/* "$corpus"/
  max_len=4096
  if [[ $t == config ]]; then
    # Whole config files: the shipped examples and every bad-config fixture.
    max_len=16384
    cp config/*.yaml "$corpus"/
    for f in tests/config/bad/*.yaml; do cp "$f" "$corpus/bad-$(basename "$f")"; done
  fi
  args=(-max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10
        -print_final_stats=1 -artifact_prefix="$artifacts")
  [[ -f fuzz/$t.dict ]] && args+=(-dict="fuzz/$t.dict")
  log=$work/$t/log
  rc=0
  # The outer timeout bounds the run even if libFuzzer itself wedges.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout --kill-after=10 $((seconds * 2 + 60)) \
    "$root/build-fuzz/${t}_fuzz" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' "$log" | tail -1)
  found=$(ls "$artifacts" 2>/dev/null | head -1)
  if ((rc != 0)) || [[ -n $found ]]; then
    failed=1
    echo "== $t: FAILED (exit $rc)" >&2
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20 >&2 || true
    [[ -n $found ]] && echo "   input: $artifacts$found" >&2
    echo "   log:   $log" >&2
    summary+=("$(printf '%-14s %12s execs %8s exec/s  FAILED' "$t" "${execs:-?}" "${rate:-?}")")
  else
    summary+=("$(printf '%-14s %12s execs %8s exec/s  ok' "$t" "${execs:-?}" "${rate:-?}")")
  fi
done

printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "fuzz/run.sh: a target failed; its input and log are under $work" >&2
  exit 1
fi
rm -rf "$work"
