#!/bin/sh
# vmrun-args: -m 512 -t 360
# prediction-host: does `oomguard top --domain host` name the task the kernel's global OOM killer kills?
#
# Each trial (no swap, 512 MiB VM): 3-5 sleeping hogs of distinct sizes and oom_score_adj values
# take all but RESERVE MiB of MemAvailable; oomguard's prediction (rank 1 of `top --json --all
# --domain host`); then a trigger hog asks for more than is left and the kernel's global OOM report
# is read from /dev/kmsg. The guest only records; prediction-host.check.py compares on the host.
# Args: [TRIALS] (default 10).
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
total_kb=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
unit=$((total_kb / 4 / 1000))
log "prediction-host: $TRIALS trials, MemTotal ${total_kb} kB, totalpages/1000 = $unit"

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
  gen_tasks "$((100 + i))" "$ntasks" "$budget" 24 "$unit" "$TRIGGER_MAX" "$MARGIN" "$kase" \
    > "$dir/tasks" || fail "trial $i: no parameters"
  {
    echo "trial $i"
    echo "case $kase"
    echo "domain host"
    echo "mem_available_mib $avail"
  } > "$dir/params"
  pids=""
  while read -r _ tname size adj; do
    pid=$(hog -D -q -m "$size" -a "$adj" -n "$tname") || fail "trial $i: hog $tname did not start"
    echo "hog $tname $size $adj $pid" >> "$dir/params"
    pids="$pids $pid"
  done < "$dir/tasks"

  oomguard top --json --all --domain host > "$dir/top.json" 2> "$dir/top.err"
  echo $? > "$dir/top.rc"
  refscore host > "$dir/ref.tsv" 2>&1
  # shellcheck disable=SC2086
  proc_snapshot $pids > "$dir/procs.before"
  left=$(mem_available_mib)
  echo "mem_available_before_trigger_mib $left" >> "$dir/params"

  seq=$(kmsgdump -l)
  before=$(vmstat oom_kill)
  # Ask for more than is left, whatever it is, so that the OOM surely comes.
  timeout 60 hog -q -x -m $((left + 24)) -s 1 -n trigger
  trigger_rc=$?
  kmsgdump -a "$seq" -w 'Killed process' -t 20 > "$dir/kmsg.txt"
  kmsg_rc=$?
  {
    echo "trigger_rc $trigger_rc"
    echo "kmsg_rc $kmsg_rc"
    echo "oom_kill_before $before"
    echo "oom_kill_after $(vmstat oom_kill)"
  } >> "$dir/params"

  # shellcheck disable=SC2086
  kill_pids $pids
  echo "seconds $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')" >> "$dir/params"
  log "trial $i ($kase, $ntasks tasks, ${budget} MiB) recorded"
  i=$((i + 1))
done
echo "$TRIALS" > "$OUT/trials.done"
log "prediction-host: done"
