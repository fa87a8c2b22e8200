# guestlib.sh — shell helpers for e2e scenarios, sourced inside the VM (busybox sh).
# vmrun.sh copies it to /vmrun/files/ when run-suite.sh passes `-f guest/guestlib.sh`.
# shellcheck shell=sh

CGROOT=/sys/fs/cgroup
# shellcheck disable=SC2034  # used by the scenarios that source this file
OUT=${VMRUN_SHARE:-/tmp}

log() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }
fail() { log "SCENARIO SETUP FAILED: $*"; exit 1; }

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# cg_new NAME MAX_MiB: a fresh cgroup with memory.max and no swap; prints its directory.
cg_new() {
  _d="$CGROOT/$1"
  [ -d "$_d" ] && cg_remove "$_d"
  mkdir "$_d" || fail "mkdir $_d"
  echo "${2}M" > "$_d/memory.max" || fail "memory.max of $_d"
  echo 0 > "$_d/memory.swap.max" || fail "memory.swap.max of $_d"
  echo "$_d"
}

# cg_remove DIR: kill everything in the subtree, wait until it is empty, remove it.
cg_remove() {
  [ -d "$1" ] || return 0
  echo 1 > "$1/cgroup.kill"
  _n=0
  while grep -q 'populated 1' "$1/cgroup.events"; do
    _n=$((_n + 1))
    [ "$_n" -lt 200 ] || fail "$1 still populated after cgroup.kill"
    sleep 0.05
  done
  # Children first (depth-first), then the cgroup itself.
  for _c in $(find "$1" -mindepth 1 -type d | sort -r); do rmdir "$_c" 2>/dev/null || true; done
  _n=0
  until rmdir "$1" 2>/dev/null; do
    _n=$((_n + 1))
    [ "$_n" -lt 100 ] || fail "cannot rmdir $1"
    sleep 0.05
  done
}

# cg_event DIR KEY: a counter from DIR/memory.events.
cg_event() { awk -v k="$2" '$1 == k { print $2 }' "$1/memory.events"; }

# vmstat KEY: a counter from /proc/vmstat.
vmstat() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }

# kill_pids PID...: SIGKILL and wait until they are gone (they may be reparented to init).
kill_pids() {
  for _p in "$@"; do kill -9 "$_p" 2>/dev/null || true; done
  for _p in "$@"; do
    _n=0
    while [ -e "/proc/$_p/status" ] && ! grep -q '^State:.*Z' "/proc/$_p/status" 2>/dev/null; do
      _n=$((_n + 1))
      [ "$_n" -lt 200 ] || fail "pid $_p survives SIGKILL"
      sleep 0.05
    done
  done
}

# proc_snapshot PID...: one line per pid with what the kernel shows for it now.
proc_snapshot() {
  for _p in "$@"; do
    [ -r "/proc/$_p/status" ] || { echo "$_p gone"; continue; }
    awk -v pid="$_p" -v score="$(cat "/proc/$_p/oom_score" 2>/dev/null)" \
        -v adj="$(cat "/proc/$_p/oom_score_adj" 2>/dev/null)" '
      /^(Name|RssAnon|RssFile|RssShmem|VmSwap|VmPTE):/ { v[$1] = $2 }
      END { printf "%s comm=%s oom_score=%s adj=%s RssAnon=%s RssFile=%s RssShmem=%s VmSwap=%s VmPTE=%s\n",
              pid, v["Name:"], score, adj, v["RssAnon:"], v["RssFile:"], v["RssShmem:"], v["VmSwap:"], v["VmPTE:"] }
    ' "/proc/$_p/status"
  done
}

