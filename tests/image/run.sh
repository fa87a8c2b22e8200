#!/usr/bin/env bash
# The DaemonSet image, built and run for real (no registry is reachable here, so no pull):
#   1. the base: Debian 12 made from Debian's packages (mmdebstrap --variant=apt bookworm | podman import),
#      passed to docker/Dockerfile as DEBIAN_IMAGE;
#   2. podman build of docker/Dockerfile from this checkout (its build stage compiles and runs the unit
#      tests; a failing test fails the build);
#   3. run as the chart runs it (helm/oomguard/templates/daemonset.yaml): uid 0, every capability dropped
#      but the chart's list, no new privileges, read-only root, the host's /proc and /sys/fs/cgroup at
#      /host/proc and /host/sys/fs/cgroup (read-only here: nothing in these checks writes);
#      - `oomguard top --all --json` from the image agrees with the host binary's on this host (the same
#        domain size, and for each process both saw with the same inputs, the same points and score);
#      - `oomguard run` with the chart's default config serves /healthz and /metrics.
# Needs root for podman's storage (as in CI). Installs podman, runc, mmdebstrap and uidmap when missing
# (scripts/install-deps.sh image) and sets `/etc/containers/containers.conf` only when it is missing
# (runc: crun refuses this machine's hybrid cgroup layout; no default ulimits: the sandbox cannot raise
# them). Last line: "image: N passed, N failed, N skipped"; the image's size is printed before it.
# Usage: tests/image/run.sh [HOST_OOMGUARD]   (default build/bin/oomguard)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
host_bin="${1:-build/bin/oomguard}"
passed=0 failed=0 skipped=0
pass() { echo "PASS  $1"; passed=$((passed + 1)); }
fail() { echo "FAIL  $1"; failed=$((failed + 1)); }
skip() { echo "SKIP  $1"; skipped=$((skipped + 1)); }
finish() { echo "image: $passed passed, $failed failed, $skipped skipped"; [ "$failed" -eq 0 ]; exit; }

if [ "$(id -u)" -ne 0 ]; then
  skip "image: podman's storage and the host's /proc of every user need root here; run as root (CI does)"
  finish
fi
if ! scripts/install-deps.sh image; then
  fail "image: podman, runc, mmdebstrap and uidmap could not be installed"
  finish
fi
if [ ! -e /etc/containers/containers.conf ]; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf
  echo "tests/image: wrote /etc/containers/containers.conf (runc, no default ulimits)"
fi

