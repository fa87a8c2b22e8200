#!/bin/sh
# vmrun-args: -m 768 -t 240 --deb earlyoom
# earlyoom-side-by-side: Debian's earlyoom 1.7 and oomguard, each alone, on the same host-level leak.
#
# No swap, no limits. Two sleeping innocents (120 and 24 MiB) stay for the whole boot. Rounds alternate
# (earlyoom, oomguard, earlyoom, oomguard, ...; ROUNDS pairs), each with a fresh leaker under leakwatch: 2 MiB
# every 20 ms up to MemAvailable + 64 MiB (more than there is), so someone must kill it. Both act at the
# same level, MemAvailable below 10 % of MemTotal, with SIGKILL at once:
#   earlyoom  `earlyoom -m 10,10 -s 100,100 -r 0` (no swap: the swap condition is always met; it polls
#             every 100 ms to 1 s, adaptively)
#   oomguard  `oomguard run`, mode act, host act kill-worst when mem_available_below 0.10, everything
#             else default (refresh 5 s: its adaptive level watch reads MemAvailable as often as the
#             room to the threshold demands), default host PSI trigger
# leakwatch times the leak's start, the first poll (10 ms) where MemAvailable is below 10 %, and the
# leaker's death; earlyoom's lines are timed by tsline as they come (its "sending SIGKILL" line is
# printed just before kill(2)); oomguard's decision line carries its own time (written after the kill). earlyoom-side-by-side.check.py judges: in every round the killer killed the leaker (not
# an innocent; its own log says so), the innocents live, the kernel's OOM killer did not fire; and
# reports time-to-kill for both and the ratio oomguard / earlyoom. Args: [ROUNDS] (default 3).
#
# Why 768 MiB: both killers take the largest process by the kernel's model, so the leaker must clearly be
# the largest when MemAvailable crosses 10 %. With 512 MiB it was about A - 47 = 147 MiB then, and the
# per-CPU free lists (which MemAvailable leaves out, up to ~53 MiB after a death) could bring it below
# innocent1's 120 MiB: a CI run saw earlyoom rightly kill innocent1. With 768 MiB the leaker is about
# 290 MiB at the crossing (MemAvailable less the per-CPU lists); the check refuses a round whose expected size is under 1.5 x innocent1.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

ROUNDS=${1:-3}
command -v oomguard >/dev/null || fail "oomguard is not in the guest"
command -v earlyoom >/dev/null || fail "earlyoom is not in the guest (vmrun --deb earlyoom)"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
command -v tsline >/dev/null || fail "tsline is not in the guest"
lo_up
[ "$(awk '$1 == "SwapTotal:" { print $2 }' /proc/meminfo)" = 0 ] || fail "this scenario needs no swap"
SHARE=$OUT
mkdir -p "$SHARE/rounds"
earlyoom -v > "$SHARE/earlyoom.version" 2>&1
I1_MIB=120
innocent1=$(hog -D -q -m "$I1_MIB" -n innocent1) || fail "innocent1"
innocent2=$(hog -D -q -m 24 -n innocent2) || fail "innocent2"
echo "innocent1 $innocent1" > "$SHARE/innocents"
echo "innocent2 $innocent2" >> "$SHARE/innocents"

# round N KILLER
round() {
  dir="$SHARE/rounds/$1-$2"
  mkdir -p "$dir"
  settle_memory
  A=$(mem_available_mib)
  seq=$(kmsgdump -l)
  {
    echo "round $1"
    echo "killer $2"
    echo "mem_available_mib $A"
    echo "pcp_mib $(( $(awk '$1 == "count:" { n += $2 } END { print n + 0 }' /proc/zoneinfo) * 4 / 1024 ))"
    echo "mem_total_mib $(( $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) / 1024 ))"
    echo "innocent1_mib $I1_MIB"
    echo "vmstat_oom_kill_before $(vmstat oom_kill)"
  } > "$dir/params"
  if [ "$2" = earlyoom ]; then
    # Its lines are timed as they come (tsline), through a FIFO so that $! is earlyoom itself.
    mkfifo "/tmp/earlyoom.$1"
    tsline < "/tmp/earlyoom.$1" > "$dir/earlyoom.log" &
    stamper=$!
    earlyoom -m 10,10 -s 100,100 -r 0 > "/tmp/earlyoom.$1" 2>&1 &
    killer=$!
    n=0
    until grep -q 'SIGKILL when mem' "$dir/earlyoom.log" 2>/dev/null || [ "$n" -ge 100 ]; do sleep 0.05; n=$((n + 1)); done
  else
    OUT=$dir
    DAEMON_LOG=$dir/daemon.jsonl
    daemon_start '{"version": 1, "mode": "act", 
      "host": {"act": {"action": "kill-worst", "when": {"mem_available_below": 0.10}}}}'
    killer=$DAEMON_PID
  fi
  sleep 0.5
  echo "killer_pid $killer" >> "$dir/params"
  echo "killer_alive_before $(pid_alive "$killer" && echo 1 || echo 0)" >> "$dir/params"
  log "round $1 $2: leaking from MemAvailable $A MiB"
  leakwatch -o "$dir/leak.txt" -a 0.10 -i 10 -t 40 -- hog -q -x -m $((A + 64)) -s 2 -d 20 -n leaker
  echo "leakwatch_rc $?" >> "$dir/params"
  sleep 0.5
  if [ "$2" = oomguard ]; then
    # The daemon's own histograms (scan duration, reaction), for the diagnosis of its latency.
    wget -q -O "$dir/metrics.txt" http://127.0.0.1:9743/metrics 2> "$dir/metrics.err" || true
  fi
  {
    echo "innocent1_alive $(pid_alive "$innocent1" && echo 1 || echo 0)"
    echo "innocent2_alive $(pid_alive "$innocent2" && echo 1 || echo 0)"
    echo "killer_alive_after $(pid_alive "$killer" && echo 1 || echo 0)"
    echo "vmstat_oom_kill_after $(vmstat oom_kill)"
  } >> "$dir/params"
  if [ "$2" = earlyoom ]; then
    kill -TERM "$killer" 2>/dev/null
    wait "$killer" 2>/dev/null
    wait "$stamper" 2>/dev/null
    rm -f "/tmp/earlyoom.$1"
  else
    daemon_stop
    OUT=$SHARE
    DAEMON_LOG=$SHARE/daemon.jsonl
  fi
  if kmsg_oom_lines "$seq" > "$dir/kmsg-oom.txt"; then echo "kmsg_read_ok 1" >> "$dir/params"; fi
  log "round $1 $2: $(tr '\n' ' ' < "$dir/leak.txt")"
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
  round "$r" earlyoom
  round "$r" oomguard
  r=$((r + 1))
done
echo "$ROUNDS" > "$SHARE/rounds.done"
log "earlyoom-side-by-side: done"