# all_oom_scores: "pid oom_score" for every process that has one.
all_oom_scores() {
  for _f in /proc/[0-9]*/oom_score; do
    _p=${_f#/proc/}; _p=${_p%/oom_score}
    _s=$(cat "$_f" 2>/dev/null) && echo "$_p $_s"
  done
}

# gen_tasks SEED N BUDGET_MiB MIN_MiB UNIT_PAGES TRIGGER_MAX_MiB MARGIN_PAGES CASE
# Draws N sleeping tasks ("task NAME SIZE_MiB ADJ" lines) whose sizes add up to about BUDGET_MiB,
# such that the kernel's choice is well defined: by the estimate size*256 + adj*UNIT_PAGES
# (UNIT_PAGES = totalpages/1000), the best killable task beats the second by MARGIN_PAGES and beats
# a trigger of TRIGGER_MAX_MiB plus the budget the sizes leave unused (rounded down) by MARGIN_PAGES. CASE picks the shape:
#   size       all adj 0: the biggest task wins
#   minus1000  the biggest task has adj -1000 (unkillable), another one wins
#   positive   a task that is not the biggest wins thanks to a positive adj
#   negative   the biggest task has a negative adj (> -1000) and loses
#   mixed      at least one negative and one positive adj
# The estimate only shapes the test; the assertion compares oomguard with the kernel.
gen_tasks() {
  awk -v seed="$1" -v n="$2" -v budget="$3" -v min="$4" -v unit="$5" -v trig="$6" \
      -v margin="$7" -v kase="$8" '
  BEGIN {
    srand(seed)
    nadj = split("-1000 -500 -300 -200 -100 -50 -20 0 0 0 20 50 100 200 300 500 1000", adjs, " ")
    for (attempt = 0; attempt < 20000; attempt++) {
      wsum = 0
      for (k = 1; k <= n; k++) { w[k] = 1 + rand() * 5; wsum += w[k] }
      used = 0; big = 1
      for (k = 1; k <= n; k++) {
        size[k] = int(budget * w[k] / wsum); if (size[k] < min) size[k] = min
        used += size[k]
        if (size[k] > size[big]) big = k
      }
      if (used > budget) continue
      for (k = 1; k <= n; k++) adj[k] = (kase == "size") ? 0 : adjs[1 + int(rand() * nadj)]
      if (kase == "minus1000") adj[big] = -1000
      # sizes must be distinct so that "the biggest" is meaningful
      dup = 0
      for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (size[a] == size[b]) dup = 1
      if (dup) continue
      best = 0; second = 0; bestv = 0; secondv = 0; neg = 0; pos = 0
      for (k = 1; k <= n; k++) {
        if (adj[k] < 0) neg = 1
        if (adj[k] > 0) pos = 1
        if (adj[k] == -1000) continue
        v = size[k] * 256 + adj[k] * unit
        if (!best || v > bestv) { second = best; secondv = bestv; best = k; bestv = v }
        else if (!second || v > secondv) { second = k; secondv = v }
      }
      if (!best) continue
      if (second && bestv - secondv < margin) continue
      # The trigger can hold its TRIGGER_MAX and what the rounding down of the sizes left over.
      if (bestv < (trig + budget - used) * 256 + margin) continue
      if (kase == "positive" && !(best != big && adj[best] > 0)) continue
      if (kase == "negative" && !(adj[big] < 0 && adj[big] > -1000 && best != big)) continue
      if (kase == "mixed" && !(neg && pos)) continue
      for (k = 1; k <= n; k++) printf "task t%d %d %d\n", k, size[k], adj[k]
      exit 0
    }
    print "gen_tasks: no parameters found" > "/dev/stderr"
    exit 1
  }'
}

# mem_available_mib: MemAvailable plus the pages parked on the per-CPU free lists, in MiB.
# Since 6.7 the per-CPU lists auto-tune and can hold tens of MiB just freed by a dead process; they
# are not in MemFree/MemAvailable but any allocation takes them first.
mem_available_mib() {
  _pcp=$(awk '$1 == "count:" { n += $2 } END { print n + 0 }' /proc/zoneinfo)
  echo $(( ($(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo) + _pcp * 4) / 1024 ))
}

# settle_memory: wait (at most ~10 s) until MemAvailable stops moving, after processes died.
settle_memory() {
  _prev=$(mem_available_mib)
  _n=0
  while [ "$_n" -lt 50 ]; do
    sleep 0.2
    _cur=$(mem_available_mib)
    [ $((_cur - _prev)) -le 1 ] && [ $((_prev - _cur)) -le 1 ] && return 0
    _prev=$_cur
    _n=$((_n + 1))
  done
}

# --- the operator's hooks (hooks, warn) -----------------------------------------------------------------
# kill_hooks: writes the kill hooks to /tmp/hooks (guest tmpfs; what they record goes to /tmp/hooks/out,
# named by the victim's pid): pre-hang.sh records its start (uptime), the victim's state (alive | gone)
# and its stdin, then sleeps an hour; pre-fail.sh records its start and exits 3; post.sh records when it
# ran, the victim's state and its stdin.
kill_hooks() {
  mkdir -p /tmp/hooks || fail "no hook dir"
cat > /tmp/hooks/pre-hang.sh <<'EOF'
#!/bin/sh
d=/tmp/hooks/out
state=gone
[ -r "/proc/$OOMGUARD_PID/status" ] && ! grep -q '^State:.*Z' "/proc/$OOMGUARD_PID/status" 2>/dev/null && state=alive
echo "pre_start $(cut -d' ' -f1 /proc/uptime) pid $OOMGUARD_PID comm $OOMGUARD_COMM cgroup $OOMGUARD_CGROUP victim $state" > "$d/pre-$OOMGUARD_PID.txt"
cat > "$d/pre-$OOMGUARD_PID.json"
sleep 3600
EOF
cat > /tmp/hooks/pre-fail.sh <<'EOF'
#!/bin/sh
echo "pre_start $(cut -d' ' -f1 /proc/uptime) pid $OOMGUARD_PID" > "/tmp/hooks/out/pre-$OOMGUARD_PID.txt"
exit 3
EOF
cat > /tmp/hooks/post.sh <<'EOF'
#!/bin/sh
state=gone
[ -r "/proc/$OOMGUARD_PID/status" ] && ! grep -q '^State:.*Z' "/proc/$OOMGUARD_PID/status" 2>/dev/null && state=alive
echo "post $(cut -d' ' -f1 /proc/uptime) pid $OOMGUARD_PID victim $state" > "/tmp/hooks/out/post-$OOMGUARD_PID.txt"
cat > "/tmp/hooks/out/post-$OOMGUARD_PID.json"
EOF
chmod 0755 /tmp/hooks/*.sh
mkdir -p /tmp/hooks/out
}

# post_kill_record PID: waits (at most 5 s) for the post_kill hook's record of victim PID; 1 if none came.
post_kill_record() {
  _n=0
  while [ ! -s "/tmp/hooks/out/post-$1.txt" ]; do
    [ "$_n" -lt 100 ] || return 1
    sleep 0.05
    _n=$((_n + 1))
  done
}

# hang_hook_sleepers: how many pre-hang.sh `sleep 3600` are still running (none should outlive its hook's
# timeout: it goes with the hook's process group).
hang_hook_sleepers() {
  _left=0
  for _p in /proc/[0-9]*; do
    [ "$(tr '\0' ' ' < "$_p/cmdline" 2>/dev/null)" = "sleep 3600 " ] && _left=$((_left + 1))
  done
  echo "$_left"
}

# --- oomguard run (the daemon) in the guest -----------------------------------------------------
# daemon_start JSON: writes JSON as the config, starts `oomguard run --config` in the background with
# its JSON log in $OUT/daemon.jsonl and its summary in $OUT/daemon.err; sets DAEMON_PID and waits
# (at most 30 s) for the "started" line.
DAEMON_LOG=$OUT/daemon.jsonl
daemon_start() {
  printf '%s\n' "$1" > "$OUT/daemon-config.json"
  # DAEMON_PREFIX: a command that execs the rest (same pid), e.g. into a private cgroup namespace.
  # shellcheck disable=SC2086
  ${DAEMON_PREFIX:-} oomguard run --config "$OUT/daemon-config.json" > "$DAEMON_LOG" 2> "$OUT/daemon.err" &
  DAEMON_PID=$!
  echo "$DAEMON_PID" > "$OUT/daemon.pid"
  daemon_wait_for '"event":"started"' 30 0 || fail "the daemon did not start: $(cat "$OUT/daemon.err")"
}

# daemon_lines: how many lines the daemon has logged so far.
daemon_lines() { wc -l < "$DAEMON_LOG" | tr -d ' '; }

# daemon_wait_for TEXT SECONDS [AFTER_LINE]: wait until a line after line AFTER_LINE (default 0)
# contains TEXT (a fixed string). Returns 1 on timeout.
daemon_wait_for() {
  _deadline=$(awk -v n="$(uptime_s)" -v t="$2" 'BEGIN { printf "%.2f", n + t }')
  while ! tail -n +"$((${3:-0} + 1))" "$DAEMON_LOG" | grep -qF -- "$1"; do
    awk -v n="$(uptime_s)" -v d="$_deadline" 'BEGIN { exit !(n < d) }' || return 1
    sleep 0.05
  done
  return 0
}

# daemon_alive: 0 if the daemon process exists and is not a zombie.
daemon_alive() {
  [ -r "/proc/$DAEMON_PID/status" ] && ! grep -q '^State:.*Z' "/proc/$DAEMON_PID/status" 2>/dev/null
}

# daemon_watch_set NAME: SIGUSR1, wait for the new watch_set line, save it as $OUT/NAME.json.
daemon_watch_set() {
  _from=$(daemon_lines)
  kill -USR1 "$DAEMON_PID" || fail "cannot signal the daemon"
  daemon_wait_for '"event":"watch_set"' 10 "$_from" || fail "no watch_set line after SIGUSR1"
  tail -n +"$((_from + 1))" "$DAEMON_LOG" | grep -F '"event":"watch_set"' | head -n 1 > "$OUT/$1.json"
}

# daemon_stop: SIGTERM; records in $OUT/daemon.stop whether it was alive before, how long it took to
# exit (ms, from /proc/uptime: 10 ms resolution) and its exit code ("timeout" after 5 s, then SIGKILL).
daemon_stop() {
  _alive=0
  daemon_alive && _alive=1
  _t0=$(uptime_s)
  kill -TERM "$DAEMON_PID" 2>/dev/null
  _n=0
  while daemon_alive && [ "$_n" -lt 250 ]; do
    sleep 0.02
    _n=$((_n + 1))
  done
  _t1=$(uptime_s)
  # Timed out only when the loop ran out: asking daemon_alive a second time here could see an exiting
  # daemon's /proc entry in between states and call a daemon that had exited in 60 ms stuck.
  if [ "$_n" -ge 250 ] && daemon_alive; then
    # Why it is still there, for the record: each thread's state and where it waits.
    for _t in /proc/"$DAEMON_PID"/task/*; do
      echo "stuck_thread ${_t##*/} $(sed -n 's/^State:[[:space:]]*//p' "$_t/status" 2>/dev/null | tr ' ' _) $(cat "$_t/wchan" 2>/dev/null)"
    done > "$OUT/daemon.stuck" 2>/dev/null
    kill -9 "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
    _rc=timeout
  else
    wait "$DAEMON_PID"
    _rc=$?
  fi
  {
    echo "alive_before_stop $_alive"
    echo "stop_ms $(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%d", (b - a) * 1000 }')"
    echo "exit_code $_rc"
  } > "$OUT/daemon.stop"
}

