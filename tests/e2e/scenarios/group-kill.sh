#!/bin/sh
# vmrun-args: -m 512 -t 120
# group-kill: a victim under a cgroup with memory.oom.group=1 (set by oomguard from the config rule
# "oom_group": true) -> oomguard kills the whole cgroup through cgroup.kill, as the kernel would, and
# before the kernel has to.
#
# /gk (memory.max 128M, swap.max 0, +memory for its children) is the OOM domain, with an act rule
# kill-worst when headroom < 0.3. /gk/grp has the rule "oom_group": true and holds two 8 MiB sleepers
# and the leaker (1 MiB every 40 ms, under leakwatch); /gk/keep holds a 16 MiB sleeper outside the group.
# The daemon runs in mode act with the default refresh (5 s). group-kill.check.py judges: oomguard wrote
# memory.oom.group=1 (a protection line), its decision is action "kill_cgroup" for /gk/grp with result
# "killed" and the leaker as target, every task of /gk/grp died, its cgroup.events says populated 0,
# the keeper lives, and the kernel's oom / oom_kill / oom_group_kill stay 0 (memory.events, kmsg, daemon).
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
lo_up
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
D=$CGROOT/gk
P=$OUT/params

mkdir "$D" || fail "mkdir $D"
echo 128M > "$D/memory.max" || fail "memory.max"
echo 0 > "$D/memory.swap.max" || fail "memory.swap.max"
echo +memory > "$D/cgroup.subtree_control" || fail "+memory on $D"
mkdir "$D/grp" "$D/keep" || fail "mkdir grp/keep"
echo "oom_group_before $(cat "$D/grp/memory.oom.group")" > "$P"

daemon_start '{"version": 1, "mode": "act", 
  "cgroups": [
    {"match": "/gk/grp", "oom_group": true},
    {"match": "/gk", "act": {"action": "kill-worst", "when": {"headroom_below": 0.3}}},
    {"match": "/**"}]}'
log "group-kill: daemon $DAEMON_PID started"
seq=$(kmsgdump -l)
m1=$(hog -D -q -g "$D/grp" -m 8 -n member1) || fail "member1"
m2=$(hog -D -q -g "$D/grp" -m 8 -n member2) || fail "member2"
keeper=$(hog -D -q -g "$D/keep" -m 16 -n keeper) || fail "keeper"
{
  echo "member1_pid $m1"
  echo "member2_pid $m2"
  echo "keeper_pid $keeper"
} >> "$P"
if daemon_wait_for '"event":"protection","cgroup":"/gk/grp","memory.oom.group":true' 10 0; then
  echo "protection_logged 1" >> "$P"
else
  echo "protection_logged 0" >> "$P"
fi
echo "oom_group_applied $(cat "$D/grp/memory.oom.group")" >> "$P"
daemon_wait_for '"event":"next_victim","domain":{"kind":"memcg","cgroup":"/gk"' 10 0 || log "no next_victim for /gk yet"
sleep 0.6
echo "daemon_line_leak $(daemon_lines)" >> "$P"
log "group-kill: leaking into /gk/grp (members $m1 $m2, keeper $keeper)"
leakwatch -o "$OUT/leak.txt" -g "$D" -i 10 -t 40 -- hog -q -x -g "$D/grp" -m 200 -s 1 -d 40 -n leaker
echo "leakwatch_rc $?" >> "$P"
logged=0
daemon_wait_for '"action":"kill_cgroup"' 5 0 && logged=1
echo "daemon_logged_group_kill $logged" >> "$P"
n=0
while grep -q 'populated 1' "$D/grp/cgroup.events" && [ "$n" -lt 100 ]; do
  sleep 0.05
  n=$((n + 1))
done
sleep 0.3
{
  echo "grp_procs_after $(tr '\n' ' ' < "$D/grp/cgroup.procs")"
  echo "member1_alive_after $(pid_alive "$m1" && echo 1 || echo 0)"
  echo "member2_alive_after $(pid_alive "$m2" && echo 1 || echo 0)"
  echo "keeper_alive_after $(pid_alive "$keeper" && echo 1 || echo 0)"
  echo "daemon_alive_after $(daemon_alive && echo 1 || echo 0)"
  echo "vmstat_oom_kill $(vmstat oom_kill)"
} >> "$P"
cp "$D/grp/cgroup.events" "$OUT/grp.cgroup.events"
cp "$D/grp/memory.events" "$OUT/grp.memory.events"
cp "$D/memory.events" "$OUT/gk.memory.events"
kmsg_oom_lines "$seq" > "$OUT/kmsg-oom.txt"
cg_remove "$D"
echo "done" > "$OUT/run.done"
daemon_stop
log "group-kill: $(tr '\n' ' ' < "$OUT/leak.txt")"
log "group-kill: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
