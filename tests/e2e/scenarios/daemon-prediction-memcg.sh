#!/bin/sh
# vmrun-args: -m 512 -t 300
# daemon-prediction-memcg: does `oomguard run`, watching, name the task the kernel's memcg OOM killer
# kills, in its own kernel_oom_kill line (prediction "match")?
#
# The daemon runs in the background for the whole boot (refresh every 0.5 s, JSON log in
# $OUT/daemon.jsonl). Each trial is shaped like prediction-memcg's (same gen_tasks cases): a cgroup
# /dpredN with memory.max L MiB and swap.max 0, 3-5 sleeping hogs; once the daemon has logged a
# next_victim for the new domain, and two refreshes more have passed, a small trigger pushes the cgroup
# over its limit. The kernel's report is read independently from /dev/kmsg (kmsgdump), and the trial
# waits until the daemon has logged its kernel_oom_kill line. At the end the daemon must still run and
# stop on SIGTERM with exit 0 within 1 s. daemon-prediction-memcg.check.py judges on the host.
# Args: [TRIALS] (default 20).
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

TRIALS=${1:-20}
HEADROOM=8          # MiB left free in the cgroup for the trigger
TRIGGER_MAX=10      # the most the trigger can hold when the OOM hits (headroom + a huge page)
MARGIN=512          # pages (2 MiB) between the winner and the runner-up, and over the trigger
LIMITS="40 56 72 96"
CASES="size minus1000 positive negative mixed"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
mkdir -p "$OUT/trials" || fail "no share dir"
echo "memcg" > "$OUT/kind"
log "daemon-prediction-memcg: $TRIALS trials"
daemon_start '{"version": 1, "refresh_interval_s": 0.5}'
log "daemon $DAEMON_PID started"

i=1
while [ "$i" -le "$TRIALS" ]; do
  dir="$OUT/trials/$i"
  mkdir -p "$dir"
  limit=$(echo "$LIMITS" | cut -d' ' -f$(( (i - 1) % 4 + 1 )))
  kase=$(echo "$CASES" | cut -d' ' -f$(( (i - 1) % 5 + 1 )))
  ntasks=$((3 + i % 3))
  unit=$((limit * 256 / 1000))
  name="dpred$i"
  t0=$(uptime_s)
  # Seeds differ from prediction-memcg's (i + 1000) so both scenarios together cover more shapes.
  gen_tasks "$((i + 1000))" "$ntasks" $((limit - HEADROOM)) 3 "$unit" "$TRIGGER_MAX" "$MARGIN" "$kase" \
    > "$dir/tasks" || fail "trial $i: no parameters"
  line_start=$(daemon_lines)
  cg=$(cg_new "$name" "$limit")
  {
    echo "trial $i"
    echo "case $kase"
    echo "domain /$name"
    echo "limit_mib $limit"
    echo "daemon_line_start $line_start"
  } > "$dir/params"
  pids=""
  while read -r _ tname size adj; do
    pid=$(hog -D -q -g "$cg" -m "$size" -a "$adj" -n "$tname") || fail "trial $i: hog $tname did not start"
    echo "hog $tname $size $adj $pid" >> "$dir/params"
    pids="$pids $pid"
  done < "$dir/tasks"

  # The daemon must have taken the new domain in (a next_victim line for it), then two more refreshes.
  if daemon_wait_for "\"event\":\"next_victim\",\"domain\":{\"kind\":\"memcg\",\"cgroup\":\"/$name\"" 15 "$line_start"; then
    echo "daemon_saw_domain 1" >> "$dir/params"
  else
    echo "daemon_saw_domain 0" >> "$dir/params"
  fi
  sleep 1.1
  # A naive reference and what the kernel shows, for the diagnosis of a failure only.
  refscore "$cg" > "$dir/ref.tsv" 2>&1
  # shellcheck disable=SC2086
  proc_snapshot $pids > "$dir/procs.before"

  seq=$(kmsgdump -l)
  echo "daemon_line_trigger $(daemon_lines)" >> "$dir/params"
  timeout 60 hog -q -x -g "$cg" -m $((HEADROOM + 4)) -s 1 -n trigger
  trigger_rc=$?
  kmsgdump -a "$seq" -w 'Killed process' -t 20 > "$dir/kmsg.txt"
  kmsg_rc=$?
  if daemon_wait_for "\"event\":\"kernel_oom_kill\",\"constraint\":\"CONSTRAINT_MEMCG\",\"domain\":\"/$name\"" 10 "$line_start"; then
    echo "daemon_logged_kill 1" >> "$dir/params"
  else
    echo "daemon_logged_kill 0" >> "$dir/params"
  fi
  {
    echo "trigger_rc $trigger_rc"
    echo "kmsg_rc $kmsg_rc"
    echo "daemon_alive_after $(daemon_alive && echo 1 || echo 0)"
  } >> "$dir/params"
  cp "$cg/memory.events" "$dir/memory.events"
  cg_remove "$cg"
  echo "daemon_line_end $(daemon_lines)" >> "$dir/params"
  echo "seconds $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')" >> "$dir/params"
  log "trial $i ($kase, limit ${limit}M, $ntasks tasks) recorded"
  i=$((i + 1))
done
echo "$TRIALS" > "$OUT/trials.done"
daemon_stop
log "daemon-prediction-memcg: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
