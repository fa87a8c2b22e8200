#!/bin/sh
# vmrun-args: -m 512 -t 240
# fault-tolerance: does `oomguard run` keep an exact watch set while cgroups come and go fast?
#
# The daemon (refresh every 0.5 s) watches while cgchurn creates and destroys nested cgroups under
# /churn for CHURN_S seconds: 1-3 levels, siblings whose names extend another's (c4 and c4.5), memory
# enabled for children or not, memory.max written right after mkdir on about half the levels (so PSI
# triggers get armed and disarmed), 6 processes moved in and out. Three watch sets (SIGUSR1) are
# taken: the baseline before the churn, after it (with LEAVE subtrees left in place), and after those
# are removed too. Each time the guest polls (at most 15 s) until the daemon's watch set equals what the
# real tree implies, then saves it with the tree (cgroup_tree). fault-tolerance.check.py judges:
# cgroups == the tree, inotify_watches and pressure_triggers as the tree implies, open_fds back to the
# baseline, the daemon alive, SIGTERM exit 0 within 1 s.
# Args: [CHURN_S] (default 25) [SEED] (default 7) [LEAVE] (default 5) [CONFIG_JSON] (default: the
# default rules with a 0.5 s refresh; tests/e2e/churn-soak.sh --config varies it to find what provokes
# a kernel bug).
# shellcheck source=SCRIPTDIR/../guest/guestlib.sh disable=SC1091
. "$VMRUN_FILES/guestlib.sh"

CHURN_S=${1:-25}
SEED=${2:-7}
LEAVE=${3:-5}
# refresh_interval_s 0.5, tuned, and why: this scenario observes (it never acts) and judges the watch
# set at three points, each settled within 15 s; limits re-read and pending PSI triggers are retried
# at refreshes, and ten refreshes in 5 s let it converge soon after the churn stops. It measures
# bookkeeping under churn, not reaction; the acting scenarios run with the default refresh.
CONFIG=${4:-'{"version": 1, "refresh_interval_s": 0.5}'}
R=$CGROOT/churn

command -v oomguard >/dev/null || fail "oomguard is not in the guest"
command -v cgchurn >/dev/null || fail "cgchurn is not in the guest"
mkdir "$R" || fail "mkdir $R"
echo +memory > "$R/cgroup.subtree_control" || fail "+memory on $R"
mkdir "$R/park" "$R/keep" || fail "park/keep"
echo 64M > "$R/keep/memory.max" || fail "keep memory.max"
hog -D -q -g "$R/keep" -m 2 -n keeper > /dev/null || fail "keeper"
pool=""
n=1
while [ "$n" -le 6 ]; do
  p=$(hog -D -q -g "$R/park" -m 1 -n "pool$n") || fail "pool process $n"
  pool="$pool -p $p"
  n=$((n + 1))
done

# expected_of TREE_FILE: "cgroups inotify_watches triggers_low triggers_high" that the tree implies:
# every cgroup is watched (a directory watch; memory.events and memory.events.local too where they
# exist, not for the root). PSI triggers (the default rule, pressure_only_if_limited) are written only
# into populated cgroups at least 2 s old (a write racing rmdir trips a kernel bug), and stay when the
# cgroup empties: at least every populated limited cgroup, at most every limited one.
expected_of() {
  awk '{ n++; w += 1; if ($1 != "/" && $2 == 1) w += 2
         if ($1 != "/" && $3 != "max" && $3 != "-") { hi++; if ($4 == 1) lo++ } }
       END { printf "%d %d %d %d\n", n, w, lo, hi }' "$1"
}
# matches EXPECTED ACTUAL: "n w lo hi" against "n w t": n and w equal, lo <= t <= hi.
matches() {
  echo "$1 $2" | awk '{ exit !($1 == $5 && $2 == $6 && $3 <= $7 && $7 <= $4) }'
}
# actual_of WATCH_SET_FILE: the same three from a watch_set line, and its cgroups list, one per line,
# into WATCH_SET_FILE.list.
actual_of() {
  sed 's/.*"cgroups":\[\([^]]*\)\].*/\1/' "$1" | tr ',' '\n' | tr -d '"' | sort > "$1.list"
  _w=$(sed 's/.*"inotify_watches":\([0-9]*\).*/\1/' "$1")
  _t=$(sed 's/.*"pressure_triggers":\([0-9]*\).*/\1/' "$1")
  printf '%d %d %d\n' "$(wc -l < "$1.list")" "$_w" "$_t"
}
# settle NAME [FDS]: poll the watch set (SIGUSR1) every 0.5 s, at most 15 s, until the cgroup list,
# the watch count and the trigger count equal what the real tree implies (and open_fds equals FDS when
# given). Saves $OUT/NAME.json, $OUT/NAME.tree and $OUT/NAME.settle (polls, seconds, converged).
settle() {
  _t0=$(uptime_s)
  _polls=0
  _ok=0
  while :; do
    _polls=$((_polls + 1))
    daemon_watch_set "$1"
    cgroup_tree > "$OUT/$1.tree"
    awk '{ print $1 }' "$OUT/$1.tree" > "$OUT/$1.tree.list"
    if matches "$(expected_of "$OUT/$1.tree")" "$(actual_of "$OUT/$1.json")" &&
       cmp -s "$OUT/$1.tree.list" "$OUT/$1.json.list" &&
       { [ -z "$2" ] || grep -q "\"open_fds\":$2," "$OUT/$1.json"; }; then
      _ok=1
      break
    fi
    awk -v a="$_t0" -v b="$(uptime_s)" 'BEGIN { exit !(b - a < 15) }' || break
    sleep 0.5
  done
  printf 'polls %d\nseconds %s\nconverged %d\n' "$_polls" \
    "$(awk -v a="$_t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')" "$_ok" > "$OUT/$1.settle"
  log "$1: $(expected_of "$OUT/$1.tree") expected, $(actual_of "$OUT/$1.json") seen, converged $_ok after $_polls polls"
}

daemon_start "$CONFIG"
sleep 1.2
settle baseline
base_fds=$(sed 's/.*"open_fds":\([0-9]*\).*/\1/' "$OUT/baseline.json")
log "fault-tolerance: daemon $DAEMON_PID, baseline open_fds $base_fds; churning for ${CHURN_S} s (seed $SEED)"

t0=$(uptime_s)
# shellcheck disable=SC2086
cgchurn -r "$R" -t "$CHURN_S" -s "$SEED" -k 12 -l "$LEAVE" $pool -o "$OUT/churn.stats"
echo "churn_rc $?" >> "$OUT/churn.stats"
echo "guest_seconds $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')" >> "$OUT/churn.stats"
echo "daemon_alive_after_churn $(daemon_alive && echo 1 || echo 0)" >> "$OUT/churn.stats"
log "churn: $(tr '\n' ' ' < "$OUT/churn.stats" | sed 's/left_dir [^ ]* //g')"
settle after_churn

# Everything the churn left goes: processes back to park, directories deepest first.
for p in $pool; do
  [ "$p" = -p ] || echo "$p" > "$R/park/cgroup.procs" || fail "park $p"
done
find "$R" -mindepth 1 -type d | sort -r | while read -r d; do
  case "$d" in "$R/park"|"$R/keep") continue ;; esac
  rmdir "$d" || fail "rmdir $d"
done
settle after_cleanup "$base_fds"
daemon_stop
log "fault-tolerance: done ($(tr '\n' ' ' < "$OUT/daemon.stop"))"
