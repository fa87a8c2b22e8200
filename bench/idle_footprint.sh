#!/usr/bin/env bash
# The daemon's footprint when idle: `oomguard run` with the default refresh (5 s) watching 500 cgroups
# (a tree in a temporary directory: 50 parents x 10 limited leaves, each with memory.events watched and
# one of 500 spawned sleeping processes listed in its cgroup.procs), for SECONDS (default 60) after a
# warm-up of WARMUP_S (default 35: new cgroups have their limits re-read every refresh for their first
# 30 s). Two configs, one after the other:
#   default      the default config (mode observe), minus the PSI triggers: the fixture's files are not
#                kernel PSI files (the e2e scenario idle-footprint measures the default with its 500
#                triggers armed, on the real memory controller);
#   recommended  examples/act-recommended.json, likewise without PSI triggers: mode act, the adaptive
#                level watch on 500 domains (through the host's real /proc/vmstat), with --dry-run
#                (mode act refuses a cgroup root that is not a cgroup2 mount: this one is a fixture).
# Prints, for each, its RSS at start and end, its peak RSS, and the CPU it used as a share of one core.
# Targets: RSS <= 8 MiB, CPU <= 0.1% of a core. Then the floor (bench_idle_floor, beside the binary: the
# least reading that the recommended config's freshness contract needs on this fixture, at the fewest
# wake-ups) for the same window, and the recommended config's CPU as a ratio to it.
# Usage: bench/idle_footprint.sh [SECONDS] [OOMGUARD_BINARY]
set -euo pipefail
seconds="${1:-60}"
binary="${2:-$(dirname "$0")/../build/bin/oomguard}"
# The fixture lives in memory (/dev/shm where it is writable), as cgroupfs does: on a disk-backed /tmp
# its pages are evicted between refreshes and read back from the disk (virtio block I/O was 4% of the
# daemon's samples in perf), a cost that a real cgroupfs (kernfs, in memory) never has.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then tree=$(mktemp -d -p /dev/shm); else tree=$(mktemp -d); fi
out="$tree.log"
sleepers=()
cleanup() {
  [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null
  [ "${#sleepers[@]}" -gt 0 ] && kill "${sleepers[@]}" 2>/dev/null
  rm -rf "$tree" "$tree.json" "$out"
}
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
    sleep 100000 &
    sleepers+=("$!")
    echo "$!" > "$leaf/cgroup.procs"
    echo 268435456 > "$leaf/memory.max"
    echo 1048576 > "$leaf/memory.current"
    echo 0 > "$leaf/memory.swap.max"
    echo 0 > "$leaf/memory.oom.group"
    printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n' > "$leaf/memory.events"
  done
done

# CPU time in nanoseconds, summed over the daemon's threads (the scheduler's own account, the first
# field of /proc/<pid>/task/<tid>/schedstat; utime+stime in /proc/<pid>/stat count 10 ms ticks, too
# coarse for 60 ms a minute). Threads that exit during the window are not counted; none do.
cpu_ns() { cat /proc/"$daemon"/task/*/schedstat | awk '{sum += $1} END {printf "%d", sum}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status"; }
# The daemon's own count of level readings (memory.current, /proc/meminfo) so far: SIGUSR1 makes it log
# its watch set with its counters.
level_reads() {
  local lines
  lines=$(grep -c '"event":"watch_set"' "$out" || true)
  kill -USR1 "$daemon"
  for _ in $(seq 50); do
    [ "$(grep -c '"event":"watch_set"' "$out" || true)" -gt "$lines" ] && break
    sleep 0.1
  done
  grep '"event":"watch_set"' "$out" | tail -1 | grep -o '"level_reads":[0-9]*' | cut -d: -f2
}
# measure NAME CONFIG_JSON [RUN_ARGS...]
measure() {
  printf '%s\n' "$2" > "$tree.json"
  : > "$out"
  "$binary" --cgroup-root "$tree" run --config "$tree.json" --metrics-listen 127.0.0.1:0 "${@:3}" > "$out" 2>/dev/null &
  daemon=$!
  for _ in $(seq 50); do grep -q '"event":"started"' "$out" 2>/dev/null && break; sleep 0.1; done
  sleep "${WARMUP_S:-35}"
  local start_ns start_rss start_time end_ns end_rss end_time peak_kb watched reads0 reads1
  reads0=$(level_reads)
  start_ns=$(cpu_ns); start_rss=$(rss_kb); start_time=$(date +%s.%N)
  sleep "$seconds"
  end_ns=$(cpu_ns); end_rss=$(rss_kb); end_time=$(date +%s.%N)
  reads1=$(level_reads)
  peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$daemon/status")
  watched=$(grep -o '"watched_cgroups":[0-9]*' "$out" | head -1 | cut -d: -f2)
  kill -TERM "$daemon"; wait "$daemon" || true; daemon=
  if [ "$1" = recommended ]; then
    recommended_cpu_ns=$((end_ns - start_ns))
    recommended_s=$(awk -v a="$start_time" -v b="$end_time" 'BEGIN {print b - a}')
  fi
  awk -v name="$1" -v t0="$start_time" -v t1="$end_time" -v c0="$start_ns" -v c1="$end_ns" \
      -v r0="$start_rss" -v r1="$end_rss" -v peak="$peak_kb" -v watched="$watched" \
      -v reads="$((reads1 - reads0))" 'BEGIN {
    elapsed = t1 - t0; cpu = (c1 - c0) / 1e9; share = 100 * cpu / elapsed;
    printf "idle footprint (%s): %d cgroups watched, 500 processes, %.1f s\n", name, watched, elapsed;
    printf "  %s RSS %.2f MiB at start, %.2f MiB at end (peak %.2f MiB); target <= 8 MiB: %s\n",
           name, r0 / 1024, r1 / 1024, peak / 1024, (peak <= 8192 ? "met" : "NOT met");
    printf "  %s CPU %.4f s = %.3f%% of a core (scheduler run time); target <= 0.1%%: %s\n",
           name, cpu, share, (share <= 0.1 ? "met" : "NOT met");
    printf "  %s level readings %.1f per second\n", name, reads / elapsed;
  }'
}

# The kill history in the fixture's directory (the default, /var/lib/oomguard, is the host's).
measure default '{"history": {"dir": "'"$tree"'/state"},
  "cgroups": [{"match": "/**", "watch_events": true, "pressure": null}], "host": {"pressure": null}}'
measure recommended '{"version": 1, "mode": "act", "history": {"dir": "'"$tree"'/state"},
  "host": {"pressure": null, "act": {"action": "kill-allocating", "when": {"mem_available_below": 0.10}}},
  "cgroups": [{"match": "/**", "watch_events": true, "pressure": null,
               "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10}}}]}' --dry-run

# The floor, on the same fixture for as long.
floor_binary="$(dirname "$binary")/bench_idle_floor"
if [ ! -x "$floor_binary" ]; then
  echo "idle floor: SKIPPED, $floor_binary is not built (configure with -DOOMGUARD_BENCH=ON); no ratio"
  exit 0
fi
"$floor_binary" "$tree" 0.10 512 > "$out" 2>&1 &
daemon=$!
floor_alive() {
  kill -0 "$daemon" 2>/dev/null && return 0
  echo "idle floor: FAILED, bench_idle_floor exited $1:"; cat "$out"; daemon=; exit 1
}
sleep 1; floor_alive "at its start"
# Its warm-up: a process is quiet from its third read on (the refresh at 10 s), so a window from 12 s on
# holds only steady refreshes. (The daemon's is 35 s: it re-reads a young cgroup's limit for 30 s.)
sleep 11
floor_alive "in its warm-up"
start_ns=$(cpu_ns); start_time=$(date +%s.%N)
sleep "$seconds"
floor_alive "in the window"
end_ns=$(cpu_ns); end_time=$(date +%s.%N)
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
cat "$out"
awk -v t0="$start_time" -v t1="$end_time" -v c0="$start_ns" -v c1="$end_ns" -v rc="$recommended_cpu_ns" \
    -v rs="$recommended_s" 'BEGIN {
  floor = 100 * (c1 - c0) / 1e9 / (t1 - t0); recommended = 100 * rc / 1e9 / rs;
  printf "idle floor: CPU %.4f s = %.3f%% of a core over %.1f s\n", (c1 - c0) / 1e9, floor, t1 - t0;
  if (floor <= 0) { print "idle ratio recommended/floor: not measured (the floor used no CPU)"; exit }
  printf "idle ratio recommended/floor %.2f (recommended %.3f%%, floor %.3f%%)\n", recommended / floor,
         recommended, floor;
}'
