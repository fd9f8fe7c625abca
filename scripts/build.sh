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
    # The release build is also the Debian package's build: debian/rules runs
    # this same command, so `scripts/package.sh` after `scripts/build.sh
    # release` compiles nothing. Hence Debian's hardening flags (from
    # dpkg-buildflags, in the CMake cache so the environment cannot change
    # them between the two) and /usr as the install prefix. -g is left out as
    # before: debug info would slow the build that CI waits for, and there is
    # no -dbgsym package to carry it.
    buildflags() { DEB_BUILD_MAINT_OPTIONS=hardening=+all DEB_CXXFLAGS_MAINT_STRIP=-g dpkg-buildflags --get "$1"; }
    cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DCANARYD_TESTS=OFF \
      -DCMAKE_INSTALL_PREFIX=/usr \
      "-DCMAKE_CXX_FLAGS=$(buildflags CPPFLAGS) $(buildflags CXXFLAGS)" \
      "-DCMAKE_EXE_LINKER_FLAGS=$(buildflags LDFLAGS)" >/dev/null
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
