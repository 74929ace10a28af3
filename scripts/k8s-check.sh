#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster (`make test-deploy`, part
# of `make test`):
#   1. every manifest against the Kubernetes API's own JSON schemas, strict
#      (an unknown or misspelled field is an error), with kubernetes-validate;
#   2. scripts/k8s-check.py: kustomization.yaml lists every file, and what a
#      schema cannot see (duplicate YAML keys, env names the README does not
#      document, references between the manifests).
# Nothing is applied anywhere. The validator is installed from PyPI into a
# venv under the user's cache the first time (a few seconds), then reused.
#
#   scripts/k8s-check.sh [DIR]      DIR defaults to deploy/kubernetes
set -euo pipefail
cd "$(dirname "$0")/.."

VALIDATOR_VERSION=1.37.0
# The oldest Kubernetes the manifests are written for, and the newest one
# the validator bundles schemas for: a field added after the first or removed
# before the second fails either way.
K8S_VERSIONS=(1.33.0 1.37.0)
DIR="${1:-deploy/kubernetes}"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-venv"
say() { printf '\033[1;34m[k8s-check]\033[0m %s\n' "$*"; }

installed() {
  "$VENV/bin/python" - "$VALIDATOR_VERSION" 2>/dev/null <<'EOF'
import sys
from kubernetes_validate.version import __version__
sys.exit(__version__ != sys.argv[1])
EOF
}
if ! installed; then
  mkdir -p "$(dirname "$VENV")"
  # Two checks started at once (make -j) must not build the venv together.
  exec 9>"$VENV.lock"
  command -v flock >/dev/null && flock 9
  if ! installed; then
    say "installing kubernetes-validate $VALIDATOR_VERSION into $VENV"
    # A venv whose interpreter is gone (python3 upgraded) is made again.
    "$VENV/bin/python" -c '' 2>/dev/null || python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "kubernetes-validate==$VALIDATOR_VERSION"
  fi
  exec 9>&-
fi

mapfile -t manifests < <(find "$DIR" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) \
  ! -name kustomization.yaml | sort)
if [ ${#manifests[@]} -eq 0 ]; then
  echo "no manifests in $DIR" >&2
  exit 1
fi
versions=()
for v in "${K8S_VERSIONS[@]}"; do versions+=(-k "$v"); done

# kubernetes-validate exits 0 on a kind or apiVersion it has no schema for
# (a WARN line): here that is a failure too, since it validated nothing.
status=0
out=$("$VENV/bin/kubernetes-validate" --strict "${versions[@]}" "${manifests[@]}" 2>&1) || status=$?
printf '%s\n' "$out"
if [ "$status" -ne 0 ] || grep -qv '^INFO ' <<<"$out"; then
  say "FAILED: schema validation (Kubernetes ${K8S_VERSIONS[*]}, strict)"
  exit 1
fi

"$VENV/bin/python" scripts/k8s-check.py "$DIR"
say "ok: ${#manifests[@]} manifests valid for Kubernetes ${K8S_VERSIONS[*]} (strict), kustomization complete"
