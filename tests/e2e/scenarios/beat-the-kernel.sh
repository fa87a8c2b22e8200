#!/bin/sh
# vmrun-args: -m 512 -t 180
# beat-the-kernel: does `oomguard run` in mode act kill a leak in a limited cgroup before the kernel's
# OOM killer has to, and kill the leaker, not its innocent neighbour?
#
# One daemon (mode act, default refresh 5 s, trend window 1 s) with an act rule per cgroup, both
# `when: {on_memory_high: true}`. Two sub-runs, each in its own cgroup with memory.high, memory.max and
# swap.max 0, holding a sleeping neighbour and a leaker (hog growing 1 MiB every 40 ms, to more than
# memory.max), started under leakwatch, which times the leaker's death and the first rise of the
# cgroup's memory.events "high":
#   worst  /btk-worst, kill-worst: neighbour 24 MiB, high 56 MiB, max 160 MiB. When the cgroup
#          crosses memory.high the leaker is already the biggest task.
#   alloc  /btk-alloc, kill-allocating: neighbour 48 MiB, high 64 MiB, max 160 MiB. When the cgroup
#          crosses memory.high the neighbour is still far bigger (the kernel's next victim), but only
#          the leaker grows.
# beat-the-kernel.check.py judges: the leaker died of SIGKILL from an oomguard decision (result
# "killed", target = leaker), the neighbour lives, the cgroup's oom / oom_kill stay 0, no kernel OOM
# report and no kernel_oom_kill line; and records the reaction times.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
lo_up
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
mkdir -p "$OUT/runs" || fail "no share dir"

# The default refresh: kill-allocating samples growth when it decides, not only at the refresh (a
# leaker that started after the last refresh grew from nothing). Until that, this scenario had to tune
# refresh_interval_s to 0.25 s: at 5 s a kill-allocating decision came 8.1 s after the high event.
daemon_start '{"version": 1, "mode": "act",
  "cgroups": [
    {"match": "/btk-worst", "act": {"action": "kill-worst", "when": {"on_memory_high": true}}},
    {"match": "/btk-alloc", "act": {"action": "kill-allocating", "when": {"on_memory_high": true}}},
    {"match": "/**"}],
  "policy": {"cooldown_s": 30, "trend_window_s": 1}}'
log "beat-the-kernel: daemon $DAEMON_PID started"

# subrun NAME POLICY NEIGHBOUR_MiB HIGH_MiB MAX_MiB
subrun() {
  dir="$OUT/runs/$1"
  mkdir -p "$dir"
  cg=$(cg_new "btk-$1" "$5")
  echo "${4}M" > "$cg/memory.high" || fail "memory.high of $cg"
  line_start=$(daemon_lines)
  seq=$(kmsgdump -l)
  oom_kills_before=$(vmstat oom_kill)
  neighbour=$(hog -D -q -g "$cg" -m "$3" -n neighbour) || fail "$1: neighbour did not start"
  {
    echo "name $1"
    echo "policy $2"
    echo "cgroup /btk-$1"
    echo "neighbour_mib $3"
    echo "high_mib $4"
    echo "max_mib $5"
    echo "neighbour_pid $neighbour"
    echo "daemon_line_start $line_start"
  } > "$dir/params"
  # The daemon must have the domain ranked (a refresh has seen the neighbour), and the neighbour must
  # have stood still for longer than the trend window: else its own start-up allocation still counts
  # as growth in the window, and kill-allocating rightly picks it.
  if daemon_wait_for "\"event\":\"next_victim\",\"domain\":{\"kind\":\"memcg\",\"cgroup\":\"/btk-$1\"" 15 "$line_start"; then
    echo "daemon_saw_domain 1" >> "$dir/params"
  else
    echo "daemon_saw_domain 0" >> "$dir/params"
  fi
  sleep 1.6
  echo "daemon_line_leak $(daemon_lines)" >> "$dir/params"
  log "$1: leaking into /btk-$1 (neighbour $neighbour, ${3} MiB; high ${4}M, max ${5}M)"
  leakwatch -o "$dir/leak.txt" -g "$cg" -i 10 -t 40 -- hog -q -x -g "$cg" -m $(($5 + 40)) -s 1 -d 40 -n leaker
  echo "leakwatch_rc $?" >> "$dir/params"
  logged=0
  daemon_wait_for '"result":"killed"' 5 "$line_start" && logged=1
  echo "daemon_logged_kill $logged" >> "$dir/params"
  sleep 0.3   # let later decisions (held by the cooldown) and events land
  {
    echo "neighbour_alive_after $(pid_alive "$neighbour" && echo 1 || echo 0)"
    echo "vmstat_oom_kill_before $oom_kills_before"
    echo "vmstat_oom_kill_after $(vmstat oom_kill)"
    echo "daemon_alive_after $(daemon_alive && echo 1 || echo 0)"
    echo "daemon_line_end $(daemon_lines)"
  } >> "$dir/params"
  cp "$cg/memory.events" "$dir/memory.events"
  kmsg_oom_lines "$seq" > "$dir/kmsg-oom.txt"
  cg_remove "$cg"
  log "$1: $(tr '\n' ' ' < "$dir/leak.txt")"
}

subrun worst kill-worst 24 56 160
subrun alloc kill-allocating 48 64 160
echo "done" > "$OUT/runs.done"
daemon_stop
log "beat-the-kernel: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
