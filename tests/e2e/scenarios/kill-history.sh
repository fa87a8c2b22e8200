#!/bin/sh
# vmrun-args: -m 512 -t 240
# kill-history: every kernel OOM kill in a pod, laid out as the kubelet lays it out (systemd driver,
# containerd), journaled exactly once in the kill history, across a daemon killed with SIGKILL.
#
# The pod (burstable, uid $UID_DASHED) has two containers, each a cri-containerd-<id>.scope with its own
# memory.max (the kubelet's limits.memory): "app" (a 4 MiB main process whose child leaks) and
# "sidecar". The daemon runs with the defaults a user gets ({"version": 1}: history in
# /var/lib/oomguard). Three kernel OOM kills:
#   1. app's leaking child, daemon running (the main process lives);
#   2. sidecar's leaker, after the daemon was killed with SIGKILL (it journals it from the ring buffer
#      when it starts again);
#   3. app's leaking child again, daemon running again.
# Then the daemon is stopped and `oomguard history` (table and --json) is run with no daemon.
# kill-history.check.py judges on the host.
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
UID_DASHED=1b4e28ba-2fa1-11d2-883f-0016d3cca427
UID_UNDER=$(echo "$UID_DASHED" | tr '-' '_')
APP_ID=4f3a9c0d2e1b8a7f6e5d4c3b2a190817263544536271809a8b7c6d5e4f3a2b1c
SIDECAR_ID=9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d
KUBEPODS="$CGROOT/kubepods.slice"
BURSTABLE="$KUBEPODS/kubepods-burstable.slice"
POD="$BURSTABLE/kubepods-burstable-pod$UID_UNDER.slice"
APP="$POD/cri-containerd-$APP_ID.scope"
SIDECAR="$POD/cri-containerd-$SIDECAR_ID.scope"

for d in "$KUBEPODS" "$BURSTABLE" "$POD"; do
  mkdir -p "$d" || fail "mkdir $d"
  echo "+memory" > "$d/cgroup.subtree_control" || fail "memory controller for the children of $d"
done
for d in "$APP" "$SIDECAR"; do
  mkdir -p "$d" || fail "mkdir $d"
  echo 48M > "$d/memory.max" || fail "memory.max of $d"
  echo 0 > "$d/memory.swap.max" || fail "memory.swap.max of $d"
done
{
  echo "pod_uid $UID_DASHED"
  echo "app_cgroup ${APP#"$CGROOT"}"
  echo "sidecar_cgroup ${SIDECAR#"$CGROOT"}"
  echo "app_id $APP_ID"
  echo "sidecar_id $SIDECAR_ID"
} > "$OUT/params"

main=$(hog -D -q -g "$APP" -m 4 -n app-main) || fail "app's main process did not start"
echo "app_main_pid $main" >> "$OUT/params"
sidecar_main=$(hog -D -q -g "$SIDECAR" -m 2 -n sidecar-main) || fail "sidecar's main process did not start"
echo "sidecar_main_pid $sidecar_main" >> "$OUT/params"

# kill N CGROUP NAME: a leaker in CGROUP grows past its limit; waits for the kernel's "Killed process".
oom() {
  _seq=$(kmsgdump -l)
  timeout 60 hog -q -x -g "$2" -m 80 -s 4 -d 20 -n "$3"
  echo "kill$1_hog_rc $?" >> "$OUT/params"
  kmsgdump -a "$_seq" -w 'Killed process' -t 20 > "$OUT/kmsg$1.txt" || fail "kill $1: no Killed process record"
}

daemon_start '{"version": 1}'
log "daemon $DAEMON_PID started"
oom 1 "$APP" app-child
daemon_wait_for '"event":"kernel_oom_kill"' 15 0 || fail "kill 1: no kernel_oom_kill line"
# SIGKILL: nothing saved on the way out.
kill -KILL "$DAEMON_PID"
while daemon_alive; do sleep 0.05; done
cp "$DAEMON_LOG" "$OUT/daemon-run1.jsonl"
log "daemon killed with SIGKILL"
oom 2 "$SIDECAR" sidecar-leak
daemon_start '{"version": 1}'
log "daemon $DAEMON_PID started again"
cp "$DAEMON_LOG" "$OUT/daemon-run2-start.jsonl"
oom 3 "$APP" app-child
daemon_wait_for '"event":"kernel_oom_kill"' 15 0 || fail "kill 3: no kernel_oom_kill line"
daemon_stop
echo "app_main_alive $([ -d "/proc/$main" ] && echo 1 || echo 0)" >> "$OUT/params"
oomguard history --json > "$OUT/history.jsonl" 2> "$OUT/history.err"
echo "history_json_rc $?" >> "$OUT/params"
oomguard history > "$OUT/history.txt" 2>> "$OUT/history.err"
echo "history_rc $?" >> "$OUT/params"
ls -la /var/lib/oomguard > "$OUT/state.ls" 2>&1
cat /var/lib/oomguard/kmsg.position > "$OUT/kmsg.position" 2>&1
cg_remove "$POD"
touch "$OUT/run.done"
log "kill-history: done"