base=localhost/oomguard-build-base:bookworm
image=localhost/oomguard:test
work=$(mktemp -d)
container=""
cleanup() {
  [ -z "$container" ] || podman rm -f "$container" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

t0=$(date +%s)
# A fresh base each run: it is the one thing pulled from outside (Debian's archive), 20-30 s.
if mmdebstrap --quiet --variant=apt bookworm - 2> "$work/mmdebstrap.log" | podman import -q - "$base" > /dev/null; then
  pass "base: Debian 12 from mmdebstrap, imported as $base ($(($(date +%s) - t0)) s)"
else
  fail "base: mmdebstrap | podman import failed: $(tail -n 3 "$work/mmdebstrap.log" | tr '\n' ' ')"
  finish
fi

t0=$(date +%s)
if podman build --network=host --build-arg DEBIAN_IMAGE="$base" -f docker/Dockerfile -t "$image" . \
    > "$work/build.log" 2>&1; then
  pass "build: podman build of docker/Dockerfile ($(($(date +%s) - t0)) s, unit tests run inside)"
else
  fail "build: podman build failed; its last lines:"
  tail -n 30 "$work/build.log" | sed 's/^/      | /'
  finish
fi
size_bytes=$(podman image inspect --format '{{.Size}}' "$image")
echo "image size: $size_bytes bytes ($(awk -v b="$size_bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"

# The chart's capabilities and security context, read from its values (one list, not a copy).
mapfile -t caps < <(awk '/^  capabilities:/ { on = 1; next } on && /^    - / { print $2; next } on { exit }' helm/oomguard/values.yaml)
if [ "${#caps[@]}" -eq 0 ]; then
  fail "the chart's capability list was not found in helm/oomguard/values.yaml"
  finish
fi
as_chart=(--network=host --user 0:0 --read-only --security-opt no-new-privileges --cap-drop=ALL)
for cap in "${caps[@]}"; do as_chart+=("--cap-add=$cap"); done
as_chart+=(-v /proc:/host/proc:ro -v /sys/fs/cgroup:/host/sys/fs/cgroup:ro)
roots=(--proc-root /host/proc --cgroup-root /host/sys/fs/cgroup)

# The Kubernetes client module loads in the image (its libraries are the ones ldd found at build time).
version=$(podman run --rm "${as_chart[@]}" "$image" --version 2>&1)
if grep -qx 'kubernetes client: /usr/lib/oomguard/liboomguard_kube_tls.so' <<<"$version"; then
  pass "--version: the Kubernetes client module loads in the image"
else
  fail "--version in the image: $(tr '\n' ' ' <<<"$version" | head -c 300)"
fi

# check-config of the example from the image's (Release) binary, as the host's Release build once did.
if podman run --rm "${as_chart[@]}" -v "$PWD/examples:/examples:ro" "$image" check-config /examples/oomguard.json \
    > "$work/check.out" 2>&1; then
  pass "check-config of examples/oomguard.json in the image: $(head -n 1 "$work/check.out")"
else
  fail "check-config of examples/oomguard.json in the image: $(head -c 300 "$work/check.out")"
fi

# top: both rankings taken back to back; the processes and their sizes change in between, so the
# comparison is over the processes both saw with the same inputs.
podman run --rm "${as_chart[@]}" "$image" "${roots[@]}" top --all --json > "$work/image-top.json" 2> "$work/image-top.err"
image_rc=$?
"$host_bin" top --all --json > "$work/host-top.json" 2> "$work/host-top.err"
host_rc=$?
if [ "$image_rc" -ne 0 ] || [ "$host_rc" -ne 0 ]; then
  fail "top: exit codes image $image_rc, host $host_rc: $(cat "$work/image-top.err" "$work/host-top.err" | tr '\n' ' ' | head -c 300)"
elif verdict=$(python3 - "$work/image-top.json" "$work/host-top.json" <<'PY'
import json, sys
image, host = (json.load(open(p)) for p in sys.argv[1:3])
problems = []
if image["domain"] != host["domain"]:
    problems.append("domains differ: %s vs %s" % (image["domain"], host["domain"]))
inputs = ("comm", "cgroup", "rss_kb", "swap_kb", "pgtables_kb", "oom_score_adj", "killable")
outputs = ("points", "oom_score_computed")
by_pid = {c["pid"]: c for c in host["candidates"]}
same = compared = 0
for c in image["candidates"]:
    h = by_pid.get(c["pid"])
    if h is None or any(c[k] != h[k] for k in inputs):
        continue
    compared += 1
    if all(c[k] == h[k] for k in outputs):
        same += 1
    elif len(problems) < 5:
        problems.append("pid %d: image %s, host %s" % (c["pid"], [c[k] for k in outputs], [h[k] for k in outputs]))
# Most processes keep their sizes over a second; a ranking that read nothing would compare none.
if compared < max(10, len(host["candidates"]) // 2):
    problems.append("only %d of %d processes compared" % (compared, len(host["candidates"])))
print("%d of %d processes compared (same pid and inputs), %d agree" % (compared, len(host["candidates"]), same))
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
); then
  pass "top --all --json from the image agrees with the host binary: $verdict"
else
  fail "top from the image disagrees with the host binary: $verdict"
fi

# run: the config the chart renders by default (observe mode, Kubernetes on), on a free loopback port.
# Outside a cluster the Kubernetes watch reports itself unavailable and the daemon runs on without it.
helm_bin="${HELM:-}"
[ -n "$helm_bin" ] || helm_bin="$(tests/helm/install-tools.sh 2>/dev/null)/bin/helm"
if ! "$helm_bin" template oomguard helm/oomguard --show-only templates/configmap.yaml 2> "$work/helm.err" \
    | python3 -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["config.json"])' > "$work/config.json"; then
  fail "run: the chart's config could not be rendered: $(head -c 300 "$work/helm.err")"
  finish
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The chart's loopback health listener (metrics.health_listen) moved to a free port too: the container
# shares the host's network here, and its probes run `oomguard health` in the image, as kubelet does.
hport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$work/config.json" "$hport" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config.setdefault("metrics", {})["health_listen"] = "127.0.0.1:" + sys.argv[2]
json.dump(config, open(sys.argv[1], "w"))
PY
container=oomguard-image-test-$$
get() {  # PATH: the body from the daemon in the image
  python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=2).read().decode())' "$port" "$1"
}
# The chart's history hostPath (history.enabled), read-write, as the only writable place in the root.
mkdir -p "$work/state"
if podman run -d --name "$container" "${as_chart[@]}" -e NODE_NAME=image-test \
    -v "$work/config.json:/etc/oomguard/config.json:ro" -v "$work/state:/var/lib/oomguard" \
    "$image" "${roots[@]}" run --config /etc/oomguard/config.json --metrics-listen "127.0.0.1:$port" \
    > /dev/null 2> "$work/run.err"; then
  healthz=""
  for _ in $(seq 1 50); do
    healthz=$(get /healthz 2>/dev/null) && break
    sleep 0.2
  done
  samples=$(get /metrics 2>/dev/null | grep -c '^oomguard_')
  if probe=$(podman exec "$container" /usr/bin/oomguard health --address "127.0.0.1:$hport" --timeout-ms 2000 2>&1); then
    pass "run: the chart's exec probe (oomguard health on the loopback health listener) passes: $probe"
  else
    fail "run: the chart's exec probe failed: $probe"
  fi
  # The chart's NOTES tell users to read the kill history with kubectl exec: the same command in the image.
  if history=$(podman exec "$container" /usr/bin/oomguard history 2>&1) && [ -f "$work/state/kills.jsonl" ] \
      && ! podman logs "$container" 2>&1 | grep -q '"event":"history_unavailable"'; then
    pass "run: the daemon journals to the chart's history mount and oomguard history reads it: $(echo "$history" | tail -n 1)"
  else
    fail "run: kill history: $(echo "$history" | tail -n 2 | tr '\n' ' '); state: $(ls -A "$work/state" | tr '\n' ' ')"
    podman logs "$container" 2>&1 | grep history | tail -n 3 | sed 's/^/      | /'
  fi
  if [ -n "$healthz" ] && [ "${samples:-0}" -gt 0 ]; then
    pass "run: the image's daemon (the chart's config) serves /healthz and /metrics ($samples oomguard_ samples)"
  else
    fail "run: /healthz gave '${healthz:-nothing}', /metrics ${samples:-0} oomguard_ samples; its log:"
    podman logs "$container" 2>&1 | tail -n 15 | sed 's/^/      | /'
  fi
  podman stop -t 5 "$container" > /dev/null 2>&1
  code=$(podman inspect --format '{{.State.ExitCode}}' "$container" 2>/dev/null)
  if [ "$code" = 0 ]; then
    pass "run: the daemon in the image stops on SIGTERM with exit code 0"
  else
    fail "run: exit code after SIGTERM: ${code:-unknown}"
    podman logs "$container" 2>&1 | tail -n 10 | sed 's/^/      | /'
  fi
else
  fail "run: podman run failed: $(head -c 300 "$work/run.err")"
fi
finish
