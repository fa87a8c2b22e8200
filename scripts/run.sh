#!/usr/bin/env bash
# Builds oomguard and runs the main job on this host in its safe default mode: read-only, it shows the
# kernel's OOM victim ranking for the host (what the kernel would kill next, and why).
# Usage: scripts/run.sh [oomguard arguments]      (default: top)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
# Only the oomguard target is built; the options stay as they are, so a later scripts/test.sh in the
# same tree still builds every test.
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target oomguard
echo "== build/bin/oomguard ${*:-top}" >&2
exec build/bin/oomguard "${@:-top}"
