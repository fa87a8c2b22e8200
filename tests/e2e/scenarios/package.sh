#!/bin/sh
# vmrun-args: -m 512 -t 240 --deb libcap2-bin
# package: the Debian package (scripts/package.sh; run-suite.sh copies dist/oomguard_*.deb into the
# guest) unpacked with dpkg-deb -x, and the daemon started as its unit starts it: the ExecStart line of
# the unpacked oomguard.service (same binary, config path and arguments), OOMScoreAdjust=-1000, and the
# unit's CapabilityBoundingSet as the process's only capabilities (capsh drops every other one from the
# bounding set of a root shell that then execs the command, as systemd does for a root service).
#   observe    the packaged config, the unit's capabilities: it starts in mode observe, and SIGTERM
#              stops it with exit 0
#   refused    the packaged recommended config copied over config.json (as docs/service.md says),
#              still the unit's capabilities: exit 2 at once, naming CAP_KILL, nothing started
#   act        the same config with the drop-in act.conf's capability added: a leak in /pk (memory.max
#              128M, swap 0, a 24 MiB innocent beside it) is killed by oomguard before the kernel's
#              OOM killer fires, and SIGTERM stops it with exit 0
#   matrix     before them: the capability each action needs, measured (see below)
# package.check.py judges.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

P=$OUT/params
DEB=$(ls "$VMRUN_FILES"/oomguard_*.deb 2>/dev/null | head -n 1)
[ -n "$DEB" ] || fail "no oomguard_*.deb in the guest (scripts/package.sh makes dist/oomguard_*.deb; run-suite.sh copies it)"
command -v capsh >/dev/null || fail "capsh is not in the guest (vmrun --deb libcap2-bin)"
command -v leakwatch >/dev/null || fail "leakwatch is not in the guest"
lo_up
echo "deb $(basename "$DEB")" > "$P"
dpkg-deb -x "$DEB" / || fail "dpkg-deb -x $DEB /"
for f in /usr/bin/oomguard /usr/lib/oomguard/liboomguard_kube_tls.so /lib/systemd/system/oomguard.service \
         /etc/oomguard/config.json /etc/oomguard/act-recommended.json /usr/share/doc/oomguard/act.conf; do
  echo "unpacked $f $([ -e "$f" ] && echo 1 || echo 0)" >> "$P"
done
UNIT=/lib/systemd/system/oomguard.service
EXEC_START=$(sed -n 's/^ExecStart=//p' "$UNIT")
OBSERVE_CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT")
ACT_CAPS="$OBSERVE_CAPS $(sed -n 's/^CapabilityBoundingSet=//p' /usr/share/doc/oomguard/act.conf)"
{
  echo "exec_start $EXEC_START"
  echo "oom_score_adjust $(sed -n 's/^OOMScoreAdjust=//p' "$UNIT")"
  echo "observe_caps $OBSERVE_CAPS"
  echo "act_caps $ACT_CAPS"
} >> "$P"
cp "$UNIT" "$OUT/oomguard.service"

# drops_except "CAP_A CAP_B": every capability of this (root) shell's bounding set but those, as capsh's
# comma list.
ALL_CAPS=$(capsh --print | sed -n 's/^Bounding set =//p' | tr ',' ' ')
drops_except() {
  keep=$(echo "$1" | tr 'A-Z' 'a-z')
  out=""
  for c in $ALL_CAPS; do
    case " $keep " in *" $c "*) ;; *) out="$out${out:+,}$c" ;; esac
  done
  echo "$out"
}

