#!/bin/sh
# vmrun-args: -m 512 -t 240
# hooks: does a pre_kill hook run between oomguard's decision and its kill, does the kill wait for it at
# most its timeout, whatever the hook does (hang, fail, missing), and does the post_kill hook see the
# victim gone? The leaks never reach the kernel's OOM killer, and the neighbour lives.
#
# One daemon, mode act, the recommended rule at every default (kill-allocating `when: {headroom_below:
# 0.10}`, refresh 5 s), and hooks that change by reload (SIGHUP) between three sub-runs, each in its own
# cgroup with memory.max 160 MiB (threshold 144 MiB), swap.max 0, a sleeping 24 MiB neighbour and a
# leaker growing 1 MiB every 40 ms (25 MiB/s):
#   hang     pre_kill records when it started, the event on its stdin and whether the victim was alive,
#            then sleeps an hour: killed at its timeout_ms 300 (its sleep too, checked right after the
#            sub-run); post_kill records whether the victim is still there when it runs.
#   fail     pre_kill exits 3 at once: the kill follows at once.
#   missing  pre_kill's argv[0] does not exist: the kill follows at once.
# 300 ms at 25 MiB/s is 7.5 MiB of the 16 MiB between the threshold and memory.max.
# hooks.check.py judges from the daemon's log (decision pre_kill_hook, hook, kill lines), the hooks'
# records, leakwatch's record of the leaker and the kernel's counters.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
lo_up
mkdir -p "$OUT/runs" /tmp/hooks || fail "no share dir"

kill_hooks

# config PRE_KILL_ARGV0: the daemon's config with that pre_kill hook (timeout 300 ms) and post.sh.
config() {
  printf '%s\n' '{"version": 1, "mode": "act",
  "hooks": {"pre_kill": {"argv": ["'"$1"'"], "timeout_ms": 300},
            "post_kill": {"argv": ["/tmp/hooks/post.sh"], "timeout_ms": 5000}},
  "cgroups": [
    {"match": "/hk-*", "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10}}},
    {"match": "/**"}]}'
}

daemon_start "$(config /tmp/hooks/pre-hang.sh)"
log "hooks: daemon $DAEMON_PID started"

# subrun NAME PRE_KILL_ARGV0
subrun() {
  dir="$OUT/runs/$1"
  mkdir -p "$dir"
  from=$(daemon_lines)
  config "$2" > "$OUT/daemon-config.json"
  kill -HUP "$DAEMON_PID"
  daemon_wait_for '"event":"config_reload","result":"applied"' 10 "$from" || fail "$1: the daemon did not reload"
  cg=$(cg_new "hk-$1" 160)
  line_start=$(daemon_lines)
  seq=$(kmsgdump -l)
  oom_kills_before=$(vmstat oom_kill)
  neighbour=$(hog -D -q -g "$cg" -m 24 -n neighbour) || fail "$1: neighbour did not start"
  {
    echo "name $1"
    echo "pre_kill $2"
    echo "cgroup /hk-$1"
    echo "neighbour_pid $neighbour"
    echo "daemon_line_start $line_start"
  } > "$dir/params"
  daemon_wait_for "\"event\":\"next_victim\",\"domain\":{\"kind\":\"memcg\",\"cgroup\":\"/hk-$1\"" 15 "$line_start" ||
    log "$1: no next_victim for /hk-$1 within 15 s"
  sleep 1   # the neighbour's last sample at rest is a second old: it is not growing now
  echo "daemon_line_leak $(daemon_lines)" >> "$dir/params"
  log "$1: leaking into /hk-$1 (neighbour $neighbour)"
  leakwatch -o "$dir/leak.txt" -g "$cg" -i 10 -t 40 -- hog -q -x -g "$cg" -m 200 -s 1 -d 40 -n leaker
  echo "leakwatch_rc $?" >> "$dir/params"
  leaker=$(awk '$1 == "pid" { print $2 }' "$dir/leak.txt")
  # The kill line, then the post_kill hook's record (it runs once the victim is gone).
  daemon_wait_for '"event":"kill"' 10 "$line_start" || log "$1: no kill line within 10 s"
  post_kill_record "$leaker" || log "no post_kill record for $leaker within 5 s"
  daemon_wait_for '"hook":"post_kill"' 5 "$line_start" || log "$1: no post_kill hook line within 5 s"
  {
    echo "leaker_pid $leaker"
    echo "neighbour_alive_after $(pid_alive "$neighbour" && echo 1 || echo 0)"
    echo "vmstat_oom_kill_before $oom_kills_before"
    echo "vmstat_oom_kill_after $(vmstat oom_kill)"
    echo "daemon_alive_after $(daemon_alive && echo 1 || echo 0)"
    echo "daemon_line_end $(daemon_lines)"
  } >> "$dir/params"
  cp "$cg/memory.events" "$dir/memory.events"
  for f in /tmp/hooks/out/pre-"$leaker".* /tmp/hooks/out/post-"$leaker".*; do
    [ -e "$f" ] && cp "$f" "$dir/"
  done
  kmsg_oom_lines "$seq" > "$dir/kmsg-oom.txt"
  cg_remove "$cg"
  log "$1: $(tr '\n' ' ' < "$dir/leak.txt")"
}

subrun hang /tmp/hooks/pre-hang.sh
# No hook process outlives its timeout: the hang hook's `sleep 3600` went with its process group.
echo "hook_sleepers_left $(hang_hook_sleepers)" > "$OUT/after.txt"
subrun fail /tmp/hooks/pre-fail.sh
subrun missing /tmp/hooks/absent-pre-kill
echo "done" > "$OUT/runs.done"
daemon_stop
log "hooks: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
