#!/usr/bin/env bash
# The daemon's footprint when idle: `oomguard run` with the default refresh (5 s) watching 500 cgroups
# (a tree in a temporary directory: 50 parents x 10 limited leaves, each with memory.events watched),
# for SECONDS (default 60) after a warm-up of WARMUP_S (default 35: new cgroups have their limits re-read
# every refresh for their first 30 s). Prints its RSS at start and end, its peak RSS, and the CPU it used
# as a share of one core. Targets: RSS <= 8 MiB, CPU <= 0.1% of a core.
# Usage: bench/idle_footprint.sh [SECONDS] [OOMGUARD_BINARY]
set -euo pipefail
seconds="${1:-60}"
binary="${2:-$(dirname "$0")/../build/bin/oomguard}"
tree=$(mktemp -d)
config="$tree.json"
out="$tree.log"
cleanup() { [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null; rm -rf "$tree" "$config" "$out"; }
trap cleanup EXIT

printf '' > "$tree/cgroup.procs"
for p in $(seq 0 49); do
  mkdir "$tree/parent$p"
  printf '' > "$tree/parent$p/cgroup.procs"
  echo max > "$tree/parent$p/memory.max"
  printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n' > "$tree/parent$p/memory.events"
  for l in $(seq 0 9); do
    leaf="$tree/parent$p/leaf$l"
    mkdir "$leaf"
    printf '' > "$leaf/cgroup.procs"
    echo 268435456 > "$leaf/memory.max"
    echo 0 > "$leaf/memory.swap.max"
    echo 0 > "$leaf/memory.oom.group"
    printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n' > "$leaf/memory.events"
  done
done
# The default config, minus the PSI triggers (the files here are not kernel PSI files).
cat > "$config" <<JSON
{"cgroups": [{"match": "/**", "watch_events": true, "pressure": null}], "host": {"pressure": null}}
JSON

"$binary" --cgroup-root "$tree" run --config "$config" --metrics-listen 127.0.0.1:0 > "$out" 2>/dev/null &
daemon=$!
for _ in $(seq 50); do grep -q '"event":"started"' "$out" 2>/dev/null && break; sleep 0.1; done
sleep "${WARMUP_S:-35}"
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status"; }
start_ticks=$(cpu_ticks); start_rss=$(rss_kb); start_time=$(date +%s.%N)
sleep "$seconds"
end_ticks=$(cpu_ticks); end_rss=$(rss_kb); end_time=$(date +%s.%N)
peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$daemon/status")
watched=$(grep -o '"watched_cgroups":[0-9]*' "$out" | head -1 | cut -d: -f2)
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
awk -v t0="$start_time" -v t1="$end_time" -v c0="$start_ticks" -v c1="$end_ticks" -v hz="$ticks" \
    -v r0="$start_rss" -v r1="$end_rss" -v peak="$peak_kb" -v watched="$watched" 'BEGIN {
  elapsed = t1 - t0; cpu = (c1 - c0) / hz; share = 100 * cpu / elapsed;
  printf "idle footprint: %d cgroups watched, %.1f s\n", watched, elapsed;
  printf "  RSS %.2f MiB at start, %.2f MiB at end (peak %.2f MiB); target <= 8 MiB: %s\n",
         r0 / 1024, r1 / 1024, peak / 1024, (peak <= 8192 ? "met" : "NOT met");
  printf "  CPU %.3f s = %.3f%% of a core (clock ticks of 1/%d s); target <= 0.1%%: %s\n",
         cpu, share, hz, (share <= 0.1 ? "met" : "NOT met");
}'
