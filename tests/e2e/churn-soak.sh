#!/usr/bin/env bash
# churn-soak.sh — the fault-tolerance churn, many times, on one or more Debian kernels: does the guest
# kernel survive cgroup churn with oomguard watching? (hardening issue: a list_lru NULL dereference in
# mkdir's dput was seen with the daemon running; see tests/e2e/README.md "Kernel bugs").
#
#   tests/e2e/churn-soak.sh [--runs N] [--seconds S] [--kernel META]... [--out DIR] [--config JSON]
#                           [--cmdline 'KERNEL ARGS']
#
# Each run boots a fresh VM (vmrun.sh) with the fault-tolerance scenario, a different seed per run, and
# records: the guest's exit, the scenario check's verdict, and any "BUG:", "Oops" or "Kernel panic" line
# on the console (an oops is never retried: it is the result). Prints one line per run, then per kernel
# "soak <kernel>: R runs, O oopses, F failed checks", and exits 1 if any run oopsed or failed.
# Defaults: 10 runs of 25 s churn on linux-image-6.12-amd64.
# The default config is fault-tolerance's own (refresh 0.5 s: see that scenario for why).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=10 seconds=25 out="$repo/build/e2e-soak" kernels=() config='{"version": 1, "refresh_interval_s": 0.5}' extra=()
oomguard="${OOMGUARD_BIN:-$repo/build/bin/oomguard}"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --kernel) kernels+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;          # the daemon's config (default: the scenario's)
    --cmdline) extra=(-a "$2"); shift 2 ;;   # extra guest kernel command line (e.g. loglevel=5)
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "churn-soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "${#kernels[@]}" -gt 0 ] || kernels=(linux-image-6.12-amd64)
mkdir -p "$out/bin"
helpers=()
for src in "$here"/guest/*.c; do
  bin="$out/bin/$(basename "$src" .c)"
  [ -x "$bin" ] && [ "$bin" -nt "$src" ] || gcc -std=c11 -O2 -Wall -Wextra -Werror -static -o "$bin" "$src"
  helpers+=(-b "$bin")
done
script="$here/scenarios/fault-tolerance.sh"
read -r -a vm_args <<< "$(sed -n 's/^# vmrun-args:[[:space:]]*//p' "$script" | head -n1)"
status=0
summary=()
for kernel in "${kernels[@]}"; do
  VMRUN_KERNEL=$kernel "$here/vmrun.sh" --prepare >/dev/null
  oopses=0 failed=0 release=""
  for run in $(seq 1 "$runs"); do
    share="$out/$kernel/run-$run"
    rm -rf "$share"; mkdir -p "$share"
    vm_rc=0
    VMRUN_KERNEL=$kernel "$here/vmrun.sh" --no-retry "${vm_args[@]}" -d "$share" -l "$share/console.log" \
      -f "$here/guest/guestlib.sh" "${helpers[@]}" -b "$oomguard" "${extra[@]}" "$script" "$seconds" "$run" 5 "$config" > /dev/null 2>"$share/vmrun.err" || vm_rc=$?
    release=$(grep -a -m1 -oE 'vmrun: exit .*' "$share/vmrun.err" || true)
    oops=$(grep -a -m1 -E 'BUG:|Oops|Kernel panic' "$share/console.log" || true)
    check_rc=0
    python3 -B "$here/scenarios/fault-tolerance.check.py" "$share" > "$share/check.out" 2>&1 || check_rc=$?
    # The verdict is in result.json ("passed"); the check's exit code only says it ran.
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("passed") else 1)' \
      "$share/result.json" 2>/dev/null || check_rc=${check_rc/#0/1}
    mkdirs=$(sed -n 's/^mkdir //p' "$share/churn.stats" 2>/dev/null || echo '?')
    if [ -n "$oops" ]; then
      oopses=$((oopses + 1))
      grep -a -A 30 -m1 -E 'BUG:|Oops' "$share/console.log" > "$share/oops.txt" || true
    fi
    [ "$check_rc" = 0 ] && [ "$vm_rc" = 0 ] || failed=$((failed + 1))
    printf 'soak %s run %d: vm_rc %s check %s mkdir %s %s\n' "$kernel" "$run" "$vm_rc" \
      "$([ "$check_rc" = 0 ] && echo passed || echo FAILED)" "$mkdirs" \
      "${oops:+OOPS: $oops}"
  done
  line="soak $kernel ($(ls "${OOMGUARD_LAB_CACHE:-/var/cache/oomguard-lab}"/kernel/ 2>/dev/null | grep -c . ) kernels cached): $runs runs, $oopses oopses, $failed failed"
  summary+=("$line")
  [ "$oopses" = 0 ] && [ "$failed" = 0 ] || status=1
done
printf '%s\n' "${summary[@]}"
exit "$status"
