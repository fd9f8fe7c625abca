#!/usr/bin/env bash
# README command (b): install everything, build the configurations (release,
# asan, and the clang fuzz targets), and run the whole test suite under
# AddressSanitizer + UBSan, including a short run of every fuzz target. ctest's
# summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
bash scripts/build.sh asan
bash scripts/build.sh fuzz
cd build-asan
# Leaks are errors; a UBSan report fails the test instead of scrolling by.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Two at a time: most tests wait on sockets and timers, and tests/CMakeLists.txt
# keeps the ones that keep a core busy from running together.
exec ctest --output-on-failure --timeout 900 -j2
