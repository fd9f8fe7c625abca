#!/usr/bin/env bash
# README command (c): build the Debian package with Debian's own tooling
# (dpkg-buildpackage, debhelper; debian/) and check it with lintian.
#   bash scripts/package.sh      -> dist/canaryd_<version>_<arch>.deb (+ .buildinfo, .changes)
# The package's build step is `scripts/build.sh release` into build-release/,
# so after a release build (scripts/test.sh makes one) this compiles nothing.
# Exits non-zero if the build fails or lintian reports an error; lintian's
# output is printed either way (docs/packaging.md lists the accepted warnings).
set -euo pipefail
cd "$(dirname "$0")/.."
# The build dependencies and the packaging tools (a quick check when present).
bash scripts/install-deps.sh package

version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
base="canaryd_${version}_${arch}"

rm -rf dist && mkdir -p dist
# -b: binary only; -us -uc: unsigned. The .buildinfo and .changes go to dist/
# beside the .deb (debian/rules' dh_builddeb puts it there), not to the
# repository's parent directory.
dpkg-buildpackage -b -us -uc \
  --buildinfo-option=-udist --buildinfo-file="dist/${base}.buildinfo" \
  --changes-option=-udist --changes-file="dist/${base}.changes"

echo "== lintian dist/${base}.deb"
status=0
# --fail-on error: warnings are printed but accepted (docs/packaging.md says
# which and why); an error fails the script.
lintian --fail-on error "dist/${base}.deb" || status=$?
if ((status != 0)); then
  echo "package: lintian reported errors (exit $status)" >&2
  exit "$status"
fi
echo "== built: $(ls dist/canaryd_*)"
