#!/bin/sh
# vmrun-args: -m 768 -t 150
# protection-holds: under host memory pressure (no swap, no memory.max anywhere) only unprotected
# processes die, whoever kills them.
#
# Sleeping hogs, sized from MemAvailable A at the start:
#   crit    /prot/crit, rule "protection": "critical" (oomguard writes oom_score_adj -998), 0.28 A:
#           the biggest task of all
#   omit    /prot/omit, rule "preference": "omit" (oomguard never kills it; adj stays 0), 0.26 A: the
#           biggest task the kernel would kill, bigger than the leaker when the threshold is crossed
#   pinned  /prot/pinned, oom_score_adj -1000 (set by itself), 0.14 A
#   plain   /prot/plain, unprotected, 0.06 A
# Phase 1, oomguard acts: mode act, default refresh, host act rule kill-worst when MemAvailable <
# 6 % of MemTotal. A leaker in /prot/plain (1 MiB every 30 ms, to A + 64 MiB: more than there is) runs
# under leakwatch. oomguard must kill it, and only it, before the kernel has to.
# Phase 2, the kernel acts: the daemon is stopped (the -998 it wrote stays), omit is killed by the
# script (its protection binds oomguard only), and a burst of 16 MiB hogs (each smaller than crit and
# than plain) asks for A' + 64 MiB in all, one after another: the kernel's OOM killer must pick an
# unprotected task, never crit or pinned. Without crit's -998, crit would be the biggest task there and
# the kernel's victim: the burst's pieces are small so that the protection, not the burst's size,
# decides.
# Why 768 MiB: kill-worst may only choose between the leaker and plain, so the leaker must clearly be
# the bigger when MemAvailable crosses 6 %: about 0.26 A less the per-CPU free lists (which MemAvailable
# leaves out: 30-53 MiB on 6.12) less 6 % of MemTotal. At 512 MiB that was 60 MiB less those lists
# against plain's 20 MiB; at 768 MiB it is about 110 MiB less them against 35. The check refuses a run
# whose expected leaker is under 1.5 x plain.
# protection-holds.check.py judges.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
lo_up
[ "$(awk '$1 == "SwapTotal:" { print $2 }' /proc/meminfo)" = 0 ] || fail "this scenario needs no swap"
P=$OUT/params
R=$CGROOT/prot
mkdir "$R" || fail "mkdir $R"
echo +memory > "$R/cgroup.subtree_control" || fail "+memory on $R"
mkdir "$R/crit" "$R/omit" "$R/pinned" "$R/plain" || fail "mkdir children"

daemon_start '{"version": 1, "mode": "act", 
  "host": {"act": {"action": "kill-worst", "when": {"mem_available_below": 0.06}}},
  "cgroups": [
    {"match": "/prot/crit", "protection": "critical"},
    {"match": "/prot/omit", "preference": "omit"},
    {"match": "/**"}]}'
settle_memory
A=$(mem_available_mib)
seq=$(kmsgdump -l)
echo "mem_available_mib_start $A" > "$P"
echo "kmsg_seq_start $seq" >> "$P"
crit=$(hog -D -q -g "$R/crit" -m $((A * 28 / 100)) -n crit) || fail "crit"
omit=$(hog -D -q -g "$R/omit" -m $((A * 26 / 100)) -n omit) || fail "omit"
pinned=$(hog -D -q -g "$R/pinned" -a -1000 -m $((A * 14 / 100)) -n pinned) || fail "pinned"
plain=$(hog -D -q -g "$R/plain" -m $((A * 6 / 100)) -n plain) || fail "plain"
for t in "crit $crit" "omit $omit" "pinned $pinned" "plain $plain"; do
  echo "$t $(awk '$1 == "VmRSS:" { print $2 }' "/proc/${t#* }/status")" >> "$OUT/tasks"
done
if daemon_wait_for "\"event\":\"protection\",\"cgroup\":\"/prot/crit\",\"pid\":$crit,\"oom_score_adj\":-998" 10 0; then
  echo "protection_logged 1" >> "$P"
else
  echo "protection_logged 0" >> "$P"
fi
sleep 0.6   # the protection settles; a host decision also reads every process newer than the last refresh
{
  echo "crit_adj_applied $(cat "/proc/$crit/oom_score_adj")"
  echo "pinned_adj $(cat "/proc/$pinned/oom_score_adj")"
  echo "omit_adj $(cat "/proc/$omit/oom_score_adj")"
  echo "mem_available_mib_before_leak $(mem_available_mib)"
  echo "pcp_mib_before_leak $(( $(awk '$1 == "count:" { n += $2 } END { print n + 0 }' /proc/zoneinfo) * 4 / 1024 ))"
  echo "mem_total_mib $(( $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) / 1024 ))"
  echo "daemon_line_leak $(daemon_lines)"
} >> "$P"
proc_snapshot "$crit" "$omit" "$pinned" "$plain" > "$OUT/procs.before"
log "phase 1: leaking (A=$A MiB; crit $crit omit $omit pinned $pinned plain $plain)"
leakwatch -o "$OUT/leak.txt" -a 0.06 -i 10 -t 40 -- hog -q -x -g "$R/plain" -m $((A + 64)) -s 1 -d 30 -n leaker
echo "leakwatch_rc $?" >> "$P"
daemon_wait_for '"result":"killed"' 5 0
sleep 0.5
{
  for t in "crit $crit" "omit $omit" "pinned $pinned" "plain $plain"; do
    echo "${t% *}_alive_phase1 $(pid_alive "${t#* }" && echo 1 || echo 0)"
  done
  echo "daemon_alive_phase1 $(daemon_alive && echo 1 || echo 0)"
  echo "vmstat_oom_kill_phase1 $(vmstat oom_kill)"
  echo "daemon_line_phase1_end $(daemon_lines)"
} >> "$P"
kmsg_oom_lines "$seq" > "$OUT/kmsg-oom-phase1.txt"
daemon_stop
log "phase 1: $(tr '\n' ' ' < "$OUT/leak.txt")"

# Phase 2: the kernel alone.
seq2=$(kmsgdump -l)
kill_pids "$omit"
settle_memory
A2=$(mem_available_mib)
echo "mem_available_mib_phase2 $A2" >> "$P"
log "phase 2: a burst of $((A2 / 16 + 4)) hogs of 16 MiB with the daemon stopped"
burst_pids=""
i=0
while [ "$i" -lt $((A2 / 16 + 4)) ]; do
  # -D: returns once this piece is touched (its pid), or 1 when it died first (the OOM took it).
  piece=$(hog -D -q -m 16 -n burst) && burst_pids="$burst_pids $piece"
  i=$((i + 1))
done
echo "burst_pieces $i" >> "$P"
kmsgdump -a "$seq2" -w 'Killed process' -t 10 > "$OUT/kmsg-phase2.txt"
echo "kmsg_phase2_rc $?" >> "$P"
# shellcheck disable=SC2086
[ -n "$burst_pids" ] && kill_pids $burst_pids
sleep 0.3
{
  for t in "crit $crit" "pinned $pinned" "plain $plain"; do
    echo "${t% *}_alive_end $(pid_alive "${t#* }" && echo 1 || echo 0)"
  done
  echo "vmstat_oom_kill_end $(vmstat oom_kill)"
} >> "$P"
cg_remove "$R"
echo "done" > "$OUT/run.done"
log "protection-holds: done"