# cgroup_tree: every cgroup directory as a cgroup path ("/", "/a", "/a/b"), with whether it has
# memory.events, its memory.max ("-" when it has none) and whether it is populated (cgroup.events):
# "PATH EVENTS MAX POPULATED" per line, sorted.
cgroup_tree() {
  find "$CGROOT" -type d | while read -r _d; do
    _p=${_d#"$CGROOT"}
    [ -n "$_p" ] || _p=/
    _e=0
    [ -e "$_d/memory.events" ] && _e=1
    _m=-
    [ -e "$_d/memory.max" ] && _m=$(cat "$_d/memory.max" 2>/dev/null)
    _u=$(sed -n 's/^populated //p' "$_d/cgroup.events" 2>/dev/null)
    echo "$_p $_e $_m ${_u:-0}"
  done | sort
}

# --- acting scenarios (beat-the-kernel, protection-holds, group-kill, panic, earlyoom-side-by-side) ---

# pid_alive PID: 0 if the process exists and is not a zombie.
pid_alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# kmsg_oom_lines SEQ: the kernel's OOM-killer records after kmsg sequence SEQ (none: empty output).
# Exit 0 with the lines (possibly none) when /dev/kmsg was read; non-zero when kmsgdump failed, so that
# a failed read is never mistaken for "no OOM lines".
kmsg_oom_lines() {
  _k=$(kmsgdump -a "$1") || return 1
  printf '%s\n' "$_k" | grep -E 'invoked oom-killer|oom-kill:|Killed process|Memory cgroup out of memory' || true
}

# lo_up: bring the loopback interface up, as on any real host (/init leaves it down), so that the
# daemon's metrics endpoint on 127.0.0.1 is reachable (wget in earlyoom-side-by-side). With lo down, a
# daemon built before commit 768adad took 380-2019 ms to exit on SIGTERM (its metrics server's stop
# helper could not connect; civetweb waited out its 2 s poll), 189-379 ms with lo up.
lo_up() { ip link set lo up 2>/dev/null || log "lo_up: cannot bring lo up"; }
