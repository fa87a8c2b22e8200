#!/bin/sh
# vmrun-args: -m 512 -t 180
# beat-the-kernel: does `oomguard run` in mode act kill a leak in a limited cgroup before the kernel's
# OOM killer has to, and kill the leaker, not its innocent neighbour?
#
# One daemon, mode act, every setting at its default (refresh 5 s, trend window 10 s, victim wait 2 s),
# one act rule per cgroup. Three sub-runs, each in its own cgroup with memory.max 160 MiB and swap.max
# 0, holding a sleeping neighbour and a leaker (hog growing 1 MiB every 40 ms, to more than memory.max),
# started under leakwatch, which times the leaker's death and the first rise of memory.events "high":
#   worst   /btk-worst, kill-worst `when: {on_memory_high: true}`, memory.high 56 MiB, neighbour 24 MiB.
#           When the cgroup crosses memory.high the leaker is already the biggest task.
#   alloc   /btk-alloc, kill-allocating `when: {on_memory_high: true}`, memory.high 64 MiB, neighbour
#           48 MiB, started inside the trend window: it allocates in 2 MiB steps, and a refresh reads it
#           half-way (the scenario sends SIGHUP, which refreshes a daemon in mode act, so that the sample
#           is certain and not a 1-in-4 chance), so its start-up counts as growth in the window (about
#           28 MiB, more than the leaker's when it crosses memory.high). The neighbour is still the
#           kernel's next victim; only the leaker is growing now.
#   nohigh  /btk-nohigh, no memory.high: the recommended rule (kill-allocating `when: {headroom_below:
#           0.10}`, threshold 144 MiB), neighbour 24 MiB. Only the adaptive level watch can see the leak
#           coming; no kernel event warns before memory.max.
# beat-the-kernel.check.py judges: the leaker died of SIGKILL from an oomguard decision (result
# "killed", target = leaker), the neighbour lives, the cgroup's oom / oom_kill stay 0, no kernel OOM
# report and no kernel_oom_kill line; the peak charge near memory.high (or the threshold), the leaker's
# death soon after the crossing, and no decision before the kill.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
lo_up
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
mkdir -p "$OUT/runs" || fail "no share dir"

daemon_start '{"version": 1, "mode": "act",
  "cgroups": [
    {"match": "/btk-worst", "act": {"action": "kill-worst", "when": {"on_memory_high": true}}},
    {"match": "/btk-alloc", "act": {"action": "kill-allocating", "when": {"on_memory_high": true}}},
    {"match": "/btk-nohigh", "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10}}},
    {"match": "/**"}]}'
log "beat-the-kernel: daemon $DAEMON_PID started"

# refresh_now: a refresh at once (SIGHUP: a reload, and in mode act a refresh), waited for.
refresh_now() {
  from=$(daemon_lines)
  kill -HUP "$DAEMON_PID"
  daemon_wait_for '"event":"config_reload","result":"applied"' 5 "$from" || fail "the daemon did not reload"
  sleep 0.3   # the refresh runs on the loop's next turn
}

# subrun NAME POLICY NEIGHBOUR_MiB HIGH_MiB(0: none) MAX_MiB
subrun() {
  dir="$OUT/runs/$1"
  mkdir -p "$dir"
  cg=$(cg_new "btk-$1" "$5")
  if [ "$4" -gt 0 ]; then
    echo "${4}M" > "$cg/memory.high" || fail "memory.high of $cg"
  fi
  line_start=$(daemon_lines)
  seq=$(kmsgdump -l)
  oom_kills_before=$(vmstat oom_kill)
  if [ "$1" = alloc ]; then
    # Its start-up inside the trend window, sampled half-way by a refresh, then at rest by another.
    hog -D -q -g "$cg" -m "$3" -s 2 -d 50 -n neighbour > "$dir/neighbour.pid" &
    starter=$!
    sleep 0.5
    refresh_now
    wait "$starter" || fail "$1: neighbour did not start"
    neighbour=$(cat "$dir/neighbour.pid")
    refresh_now
  else
    neighbour=$(hog -D -q -g "$cg" -m "$3" -n neighbour) || fail "$1: neighbour did not start"
  fi
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
  # The daemon must have the domain ranked (a refresh has seen the neighbour).
  if daemon_wait_for "\"event\":\"next_victim\",\"domain\":{\"kind\":\"memcg\",\"cgroup\":\"/btk-$1\"" 15 "$line_start"; then
    echo "daemon_saw_domain 1" >> "$dir/params"
  else
    echo "daemon_saw_domain 0" >> "$dir/params"
  fi
  # kill-allocating counts a task as growing only when it grew in the last second: the neighbour's
  # latest sample at rest must be that old when the leak is decided on (the leak takes about 0.6 s
  # to reach memory.high; this makes it certain).
  sleep 1
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
subrun nohigh kill-allocating 24 0 160
echo "done" > "$OUT/runs.done"
daemon_stop
log "beat-the-kernel: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
