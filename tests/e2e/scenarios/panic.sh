#!/bin/sh
# vmrun-args: -m 512 -t 90 --expect-panic
# panic: the double opt-in action "panic" crashes the node through sysrq, after its decision line is out.
#
# Negative first: a host act rule with action "panic" but no policy.allow_panic must be refused by
# `oomguard check-config` (exit 2, naming /policy/allow_panic) and by `oomguard run` (exit 2 before it
# starts anything). Then the same rule with "allow_panic": true passes check-config, and `oomguard run`
# (mode act, default refresh, host act panic when MemAvailable < 50 % of MemTotal) runs with its stdout
# on the console, so that its lines are on the serial log the host keeps. A hog takes two thirds of
# MemAvailable. The kernel must panic (vmrun --expect-panic turns that into exit 0; if the script gets
# past its wait, it exits 1). panic.check.py reads the console log: the decision line (action "panic",
# result "panicking") comes before "sysrq: Trigger a crash" and "Kernel panic", and no exit marker.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
lo_up
P=$OUT/params
RULE='"host": {"act": {"action": "panic", "when": {"mem_available_below": 0.5}}}'
printf '{"version": 1, "mode": "act", %s}\n' "$RULE" > "$OUT/refused.json"
printf '{"version": 1, "mode": "act", %s, "policy": {"allow_panic": true}}\n' "$RULE" \
  > "$OUT/allowed.json"

{
  oomguard check-config "$OUT/refused.json" > "$OUT/check-refused.out" 2>&1
  echo "check_config_refused_rc $?"
  timeout 20 oomguard run --config "$OUT/refused.json" > "$OUT/run-refused.out" 2> "$OUT/run-refused.err"
  echo "run_refused_rc $?"
  oomguard check-config "$OUT/allowed.json" > "$OUT/check-allowed.out" 2>&1
  echo "check_config_allowed_rc $?"
  echo "mem_available_mib $(mem_available_mib)"
  echo "mem_total_kb $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)"
} > "$P"

echo "@@PANIC-SCENARIO daemon-start uptime=$(uptime_s)@@"
oomguard run --config "$OUT/allowed.json" > /dev/console 2> "$OUT/daemon.err" &
DAEMON_PID=$!
echo "daemon_pid $DAEMON_PID" >> "$P"
sleep 3
echo "daemon_alive_before_trigger $(daemon_alive && echo 1 || echo 0)" >> "$P"
A=$(mem_available_mib)
echo "hog_mib $((A * 2 / 3))" >> "$P"
echo "triggered 1" >> "$P"
sync
echo "@@PANIC-SCENARIO trigger uptime=$(uptime_s)@@"
hog -D -q -m $((A * 2 / 3)) -n ballast > /dev/null || log "ballast hog did not start"
sleep 30
# Still here: no panic.
echo "no_panic_after_s 30" >> "$P"
echo "daemon_alive_after_wait $(daemon_alive && echo 1 || echo 0)" >> "$P"
log "panic: the kernel did not panic within 30 s"
exit 1
