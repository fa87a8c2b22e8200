#!/usr/bin/env bash
# Copies monitoring/oomguard.rules.yml into the chart (helm/oomguard/files/), where .Files.Get can read it:
# a chart sees only the files inside its own folder. tests/helm checks the two stay byte-equal.
set -euo pipefail
cd "$(dirname "$0")/../.."
source=monitoring/oomguard.rules.yml
copy=helm/oomguard/files/oomguard.rules.yml
if [ ! -f "$source" ]; then
  echo "sync-rules: $source does not exist" >&2
  exit 1
fi
cp "$source" "$copy"
echo "sync-rules: $copy updated from $source" >&2
