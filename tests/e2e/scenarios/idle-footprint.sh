#!/bin/sh
# vmrun-args: -m 512 -t 420
# idle-footprint: the daemon's footprint when idle, on the real memory controller, with what the
# defaults arm: 500 limited cgroups (50 parents x 10 leaves, memory.max 256 MiB each, a sleeping task in
# each), each with its memory.events watched and a PSI trigger armed (the default rule: "some 100 ms / 1 s" wherever
# memory.max is finite), and the host's PSI trigger. bench/idle_footprint.sh measures the same on a
# fixture tree, where no PSI trigger can be armed; this is the default as a user runs it.
# Two daemons, one after the other, each for WARMUP_S (new cgroups have their limits re-read every
# refresh for their first 30 s) then MEASURE_S:
#   default      `oomguard run` without a config (mode observe, every default).
#   recommended  `oomguard run --config act-recommended.json` (examples/, copied in by run-suite):
#                mode act, an act rule on every domain, so the adaptive level watch reads each
#                domain's memory.current on its own schedule; memory.high is not touched.
# Records RSS (VmRSS at start and end of the window, VmHWM), the CPU used in the window (utime +
# stime), and the daemon's own count of watched cgroups, armed triggers and level readings (SIGUSR1);
# idle-footprint.check.py judges.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

WARMUP_S=35
MEASURE_S=30
command -v oomguard >/dev/null || fail "oomguard is not in the guest"
lo_up
mkdir -p "$OUT/runs" || fail "no share dir"

tree=$CGROOT/idle
mkdir "$tree" || fail "mkdir $tree"
echo "+memory" > "$tree/cgroup.subtree_control" || fail "subtree_control of $tree"
# One sleeping task per leaf: oomguard arms a cgroup's PSI trigger only once it is populated (the
# kernel's pressure_write/rmdir race, tests/e2e/README.md), as a pod's cgroup is.
sleepers=""
for p in $(seq 0 49); do
  mkdir "$tree/p$p" || fail "mkdir p$p"
  echo "+memory" > "$tree/p$p/cgroup.subtree_control" || fail "subtree_control of p$p"
  for l in $(seq 0 9); do
    mkdir "$tree/p$p/l$l" || fail "mkdir p$p/l$l"
    echo 256M > "$tree/p$p/l$l/memory.max" || fail "memory.max of p$p/l$l"
    sleep 100000 &
    echo $! > "$tree/p$p/l$l/cgroup.procs" || fail "a sleeper into p$p/l$l"
    sleepers="$sleepers $!"
  done
done
log "idle-footprint: $(find "$tree" -mindepth 1 -type d | wc -l) cgroups under /idle"

stat_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# measure NAME [--config FILE]
measure() {
  name=$1
  shift
  dir="$OUT/runs/$name"
  mkdir -p "$dir"
  # guestlib's daemon_* helpers, on this run's own log.
  DAEMON_LOG="$dir/daemon.jsonl"
  oomguard run "$@" --metrics-listen 127.0.0.1:0 > "$DAEMON_LOG" 2> "$dir/daemon.err" &
  pid=$!
  DAEMON_PID=$pid
  s0=$(uptime_s)
  daemon_wait_for '"event":"started"' 30 0 || log "$name: no started line after 30 s"
  start_s=$(awk -v a="$s0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')
  log "$name: started after $start_s s"
  sleep "$WARMUP_S"
  t0=$(uptime_s); c0=$(stat_ticks "$pid"); r0=$(status_kb "$pid" VmRSS)
  sleep "$MEASURE_S"
  t1=$(uptime_s); c1=$(stat_ticks "$pid"); r1=$(status_kb "$pid" VmRSS); hwm=$(status_kb "$pid" VmHWM)
  cp "/proc/$pid/smaps_rollup" "$dir/smaps_rollup" 2>/dev/null
  # What it has armed and done (SIGUSR1: a watch_set line with the PSI triggers and its counters).
  kill -USR1 "$pid"
  n=0
  until grep -q '"event":"watch_set"' "$dir/daemon.jsonl" 2>/dev/null || [ "$n" -ge 50 ]; do sleep 0.1; n=$((n + 1)); done
  grep '"event":"watch_set"' "$dir/daemon.jsonl" | head -n 1 > "$dir/watch_set.json"
  alive=0
  daemon_alive && alive=1
  # guestlib's daemon_stop: SIGTERM, a wait bounded at 5 s, then each thread's state and wait channel
  # (daemon.stuck) and SIGKILL, the exit code "timeout"; a daemon that does not exit is this scenario's
  # failure, not a guest that runs into the VM's limit.
  daemon_stop
  mv "$OUT/daemon.stop" "$dir/daemon.stop"
  [ -f "$OUT/daemon.stuck" ] && { log "$name: STILL RUNNING after SIGTERM; its threads:"; cat "$OUT/daemon.stuck"; mv "$OUT/daemon.stuck" "$dir/"; }
  rc=$(sed -n 's/^exit_code //p' "$dir/daemon.stop")
  stop_s=$(awk '$1 == "stop_ms" { printf "%.2f", $2 / 1000 }' "$dir/daemon.stop")
  log "$name: exited $stop_s s after SIGTERM, code $rc"
  {
    echo "name $name"
    echo "seconds $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    echo "cpu_ticks $((c1 - c0))"
    echo "clk_tck $(getconf CLK_TCK 2>/dev/null || echo 100)"
    echo "rss_start_kb $r0"
    echo "rss_end_kb $r1"
    echo "rss_peak_kb $hwm"
    echo "alive_at_end $alive"
    echo "exit_code $rc"
    echo "start_s $start_s"
    echo "stop_s $stop_s"
  } > "$dir/params"
  log "$name: $(tr '\n' ' ' < "$dir/params")"
}

measure default
measure recommended --config "$VMRUN_FILES/act-recommended.json"
# shellcheck disable=SC2086
kill $sleepers 2>/dev/null
echo done > "$OUT/runs.done"
