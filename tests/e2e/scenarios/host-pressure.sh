#!/bin/sh
# vmrun-args: -m 512 -t 900
# host-pressure: which host PSI trigger fires before the kernel's OOM killer, on a host without swap?
# oomguard watches (mode observe: it never acts here) with one host trigger at a time; a leaker grows
# to MemAvailable + 64 MiB at three rates and the kernel's OOM killer stops it. For each trigger and
# rate, TRIALS leaks (default 2); the daemon's pressure decisions for the host ("trigger": {"kind":
# "pressure", "cgroup": "/"}) are set against leakwatch's times for the leak's start, MemAvailable
# below 10 % and the leaker's death (the kernel's kill).
#   triggers  some 150 ms / 1 s (the host default before this scenario chose), some 100 ms / 1 s,
#             some 50 ms / 1 s, full 100 ms / 1 s
#   rates     slow 1 MiB / 20 ms, medium 10 MiB / 20 ms, full (one allocation, touched at once)
# The guest has 1 vCPU under TCG, no swap, and no reclaimable page cache (its files live in the
# initramfs). host-pressure.check.py asserts real OOMs seen by a living daemon with the default trigger
# among those tried, and reports for each trigger and rate whether it fired before the OOM and how long.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

TRIALS=${1:-2}
command -v oomguard >/dev/null || fail "oomguard is not in the guest"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
lo_up
swapoff -a 2>/dev/null
SHARE=$OUT
mkdir -p "$SHARE/cells"
uname -r > "$SHARE/kernel"
# What `oomguard run` arms on the host without a config: the default, from its exit summary.
oomguard run --metrics-listen 127.0.0.1:0 > "$SHARE/defaults.jsonl" 2> "$SHARE/defaults.err" &
p=$!
n=0
until grep -q '"event":"started"' "$SHARE/defaults.jsonl" 2>/dev/null || [ "$n" -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
kill -TERM "$p"
wait "$p"

for trigger in some:150000:1000 some:100000:1000 some:50000:1000 full:100000:1000; do
  kind=${trigger%%:*}
  rest=${trigger#*:}
  stall=${rest%%:*}
  window=${rest#*:}
  OUT=$SHARE/cells/$kind-$stall
  DAEMON_LOG=$OUT/daemon.jsonl
  mkdir -p "$OUT"
  daemon_start "{\"version\": 1, \"host\": {\"pressure\": {\"resource\": \"memory\", \"kind\": \"$kind\", \"stall_us\": $stall, \"window_ms\": $window}}}"
  for rate in slow medium full; do
    case $rate in
      slow) steps="-s 1 -d 20" ;;
      medium) steps="-s 10 -d 20" ;;
      full) steps="" ;;
    esac
    t=1
    while [ "$t" -le "$TRIALS" ]; do
      tdir="$OUT/$rate-$t"
      mkdir -p "$tdir"
      settle_memory
      sleep 2   # the PSI window of the last OOM has passed: a fresh trigger, a fresh average
      A=$(mem_available_mib)
      {
        echo "trigger $kind $stall $window"
        echo "rate $rate"
        echo "mem_available_mib $A"
        echo "vmstat_oom_kill_before $(vmstat oom_kill)"
        echo "daemon_line_before $(daemon_lines)"
      } > "$tdir/params"
      # shellcheck disable=SC2086
      leakwatch -o "$tdir/leak.txt" -i 10 -t 60 -a 0.10 -- hog -q -x $steps -m $((A + 64)) -n leaker
      sleep 0.5
      {
        echo "vmstat_oom_kill_after $(vmstat oom_kill)"
        echo "daemon_line_after $(daemon_lines)"
        echo "daemon_alive_after $(daemon_alive && echo 1 || echo 0)"
      } >> "$tdir/params"
      log "$kind $stall $rate $t: $(tr '\n' ' ' < "$tdir/leak.txt" | cut -c1-200)"
      t=$((t + 1))
    done
  done
  daemon_stop
done
OUT=$SHARE
echo 1 > "$SHARE/done"
