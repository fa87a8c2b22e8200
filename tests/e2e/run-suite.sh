#!/usr/bin/env bash
# run-suite.sh — run every real-kernel e2e scenario (tests/e2e/scenarios/*.sh), each in its own VM,
# gather their results into build/e2e/results.json and print a summary.
#
#   tests/e2e/run-suite.sh [--oomguard PATH] [--out DIR] [SCENARIO...]
#
# PATH defaults to $OOMGUARD_BIN, else build/bin/oomguard (relative to the repository root).
# SCENARIO names pick scenarios (default: all). Exit 0 only if every scenario passed; 1 if any
# failed; 2 if the suite cannot run at all (no oomguard binary, QEMU unusable, no compiler).
# QEMU works on this project's machines: CI must treat "cannot run" as a failure, and it does.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
oomguard="${OOMGUARD_BIN:-$repo/build/bin/oomguard}"
out="$repo/build/e2e"
selected=()
while [ $# -gt 0 ]; do
  case "$1" in
    --oomguard) oomguard="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "run-suite: unknown option $1" >&2; exit 2 ;;
    *) selected+=("$1"); shift ;;
  esac
done

say() { printf 'run-suite: %s\n' "$*" >&2; }
# A results.json from an earlier run must never stand in for this one.
rm -f "$out/results.json"
cannot_run() {
  printf '\nrun-suite: ==================================================================\n' >&2
  printf 'run-suite: E2E SUITE CANNOT RUN: %s\n' "$*" >&2
  printf 'run-suite: ==================================================================\n' >&2
  exit 2
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3 || true)
[ -n "$python" ] || cannot_run "no python3"

case "$oomguard" in /*) ;; *) oomguard="$PWD/$oomguard" ;; esac
[ -x "$oomguard" ] || cannot_run "oomguard binary not found or not executable: $oomguard (build it first, or pass --oomguard PATH / set OOMGUARD_BIN)"
command -v gcc >/dev/null || cannot_run "no gcc to build the guest helpers"
"$here/vmrun.sh" --check || cannot_run "QEMU cannot run here (see above); scripts/install-deps.sh test installs it"

t_suite=$(now)
mkdir -p "$out"

# Guest helpers: static C programs, rebuilt when their source changes.
bindir="$out/guest-bin"
mkdir -p "$bindir"
helpers=()
for src in "$here"/guest/*.c; do
  bin="$bindir/$(basename "$src" .c)"
  if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ]; then
    gcc -std=c11 -O2 -Wall -Wextra -Werror -static -o "$bin.tmp" "$src" || cannot_run "building $src failed"
    mv "$bin.tmp" "$bin"
  fi
  helpers+=(-b "$bin")
done

t_prepare=$(now)
"$here/vmrun.sh" --prepare || cannot_run "preparing the kernel and initramfs failed"
prepare_seconds=$(since "$t_prepare")
say "lab prepared in $prepare_seconds s"

scenarios=()
if [ "${#selected[@]}" -gt 0 ]; then
  for name in "${selected[@]}"; do
    [ -f "$here/scenarios/$name.sh" ] || cannot_run "no scenario $name in $here/scenarios"
    scenarios+=("$here/scenarios/$name.sh")
  done
else
  for s in "$here"/scenarios/*.sh; do scenarios+=("$s"); done
fi
[ "${#scenarios[@]}" -gt 0 ] || cannot_run "no scenarios in $here/scenarios"

records="$out/.records.jsonl"
: > "$records"
# run_scenario SCRIPT: one VM run and its host check; sets vm_rc, check_rc, wall.
run_scenario() {
  local script=$1 name share check t0
  name=$(basename "$script" .sh)
  share="$out/$name"
  rm -rf "$share"
  mkdir -p "$share"
  read -r -a vm_args <<< "$(sed -n 's/^# vmrun-args:[[:space:]]*//p' "$script" | head -n1)"
  say "scenario $name: vmrun ${vm_args[*]}"
  t0=$(now)
  vm_rc=0
  # The Debian package, for the scenario that installs it (scripts/package.sh makes it; OOMGUARD_DEB
  # names another).
  local package_args=()
  if [ "$name" = package ]; then
    local deb="${OOMGUARD_DEB:-$(ls -t "$repo"/dist/oomguard_*.deb 2>/dev/null | head -n 1)}"
    [ -n "$deb" ] && package_args=(-f "$deb")
  fi
  "$here/vmrun.sh" "${vm_args[@]}" -d "$share" -l "$share/console.log" -f "$here/guest/guestlib.sh" \
    -f "$repo/examples/act-recommended.json" "${package_args[@]}" "${helpers[@]}" -b "$oomguard" "$script" || vm_rc=$?
  check="$here/scenarios/$name.check.py"
  check_rc=0
  if [ -f "$check" ]; then
    "$python" -B "$check" "$share" || check_rc=$?
  fi
  wall=$(since "$t0")
}

for script in "${scenarios[@]}"; do
  name=$(basename "$script" .sh)
  share="$out/$name"
  run_scenario "$script"
  # No retry here: vmrun.sh already retries a guest that died before the script started (an
  # infrastructure failure). A guest that died after it started (a kernel oops or panic, a hang) is
  # this scenario's failure, with the kernel's trace as its evidence: a pass on a second try would
  # hide a bug that can take down a node.
  retried=""
  if [ -f "$share/console.log.attempt1" ]; then
    retried="the first boot died before the script started ($(grep -a -m1 -E 'Kernel panic|BUG:|Oops' "$share/console.log.attempt1" 2>/dev/null || echo 'no exit marker')); booted again"
  fi
  if [ "$vm_rc" = 125 ]; then
    grep -a -m1 -A 40 -E 'BUG:|Oops|Kernel panic|WARNING:' "$share/console.log" > "$share/kernel-trace.txt" 2>/dev/null || true
    say "scenario $name: THE GUEST DIED DURING THE SCENARIO; kernel trace in $share/kernel-trace.txt"
    sed 's/^/run-suite:   | /' "$share/kernel-trace.txt" | head -n 30 >&2 || true
  fi
  "$python" - "$share" "$name" "$vm_rc" "$check_rc" "$wall" "$retried" >> "$records" <<'PY'
