#!/usr/bin/env bash
# Configures and builds one configuration: release (default), asan or fuzz.
#   scripts/build.sh release   -> build-release/  (optimised, what the demo and benchmarks run; no tests)
#   scripts/build.sh asan      -> build-asan/     (AddressSanitizer + UBSan, what the tests run)
#   scripts/build.sh fuzz      -> build-fuzz/     (clang++ libFuzzer targets, fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
jobs=$(nproc)
case "$kind" in
  release)
    cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DCANARYD_TESTS=OFF >/dev/null
    cmake --build build-release -j"$jobs"
    ;;
  asan)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCANARYD_SANITIZE=ON -DCANARYD_BENCH=OFF >/dev/null
    cmake --build build-asan -j"$jobs"
    ;;
  fuzz)
    cmake -S fuzz -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ >/dev/null
    cmake --build build-fuzz -j"$jobs"
    ;;
  *)
    echo "usage: scripts/build.sh [release|asan|fuzz]" >&2
    exit 2
    ;;
esac
