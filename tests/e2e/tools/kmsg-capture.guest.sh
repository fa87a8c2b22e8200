#!/bin/sh
# kmsg-capture.guest.sh — guest side of capture-kmsg-fixtures.sh: provoke one kernel OOM per variant and
# record the raw /dev/kmsg records around it (kmsgdump -r: one record per read(2), dictionary lines kept)
# into $OUT/<variant>.raw. Not a suite scenario: run by tools/capture-kmsg-fixtures.sh.
# Args: base | cpuset | burst   (cpuset needs the kernel command line numa=fake=2)
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

set_mode=${1:-base}
uname -r > "$OUT/kernel-release"
# Every record since boot, raw: device messages carry dictionary lines (" SUBSYSTEM=..", " DEVICE=..").
[ "$set_mode" = base ] && kmsgdump -r > "$OUT/boot.log"

# capture NAME COMMAND...: run COMMAND (which provokes one OOM), then keep every record after the
# newest one before it, waiting for a "Killed process" record and 1.5 s more (the oom_reaper lines).
capture() {
  _name=$1; shift
  _seq=$(kmsgdump -l)
  "$@"
  echo "$_name: command exited $?"
  kmsgdump -r -a "$_seq" -w 'Killed process' -t 20 -g 1500 > "$OUT/$_name.raw" || fail "$_name: no Killed process record"
}

if [ "$set_mode" = burst ]; then
  # 14 memcg OOMs as fast as they come: the kernel prints the report header (dump_header and the
  # oom-kill: line) under a rate limit of 10 per 5 s, while "Killed process" is always printed.
  cg=$(cg_new fxburst 8)
  _seq=$(kmsgdump -l)
  n=1
  while [ "$n" -le 14 ]; do
    hog -q -g "$cg" -m 32 -n "burst$n"
    n=$((n + 1))
  done
  kmsgdump -r -a "$_seq" -w 'Killed process' -t 20 -g 1500 > "$OUT/burst.raw" || fail "burst: no Killed process record"
  echo "burst: oom_kill $(cg_event "$cg" oom_kill)"
  cg_remove "$cg"
  exit 0
fi

if [ "$set_mode" = cpuset ]; then
  # CONSTRAINT_CPUSET: a cpuset whose mems are only NUMA node 1 (of 2 fake nodes); the hog outgrows it.
  [ -d /sys/devices/system/node/node1 ] || fail "no NUMA node 1 (boot with numa=fake=2)"
  mkdir "$CGROOT/fxcpuset" || fail "mkdir fxcpuset"
  echo 0 > "$CGROOT/fxcpuset/cpuset.cpus" || fail "cpuset.cpus"
  echo 1 > "$CGROOT/fxcpuset/cpuset.mems" || fail "cpuset.mems"
  grep -H . /sys/devices/system/node/node*/meminfo | grep MemTotal
  capture cpuset hog -q -g "$CGROOT/fxcpuset" -m 600 -s 8 -n nodehog
  cg_remove "$CGROOT/fxcpuset"
  exit 0
fi

# memcg: memory.max 48M, swap.max 0, a 100 MiB hog.
cg=$(cg_new fxmemcg 48)
capture memcg hog -q -g "$cg" -m 100 -n hog
cg_remove "$cg"

# group: memory.oom.group=1 and 3 tasks: two sleepers (one with a comm holding spaces and ')') and the hog.
cg=$(cg_new fxgroup 64)
echo 1 > "$cg/memory.oom.group" || fail "memory.oom.group"
s1=$(hog -D -q -g "$cg" -m 4 -n 'sl) eep (x') || fail "sleeper 1"
s2=$(hog -D -q -g "$cg" -m 12 -a 100 -n holder) || fail "sleeper 2"
echo "group: sleepers $s1 $s2"
capture group hog -q -g "$cg" -m 100 -n hog
cg_remove "$cg"

# parent: the limit on /fxpar, the victim in /fxpar/kid (oom_memcg != task_memcg).
cg=$(cg_new fxpar 48)
echo +memory > "$cg/cgroup.subtree_control" || fail "subtree_control"
mkdir "$cg/kid" || fail "mkdir kid"
capture parent hog -q -g "$cg/kid" -m 100 -n kidhog
cg_remove "$cg"

# global: no swap, no limits; a hog that grows past the whole VM (in steps: one huge mmap would be
# refused by the overcommit heuristic).
[ "$(awk '$1 == "SwapTotal:" { print $2 }' /proc/meminfo)" = 0 ] || fail "global needs no swap"
settle_memory
capture global hog -q -m 900 -s 8 -n 'big hog'

# allocating: vm.oom_kill_allocating_task=1; a sleeper bigger than the grower will ever be exists,
# but the allocating task (the grower) dies.
settle_memory
big=$(hog -D -q -m 300 -n sleeper) || fail "sleeper"
echo 1 > /proc/sys/vm/oom_kill_allocating_task || fail "oom_kill_allocating_task"
capture allocating hog -q -m 900 -s 8 -n grower
echo 0 > /proc/sys/vm/oom_kill_allocating_task
kill_pids "$big"
echo "allocating: sleeper $big"
