#!/bin/sh
# vmrun-args: -m 512 -t 240
# warn: the staged response to a slow leak, with the recommended rule at every default (kill-allocating
# `when: {headroom_below: 0.10}`, refresh 5 s) and a warn stage at headroom 0.30. Does the warning come
# first, with a time-to-OOM forecast within 25 % of the leak's own time to the limit (measured here,
# not by oomguard), and the warn hook with it; later the decision and its pre_kill hook, which writes a
# marker and sleeps past its 300 ms timeout; then the kill no later than that timeout after the decision,
# then the post_kill hook with the victim gone, and never the kernel's OOM killer?
#
# One cgroup, memory.max 320 MiB, swap.max 0: a sleeping 24 MiB neighbour and a leaker growing 1 MiB every
# 250 ms (4 MiB/s): the warn level (224 MiB) about 50 s after the leak starts, the act level (288 MiB)
# about 16 s later. Slow on purpose: the forecast fits a minute of readings and calls a domain growing
# once the last third of them lies wholly above the first (about 20 s into a leak); a fast leak reaches
# the act level before there is a trend to tell. The `hooks` scenario covers fast leaks.
# sampler.txt: "uptime_s memory.current_bytes" every 0.5 s, the leak's measured rate (warn.check.py).
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
lo_up
kill_hooks   # pre-hang.sh: records its start and the victim's state, then sleeps an hour; post.sh
cat > /tmp/hooks/warn.sh <<'HOOK'
#!/bin/sh
echo "warn $(cut -d' ' -f1 /proc/uptime) pid $OOMGUARD_PID" > /tmp/hooks/out/warn.txt
cat > /tmp/hooks/out/warn.json
HOOK
chmod 0755 /tmp/hooks/warn.sh

daemon_start '{"version": 1, "mode": "act",
  "hooks": {"warn": {"argv": ["/tmp/hooks/warn.sh"]},
            "pre_kill": {"argv": ["/tmp/hooks/pre-hang.sh"], "timeout_ms": 300},
            "post_kill": {"argv": ["/tmp/hooks/post.sh"], "timeout_ms": 5000}},
  "cgroups": [
    {"match": "/wn", "act": {"action": "kill-allocating", "when": {"headroom_below": 0.10},
                             "warn": {"headroom_below": 0.30}}},
    {"match": "/**"}]}'
log "warn: daemon $DAEMON_PID started"

cg=$(cg_new wn 320)
line_start=$(daemon_lines)
seq=$(kmsgdump -l)
oom_kills_before=$(vmstat oom_kill)
neighbour=$(hog -D -q -g "$cg" -m 24 -n neighbour) || fail "neighbour did not start"
{
  echo "cgroup /wn"
  echo "memory_max_bytes $(cat "$cg/memory.max")"
  echo "neighbour_pid $neighbour"
  echo "daemon_line_start $line_start"
} > "$OUT/params"
daemon_wait_for '"event":"next_victim","domain":{"kind":"memcg","cgroup":"/wn"' 15 "$line_start" ||
  log "no next_victim for /wn within 15 s"
sleep 1   # the neighbour's last sample at rest is a second old: it is not growing now
# The sampler: builtins and two small reads per sample.
(
  while [ -d "$cg" ]; do
    read -r up _ < /proc/uptime
    read -r cur < "$cg/memory.current" 2>/dev/null || break
    echo "$up $cur"
    sleep 0.5
  done
) > "$OUT/sampler.txt" 2>/dev/null &
sampler=$!
echo "daemon_line_leak $(daemon_lines)" >> "$OUT/params"
log "leaking into /wn (neighbour $neighbour)"
leakwatch -o "$OUT/leak.txt" -g "$cg" -i 50 -t 150 -- hog -q -x -g "$cg" -m 400 -s 1 -d 250 -n leaker
echo "leakwatch_rc $?" >> "$OUT/params"
leaker=$(awk '$1 == "pid" { print $2 }' "$OUT/leak.txt")
daemon_wait_for '"event":"kill"' 10 "$line_start" || log "no kill line within 10 s"
post_kill_record "$leaker" || log "no post_kill record for $leaker within 5 s"
daemon_wait_for '"hook":"post_kill"' 5 "$line_start" || log "no post_kill hook line within 5 s"
kill "$sampler" 2>/dev/null
{
  echo "leaker_pid $leaker"
  echo "neighbour_alive_after $(pid_alive "$neighbour" && echo 1 || echo 0)"
  echo "vmstat_oom_kill_before $oom_kills_before"
  echo "vmstat_oom_kill_after $(vmstat oom_kill)"
  echo "hook_sleepers_left $(hang_hook_sleepers)"
  echo "daemon_line_end $(daemon_lines)"
} >> "$OUT/params"
cp "$cg/memory.events" "$OUT/memory.events"
cp /tmp/hooks/out/* "$OUT/" 2>/dev/null
kmsg_oom_lines "$seq" > "$OUT/kmsg-oom.txt"
cg_remove "$cg"
log "warn: $(tr '\n' ' ' < "$OUT/leak.txt")"
echo "done" > "$OUT/runs.done"
daemon_stop
log "warn: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
