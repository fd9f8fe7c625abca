#!/usr/bin/env bash
# Configures and builds one configuration: release (default) or asan.
#   scripts/build.sh release   -> build-release/  (optimised, what the demo and benchmarks run)
#   scripts/build.sh asan      -> build-asan/     (AddressSanitizer + UBSan, what the tests run)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
jobs=$(nproc)
case "$kind" in
  release)
    cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-release -j"$jobs"
    ;;
  asan)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCANARYD_SANITIZE=ON -DCANARYD_BENCH=OFF >/dev/null
    cmake --build build-asan -j"$jobs"
    ;;
  *)
    echo "usage: scripts/build.sh [release|asan]" >&2
    exit 2
    ;;
esac
