#!/bin/sh
# vmrun-args: -m 768 -t 120 -b /usr/bin/unshare
# cgroupns: oomguard in a private cgroup namespace, as a DaemonSet runs on containerd with cgroup v2:
# /proc/<pid>/cgroup then names every cgroup relative to oomguard's own ("/../work/keep"), and oomguard
# must resolve that against where its namespace's root is in the tree it reads, or its rules match
# nothing and its membership check fails.
#
# oomguard runs in /guard, unshared into its own cgroup namespace there (util-linux unshare -C), mode
# act, host act kill-worst when MemAvailable < 10 %, one rule: /work/keep "preference": "omit". A
# sleeping "big" (0.5 A) in /work/keep is the kernel's first choice at the crossing; a leaker in
# /work/leak (2 MiB / 20 ms to A + 64 MiB) grows to about 0.5 A less the threshold and the per-CPU
# lists. Resolved, the rule omits big and oomguard kills the leaker (target cgroup /work/leak);
# unresolved, the rule matches nothing and big would die (or no kill passes the membership check).
# cgroupns.check.py judges.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
/usr/local/bin/unshare --version >/dev/null 2>&1 || fail "util-linux unshare is not in the guest (vmrun -b /usr/bin/unshare; busybox unshare has no -C)"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
lo_up
[ "$(awk '$1 == "SwapTotal:" { print $2 }' /proc/meminfo)" = 0 ] || fail "this scenario needs no swap"
P=$OUT/params
W=$CGROOT/work
mkdir "$W" "$CGROOT/guard" || fail "mkdir"
echo +memory > "$W/cgroup.subtree_control" || fail "+memory on $W"
mkdir "$W/keep" "$W/leak" || fail "mkdir children"
cat > /tmp/in-cgroupns <<WRAP
#!/bin/sh
echo \$\$ > $CGROOT/guard/cgroup.procs || exit 3
exec /usr/local/bin/unshare -C "\$@"
WRAP
chmod +x /tmp/in-cgroupns
settle_memory
A=$(mem_available_mib)
big=$(hog -D -q -g "$W/keep" -m $((A / 2)) -n big) || fail "big"
DAEMON_PREFIX=/tmp/in-cgroupns
daemon_start '{"version": 1, "mode": "act",
  "host": {"act": {"action": "kill-worst", "when": {"mem_available_below": 0.10}}},
  "cgroups": [{"match": "/work/keep", "preference": "omit"}, {"match": "/**"}]}'
DAEMON_PREFIX=
seq=$(kmsgdump -l)
sleep 1
{
  echo "mem_available_mib_start $A"
  echo "big_pid $big"
  echo "big_rss_kb $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$big/status")"
  echo "daemon_in_guard $(grep -qx "$DAEMON_PID" "$CGROOT/guard/cgroup.procs" && echo 1 || echo 0)"
  echo "daemon_cgroupns_differs $([ "$(readlink "/proc/$DAEMON_PID/ns/cgroup")" != "$(readlink /proc/self/ns/cgroup)" ] && echo 1 || echo 0)"
  echo "mem_available_mib_before_leak $(mem_available_mib)"
  echo "pcp_mib_before_leak $(( $(awk '$1 == "count:" { n += $2 } END { print n + 0 }' /proc/zoneinfo) * 4 / 1024 ))"
  echo "mem_total_mib $(( $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) / 1024 ))"
  echo "vmstat_oom_kill_before $(vmstat oom_kill)"
  echo "daemon_line_leak $(daemon_lines)"
} > "$P"
log "cgroupns: leaking beside big ($big, $((A / 2)) MiB, omitted by rule) from MemAvailable $A MiB"
leakwatch -o "$OUT/leak.txt" -a 0.10 -i 10 -t 40 -- hog -q -x -g "$W/leak" -m $((A + 64)) -s 2 -d 20 -n leaker
echo "leakwatch_rc $?" >> "$P"
daemon_wait_for '"result":"killed"' 5 0
sleep 0.5
{
  echo "big_alive_after $(pid_alive "$big" && echo 1 || echo 0)"
  echo "vmstat_oom_kill_after $(vmstat oom_kill)"
} >> "$P"
kmsg_oom_lines "$seq" > "$OUT/kmsg-oom.txt"
echo "done" > "$OUT/run.done"
daemon_stop
log "cgroupns: $(tr '\n' ' ' < "$OUT/leak.txt")"
