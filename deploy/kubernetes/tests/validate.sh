#!/usr/bin/env bash
# The Kubernetes manifests, offline (deploy/kubernetes/README.md, "Tests"):
#   1. the schema models at the versions pinned in package-lock.json, installed
#      once with npm ci into a cache folder (the npm registry is needed only
#      then);
#   2. generate.sh --check: configmap.yaml, the checksum annotation and
#      prometheusrule.yaml are what generate.sh writes;
#   3. validate.js: every document against the Kubernetes and
#      prometheus-operator schemas, how they fit together, check-config and a
#      run of the StatefulSet's container as its last shard;
#   4. check_image.js: the Dockerfile's runtime stage installs the packages of
#      every library the built canaryd loads.
# Usage: deploy/kubernetes/tests/validate.sh CANARYD_BINARY [MANIFEST_DIR]
#   MANIFEST_DIR (default deploy/kubernetes) can be a copy for another
#   location; step 2 runs only for the default.
# KUBE_MODELS_DIR overrides the cache folder (default .cache/kubernetes-models
# at the repository root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
canaryd=${1:?usage: validate.sh CANARYD_BINARY [MANIFEST_DIR]}
canaryd=$(cd "$(dirname "$canaryd")" && pwd)/$(basename "$canaryd")
manifests=$(cd "${2:-$here/..}" && pwd)
models=${KUBE_MODELS_DIR:-$root/.cache/kubernetes-models}

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "validate.sh: $tool not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
done

# 1. The pinned models. The copy of package-lock.json beside node_modules
# says what is installed; a different one installs again.
if ! cmp -s "$here/package-lock.json" "$models/package-lock.json" || [ ! -d "$models/node_modules" ]; then
  rm -rf "$models"
  mkdir -p "$models"
  cp "$here/package.json" "$here/package-lock.json" "$models/"
  if ! (cd "$models" && timeout 120 npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
    cat "$models/npm.log" >&2
    rm -rf "$models"
    echo "validate.sh: npm ci of the pinned schema models failed" >&2
    exit 1
  fi
fi
export NODE_PATH=$models/node_modules

# 2. The generated files.
if [ "$manifests" = "$(cd "$here/.." && pwd)" ]; then
  bash "$here/../generate.sh" --check "$canaryd"
fi

# 3. The manifests.
timeout 120 node "$here/validate.js" "$canaryd" "$manifests"

# 4. The image's packages, against the release build (what the image holds)
# where there is one.
image_canaryd=$root/build-release/canaryd
[ -x "$image_canaryd" ] || image_canaryd=$canaryd
timeout 30 node "$here/check_image.js" "$image_canaryd" "$here/../Dockerfile"