# The capability each action needs, measured as uid 0 with busybox's own syscalls (kill(2) and
# pidfd_send_signal check the same permission; a write(2) is a write): each action once with the one
# capability it is thought to need dropped, once with every capability, and the ones thought to need
# none with every capability dropped. "matrix ACTION CAP DROPPED_RC ALL_RC" lines; CAP "none" means
# DROPPED_RC ran with no capability at all.
# as_root_without CAPS COMMAND: COMMAND in a root shell whose bounding set lacks CAPS ("" drops none).
as_root_without() {
  if [ -n "$1" ]; then
    capsh --shell=/bin/sh --drop="$1" -- -c "$2" 2>> "$OUT/matrix.err"
  else
    capsh --shell=/bin/sh -- -c "$2" 2>> "$OUT/matrix.err"
  fi
  echo $?
}
matrix() {  # ACTION CAP COMMAND
  if [ "$2" = none ]; then
    dropped=$(as_root_without "$ALL_CAPS_CSV" "$3")
  else
    dropped=$(as_root_without "$(echo "$2" | tr 'A-Z' 'a-z')" "$3")
  fi
  echo "matrix $1 $2 $dropped $(as_root_without "" "$3")" >> "$P"
}
ALL_CAPS_CSV=$(echo "$ALL_CAPS" | tr ' ' ',')
capsh --shell=/bin/sh --uid=1000 -- -c "exec sleep 600" &
OTHER=$!
sleep 0.3
M=$(cg_new pk-matrix 64)
RESTRICT=$(cat /proc/sys/kernel/dmesg_restrict)
echo 1 > /proc/sys/kernel/dmesg_restrict
matrix signal_other_user CAP_KILL "kill -0 $OTHER"
matrix oom_score_adj_other_user CAP_DAC_OVERRIDE "echo 500 > /proc/$OTHER/oom_score_adj"
matrix oom_score_adj_lower CAP_SYS_RESOURCE "echo -100 > /proc/self/oom_score_adj"
matrix psi_trigger_1s_window CAP_SYS_RESOURCE "printf 'some 100000 1000000' > /proc/pressure/memory"
matrix kmsg_read_dmesg_restrict CAP_SYSLOG "head -c 1 /dev/kmsg > /dev/null"
chown 1000 "$M/memory.pressure"  # as in a subtree delegated to a user (user@.service)
matrix psi_trigger_delegated_cgroup CAP_DAC_OVERRIDE "printf 'some 100000 2000000' > $M/memory.pressure"
matrix cgroup_write none "echo max > $M/memory.high && echo 0 > $M/memory.oom.group"
matrix vm_sysctl_write none "echo \$(cat /proc/sys/vm/panic_on_oom) > /proc/sys/vm/panic_on_oom"
matrix cgroup_kill none "echo 1 > $M/cgroup.kill"
echo "$RESTRICT" > /proc/sys/kernel/dmesg_restrict
kill_pids "$OTHER"
cg_remove "$M"

# start_as_unit NAME CAPS: the unit's command with only CAPS, its stdout in NAME.jsonl.
start_as_unit() {
  DAEMON_LOG=$OUT/$1.jsonl
  capsh --shell=/bin/sh --drop="$(drops_except "$2")" -- -c \
    "echo -1000 > /proc/self/oom_score_adj && exec $EXEC_START" > "$DAEMON_LOG" 2> "$OUT/$1.err" &
  DAEMON_PID=$!
}

# stop_phase NAME: SIGTERM, its stop record as NAME.stop.
stop_phase() {
  daemon_stop
  mv "$OUT/daemon.stop" "$OUT/$1.stop"
}

# observe: the package as installed.
start_as_unit observe "$OBSERVE_CAPS"
if daemon_wait_for '"event":"started"' 30 0; then
  echo "observe_started 1" >> "$P"
  echo "observe_cap_eff $(capsh --decode="$(sed -n 's/^CapEff:[[:space:]]*//p' "/proc/$DAEMON_PID/status")" | sed 's/.*=//')" >> "$P"
  echo "observe_oom_score_adj $(cat "/proc/$DAEMON_PID/oom_score_adj")" >> "$P"
else
  echo "observe_started 0" >> "$P"
fi
stop_phase observe

# refused: mode act with observe mode's capabilities.
cp /etc/oomguard/act-recommended.json /etc/oomguard/config.json
start_as_unit refused "$OBSERVE_CAPS"
n=0
while daemon_alive && [ "$n" -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
if daemon_alive; then
  echo "refused_exit still_running" >> "$P"
  kill -9 "$DAEMON_PID"
else
  wait "$DAEMON_PID"
  echo "refused_exit $?" >> "$P"
fi

# act: the drop-in's capability added.
start_as_unit act "$ACT_CAPS"
daemon_wait_for '"event":"started"' 30 0 || fail "the daemon did not start in mode act: $(cat "$OUT/act.err")"
echo "act_cap_eff $(capsh --decode="$(sed -n 's/^CapEff:[[:space:]]*//p' "/proc/$DAEMON_PID/status")" | sed 's/.*=//')" >> "$P"
D=$(cg_new pk 128)
mkdir "$D/innocent" "$D/leak" || fail "mkdir in /pk"
innocent=$(hog -D -q -m 24 -g "$D/innocent" -n innocent) || fail "innocent"
echo "innocent_pid $innocent" >> "$P"
seq=$(kmsgdump -l)
echo "vmstat_oom_kill_before $(vmstat oom_kill)" >> "$P"
sleep 1
echo "daemon_line_leak $(daemon_lines)" >> "$P"
log "package: leaking into /pk/leak"
leakwatch -o "$OUT/leak.txt" -g "$D" -i 10 -t 40 -- hog -q -x -g "$D/leak" -m 192 -s 2 -d 20 -n leaker
echo "leakwatch_rc $?" >> "$P"
daemon_wait_for '"result":"killed"' 5 0 || log "no killed decision logged"
sleep 0.3
{
  echo "innocent_alive_after $(pid_alive "$innocent" && echo 1 || echo 0)"
  echo "vmstat_oom_kill_after $(vmstat oom_kill)"
} >> "$P"
cp "$D/memory.events" "$OUT/pk.memory.events"
kmsg_oom_lines "$seq" > "$OUT/kmsg-oom.txt"
kill_pids "$innocent"
cg_remove "$D"
stop_phase act
echo "done" > "$OUT/run.done"
