#!/bin/sh
# vmrun-args: -m 512 -t 420
# prediction-memcg: does `oomguard top --domain /cg` name the task the kernel's memcg OOM killer kills?
#
# Each trial: a cgroup with memory.max L MiB and memory.swap.max 0; 3-5 sleeping hogs of distinct
# sizes and oom_score_adj values (drawn per trial, see gen_tasks in guestlib.sh); oomguard's
# prediction (rank 1 of `top --json --all --domain /predN`); then a small trigger hog pushes the
# cgroup over its limit and the kernel's OOM report is read from /dev/kmsg. The guest only records;
# prediction-memcg.check.py compares on the host and writes result.json.
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
log "prediction-memcg: $TRIALS trials"
echo "memcg" > "$OUT/kind"

i=1
while [ "$i" -le "$TRIALS" ]; do
  dir="$OUT/trials/$i"
  mkdir -p "$dir"
  limit=$(echo "$LIMITS" | cut -d' ' -f$(( (i - 1) % 4 + 1 )))
  kase=$(echo "$CASES" | cut -d' ' -f$(( (i - 1) % 5 + 1 )))
  ntasks=$((3 + i % 3))
  unit=$((limit * 256 / 1000))
  name="pred$i"
  t0=$(uptime_s)
  gen_tasks "$i" "$ntasks" $((limit - HEADROOM)) 3 "$unit" "$TRIGGER_MAX" "$MARGIN" "$kase" \
    > "$dir/tasks" || fail "trial $i: no parameters"
  cg=$(cg_new "$name" "$limit")
  {
    echo "trial $i"
    echo "case $kase"
    echo "domain /$name"
    echo "limit_mib $limit"
  } > "$dir/params"
  pids=""
  while read -r _ tname size adj; do
    pid=$(hog -D -q -g "$cg" -m "$size" -a "$adj" -n "$tname") || fail "trial $i: hog $tname did not start"
    echo "hog $tname $size $adj $pid" >> "$dir/params"
    pids="$pids $pid"
  done < "$dir/tasks"

  # The prediction, with a naive reference and what the kernel shows, all before the trigger.
  oomguard top --json --all --domain "/$name" > "$dir/top.json" 2> "$dir/top.err"
  echo $? > "$dir/top.rc"
  refscore "$cg" > "$dir/ref.tsv" 2>&1
  # shellcheck disable=SC2086
  proc_snapshot $pids > "$dir/procs.before"

  seq=$(kmsgdump -l)
  before=$(cg_event "$cg" oom_kill)
  trigger_mib=$((HEADROOM + 4))
  timeout 60 hog -q -x -g "$cg" -m "$trigger_mib" -s 1 -n trigger
  trigger_rc=$?
  kmsgdump -a "$seq" -w 'Killed process' -t 20 > "$dir/kmsg.txt"
  kmsg_rc=$?
  {
    echo "trigger_rc $trigger_rc"
    echo "kmsg_rc $kmsg_rc"
    echo "oom_kill_before $before"
    echo "oom_kill_after $(cg_event "$cg" oom_kill)"
  } >> "$dir/params"
  cp "$cg/memory.events" "$dir/memory.events"

  cg_remove "$cg"
  echo "seconds $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')" >> "$dir/params"
  log "trial $i ($kase, limit ${limit}M, $ntasks tasks) recorded"
  i=$((i + 1))
done
echo "$TRIALS" > "$OUT/trials.done"
log "prediction-memcg: done"
