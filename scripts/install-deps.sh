#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian 12's packages.
# Idempotent: a second run only checks that everything is present.
#   scripts/install-deps.sh          everything (what scripts/test.sh and CI need)
#   scripts/install-deps.sh build    only what `scripts/build.sh release` needs
#                                    (the image build, deploy/kubernetes/Dockerfile)
#   scripts/install-deps.sh package  the build plus the Debian packaging tools
#                                    (what `scripts/package.sh` needs)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
what=${1:-all}

BUILD_PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git ca-certificates
  # libraries (DESIGN.md)
  libuv1-dev libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv prometheus-cpp-dev
  libyaml-cpp-dev libfmt-dev libpq-dev libsystemd-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libssl-dev libre2-dev libc-ares-dev libcrypt-dev libsqlite3-dev
)
# scripts/package.sh: debhelper (dh, dpkg-buildpackage's helpers) and lintian.
PACKAGE_PACKAGES=(debhelper lintian)
TEST_PACKAGES=(
  # unit and integration tests; xmllint validates `once --junit` reports
  # against tests/junit/junit.xsd
  catch2 libxml2-utils
  # fuzzing (fuzz/): clang++ and its libFuzzer/sanitizer runtimes (a Recommends, so named)
  clang libclang-rt-14-dev
  # the package test (tests/package/): systemd-analyze, and systemd-sysusers for
  # the package's postinst (a container image may have neither)
  systemd
  # test and demo peers
  openssl curl procps python3 redis-server postgresql dnsmasq-base
  prometheus prometheus-alertmanager
  # the status page's browser test and the README screenshot: headless
  # Chromium, and a font for it to render text with
  chromium fonts-dejavu-core
  # benchmarks
  nginx libnginx-mod-http-echo prometheus-blackbox-exporter
)

case "$what" in
  build) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
  package) PACKAGES=("${BUILD_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}") ;;
  all)
    # The suite builds and installs the package (tests/package/).
    PACKAGES=("${BUILD_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
    # The Kubernetes manifest check (deploy/kubernetes/tests/validate.sh) runs
    # the schema models from the npm registry under Node.js. A machine that
    # already has node and npm (e.g. from another Debian-format repository,
    # whose nodejs conflicts with Debian's npm) keeps them.
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      PACKAGES+=(nodejs npm)
    fi
    ;;
  *)
    echo "usage: scripts/install-deps.sh [all|build|package]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
  fi
  apt-get update
  # Installing a server package must not start a system-wide service: the
  # tests start their own servers on free ports.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
