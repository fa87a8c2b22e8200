#!/bin/sh
# vmrun-args: -m 512 -t 180
# top-consistency: `oomguard top --json --all --kernel-scores` against what the kernel shows, without any OOM.
#
# Sets up hogs in the root cgroup and in /tc/a and /tc/b (memory.max on /tc, memory.oom.group=1 on
# /tc/b), with various oom_score_adj values (-1000 included), then records `top` for the domains
# host and /tc, every /proc/PID/oom_score just before and just after, the hogs' /proc status,
# the cgroups' members and limits. top-consistency.check.py asserts on the host.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
mkdir -p "$OUT/raw" || fail "no share dir"
raw=$OUT/raw

tc=$CGROOT/tc
mkdir "$tc" || fail "mkdir $tc"
echo 160M > "$tc/memory.max" || fail "memory.max"
echo 0 > "$tc/memory.swap.max" || fail "memory.swap.max"
echo "+memory +pids" > "$tc/cgroup.subtree_control" || fail "subtree_control of /tc"
mkdir "$tc/a" "$tc/b" || fail "mkdir /tc/a /tc/b"
echo 1 > "$tc/b/memory.oom.group" || fail "memory.oom.group"

: > "$raw/hogs"
start() {  # NAME CGROUP_DIR_OR_- MiB ADJ
  if [ "$2" = - ]; then _pid=$(hog -D -q -m "$3" -a "$4" -n "$1"); else _pid=$(hog -D -q -g "$2" -m "$3" -a "$4" -n "$1"); fi \
    || fail "hog $1 did not start"
  echo "$1 $_pid $3 $4 ${2#"$CGROOT"}" >> "$raw/hogs"
}
start r1 - 40 0
start r2 - 24 300
start r3 - 56 -1000
start r4 - 8 -500
start a1 "$tc/a" 30 0
start a2 "$tc/a" 12 700
start b1 "$tc/b" 20 -200
start b2 "$tc/b" 36 100
start b3 "$tc/b" 4 -1000

awk '$1 == "MemTotal:" || $1 == "SwapTotal:" { print $1, $2 }' /proc/meminfo > "$raw/meminfo"
for d in "$tc" "$tc/a" "$tc/b"; do
  echo "${d#"$CGROOT"} max=$(cat "$d/memory.max") swap_max=$(cat "$d/memory.swap.max") oom_group=$(cat "$d/memory.oom.group") procs=$(tr '\n' ' ' < "$d/cgroup.procs")"
done > "$raw/cgroups"

# shellcheck disable=SC2046
proc_snapshot $(awk '{ print $2 }' "$raw/hogs") > "$raw/procs"
all_oom_scores > "$raw/scores.before"
oomguard top --json --all --kernel-scores --domain host > "$raw/top-host.json" 2> "$raw/top-host.err"
echo $? > "$raw/top-host.rc"
all_oom_scores > "$raw/scores.after"
oomguard top --json --all --kernel-scores --domain /tc > "$raw/top-tc.json" 2> "$raw/top-tc.err"
echo $? > "$raw/top-tc.rc"
# shellcheck disable=SC2046
proc_snapshot $(awk '{ print $2 }' "$raw/hogs") > "$raw/procs.after"

cg_remove "$tc"
# shellcheck disable=SC2046
kill_pids $(awk '$5 == "" { print $2 }' "$raw/hogs")
echo "complete" > "$raw/done"
log "top-consistency: recorded"