import json, os, sys
share, name, vm_rc, check_rc, wall, retried = (sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                              float(sys.argv[5]), sys.argv[6])
path = os.path.join(share, "result.json")
result, problem = {}, None
try:
    with open(path) as f:
        result = json.load(f)
except (OSError, ValueError) as e:
    problem = "no result.json (%s)" % e
watchdog_lines = []
if vm_rc == 125:
    trace = ""
    try:
        with open(os.path.join(share, "console.log"), errors="replace") as f:
            trace = next((l.strip() for l in f if any(k in l for k in ("BUG:", "Oops", "Kernel panic"))), "")
    except OSError:
        pass
    if trace:
        problem = "the guest kernel died during the scenario: " + trace
    else:
        # A hang or a guest too slow for its limit: the script's last words, and what the guest's
        # watchdog (vmrun.sh) saw 15 s before the limit, go into the summary that a CI log keeps.
        try:
            with open(os.path.join(share, "console.log"), errors="replace") as f:
                lines = [l.rstrip() for l in f]
        except OSError:
            lines = []
        mark = next((i for i, l in enumerate(lines) if "@@VMRUN-WATCHDOG " in l), None)
        before = [l for l in (lines if mark is None else lines[:mark]) if l.strip()]
        last = " / ".join(l[:160] for l in before[-2:]) or "nothing"
        if mark is None:
            problem = ("the VM gave no exit marker after the script started and the guest watchdog did not "
                       "fire (QEMU failure, or a guest too stuck to run it); last console lines: " + last)
        else:
            problem = ("the VM gave no exit marker: still running 15 s before its limit (%s); last console "
                       "lines before: %s" % (lines[mark].strip("@ "), last))
            groups = []  # a process line with its stack lines
            for l in lines[mark + 1:]:
                if l.startswith("watchdog:   ") and groups:
                    groups[-1].append(l)
                elif l.startswith("watchdog:"):
                    groups.append([l])
            # Busy or blocked processes first: the likely culprits.
            groups.sort(key=lambda g: 0 if (" state D " in g[0] or " state R " in g[0]) else 1)
            watchdog_lines = [l[:200] for g in groups for l in g][:30]
elif vm_rc != 0:
    problem = problem or "the guest script exited %d" % vm_rc
if check_rc != 0:
    problem = problem or "the host check exited %d" % check_rc
passed = bool(result.get("passed")) and problem is None
# What a failure looked like, for a CI log that keeps only the summary.
evidence = list(watchdog_lines)
if not passed:
    for key in ("failures", "errors", "lifecycle_errors"):
        for failure in (result.get(key) or [])[:3]:
            if isinstance(failure, dict):
                failure = {k: v for k, v in failure.items() if k != "details"}
            text = failure if isinstance(failure, str) else json.dumps(failure, sort_keys=True)
            evidence.append("%s: %s" % (key, text[:600]))
    if vm_rc == 125:
        try:
            with open(os.path.join(share, "kernel-trace.txt"), errors="replace") as f:
                evidence.extend(line.rstrip()[:200] for line in f.readlines()[:30])
        except OSError:
            pass
        if not evidence:
            try:
                with open(os.path.join(share, "console.log"), errors="replace") as f:
                    evidence.extend(line.rstrip()[:200] for line in f.readlines()[-12:])
            except OSError:
                pass
print(json.dumps({"name": name, "passed": passed, "figures": result.get("figures", {}),
                  "wall_seconds": wall, "vmrun_rc": vm_rc, "problem": problem, "retried": retried or None,
                  "evidence": evidence, "result_file": path, "console_log": os.path.join(share, "console.log")}))
PY
done

total=$(since "$t_suite")
"$python" - "$records" "$out/results.json" "$prepare_seconds" "$total" <<'PY'
import json, sys
records, dest, prepare, total = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
scenarios = [json.loads(line) for line in open(records) if line.strip()]
with open(dest, "w") as f:
    json.dump({"scenarios": scenarios, "prepare_seconds": prepare, "total_seconds": total}, f, indent=1)
    f.write("\n")

def short(figures):
    keep = []
    for k, v in figures.items():
        if isinstance(v, (dict, list)):
            continue
        keep.append("%s=%s" % (k, v))
    return " ".join(keep)

print()
print("%-22s %-6s %8s  %s" % ("scenario", "result", "wall s", "figures"))
print("-" * 100)
for s in scenarios:
    print("%-22s %-6s %8.1f  %s" % (s["name"], "PASS" if s["passed"] else "FAIL", s["wall_seconds"],
                                    short(s["figures"])))
    if s.get("retried"):
        print("%-22s        RETRIED: %s" % ("", s["retried"]))
    if s["problem"]:
        print("%-22s        %s" % ("", s["problem"]))
    for line in s.get("evidence") or []:
        print("%-22s        | %s" % ("", line))
print("-" * 100)
print("prepare %.1f s, suite %.1f s; results: %s" % (prepare, total, dest))
npass = sum(1 for s in scenarios if s["passed"])
nretried = sum(1 for s in scenarios if s.get("retried"))
print("e2e: %d passed, %d failed%s" % (npass, len(scenarios) - npass,
                                     ", %d booted twice (the first boot died before its script)" % nretried if nretried else ""))
sys.exit(0 if npass == len(scenarios) else 1)
PY
