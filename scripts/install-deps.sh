#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian 12's packages.
# Idempotent: a second run only checks that everything is present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git ca-certificates
  # fuzzing (fuzz/): clang++ and its libFuzzer/sanitizer runtimes (a Recommends, so named)
  clang libclang-rt-14-dev
  # libraries (DESIGN.md)
  libuv1-dev libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv prometheus-cpp-dev
  libyaml-cpp-dev libfmt-dev catch2 libpq-dev libsystemd-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libssl-dev libre2-dev libc-ares-dev
  # test and demo peers
  openssl curl procps python3 redis-server postgresql dnsmasq-base
  prometheus prometheus-alertmanager
  # benchmarks
  nginx libnginx-mod-http-echo prometheus-blackbox-exporter
)

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
