#!/bin/sh
# vmrun-args: -m 512 -t 300
# daemon-prediction-host: does `oomguard run`, watching, name the task the kernel's global OOM killer
# kills (prediction "match" in its kernel_oom_kill line), and does it survive every host OOM?
#
# No swap, no limits. The daemon runs with the default self-protection (oom_score_adj -1000, mlockall)
# and a refresh every 0.5 s. Each trial is shaped like prediction-host's: 3-5 sleeping hogs take all but
# RESERVE MiB of what is available; once the daemon's host prediction has had two refreshes to see them,
# a trigger asks for more than is left. The kernel's report is read independently (kmsgdump); the trial
# waits for the daemon's kernel_oom_kill line and checks the daemon is still alive.
# daemon-prediction-host.check.py judges on the host. Args: [TRIALS] (default 10).
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

TRIALS=${1:-10}
RESERVE=48          # MiB of MemAvailable left for the trigger
TRIGGER_MAX=64      # the most the trigger can hold when the OOM hits (reserve + slack)
MARGIN=1024         # pages (4 MiB) between the winner and the runner-up, and over the trigger
CASES="size minus1000 positive negative mixed"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
[ "$(awk '$1 == "SwapTotal:" { print $2 }' /proc/meminfo)" = 0 ] || fail "this scenario needs no swap"
mkdir -p "$OUT/trials" || fail "no share dir"
echo "host" > "$OUT/kind"
daemon_start '{"version": 1, "refresh_interval_s": 0.5}'
{
  echo "daemon_oom_score_adj $(cat "/proc/$DAEMON_PID/oom_score_adj")"
  echo "daemon_vmlck_kb $(awk '$1 == "VmLck:" { print $2 }' "/proc/$DAEMON_PID/status")"
  echo "daemon_rss_kb $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$DAEMON_PID/status")"
} > "$OUT/daemon.self"
total_kb=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
unit=$((total_kb / 4 / 1000))
log "daemon-prediction-host: $TRIALS trials, daemon $DAEMON_PID ($(tr '\n' ' ' < "$OUT/daemon.self")), MemTotal ${total_kb} kB"

i=1
while [ "$i" -le "$TRIALS" ]; do
  dir="$OUT/trials/$i"
  mkdir -p "$dir"
  kase=$(echo "$CASES" | cut -d' ' -f$(( (i - 1) % 5 + 1 )))
  ntasks=$((3 + i % 3))
  t0=$(uptime_s)
  settle_memory
  avail=$(mem_available_mib)
  budget=$((avail - RESERVE))
  gen_tasks "$((1100 + i))" "$ntasks" "$budget" 24 "$unit" "$TRIGGER_MAX" "$MARGIN" "$kase" \
    > "$dir/tasks" || fail "trial $i: no parameters"
  line_start=$(daemon_lines)
  {
    echo "trial $i"
    echo "case $kase"
    echo "domain host"
    echo "mem_available_mib $avail"
    echo "daemon_line_start $line_start"
  } > "$dir/params"
  pids=""
  while read -r _ tname size adj; do
    pid=$(hog -D -q -m "$size" -a "$adj" -n "$tname") || fail "trial $i: hog $tname did not start"
    echo "hog $tname $size $adj $pid" >> "$dir/params"
    pids="$pids $pid"
  done < "$dir/tasks"

  # A host next_victim line since the trial began (the hogs change it), then two more refreshes.
  if daemon_wait_for '"event":"next_victim","domain":{"kind":"host","cgroup":"/"' 15 "$line_start"; then
    echo "daemon_saw_domain 1" >> "$dir/params"
  else
    echo "daemon_saw_domain 0" >> "$dir/params"
  fi
  sleep 1.1
  refscore host > "$dir/ref.tsv" 2>&1
  # shellcheck disable=SC2086
  proc_snapshot $pids > "$dir/procs.before"
  left=$(mem_available_mib)
  echo "mem_available_before_trigger_mib $left" >> "$dir/params"

  seq=$(kmsgdump -l)
  echo "daemon_line_trigger $(daemon_lines)" >> "$dir/params"
  timeout 60 hog -q -x -m $((left + 24)) -s 1 -n trigger
  trigger_rc=$?
  kmsgdump -a "$seq" -w 'Killed process' -t 20 > "$dir/kmsg.txt"
  kmsg_rc=$?
  if daemon_wait_for '"event":"kernel_oom_kill","constraint":"CONSTRAINT_NONE","domain":"/"' 10 "$line_start"; then
    echo "daemon_logged_kill 1" >> "$dir/params"
  else
    echo "daemon_logged_kill 0" >> "$dir/params"
  fi
  {
    echo "trigger_rc $trigger_rc"
    echo "kmsg_rc $kmsg_rc"
    echo "daemon_alive_after $(daemon_alive && echo 1 || echo 0)"
  } >> "$dir/params"
  # shellcheck disable=SC2086
  kill_pids $pids
  echo "daemon_line_end $(daemon_lines)" >> "$dir/params"
  echo "seconds $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')" >> "$dir/params"
  log "trial $i ($kase, $ntasks tasks, ${budget} MiB) recorded"
  daemon_alive || break
  i=$((i + 1))
done
[ "$i" -gt "$TRIALS" ] && echo "$TRIALS" > "$OUT/trials.done"
daemon_stop
log "daemon-prediction-host: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
