#!/usr/bin/env bash
# Builds the parser, config-loader and glob fuzz targets with clang and runs each for FUZZ_SECONDS (default 20) with the
# captured kernel files under tests/fixtures as its seed corpus. Any crash, leak or sanitizer report fails.
# Usage: tests/fuzz/run-fuzzers.sh [BUILD_DIR]        Prints "fuzz: N passed, N failed" last.
set -euo pipefail
cd "$(dirname "$0")/../.."
build_dir="${1:-build-fuzz}"
seconds="${FUZZ_SECONDS:-20}"
fixtures=tests/fixtures

CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DOOMGUARD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j"$(nproc)" >/dev/null

# Seed files per parser: the real captures of what that parser reads.
seeds_for() {
  case "$1" in
    parseProcStatus) ls "$fixtures"/host-*/status-* "$fixtures"/*/proc/*/status ;;
    parseOomScoreAdj|parseInteger) ls "$fixtures"/*/proc/*/oom_score_adj "$fixtures"/*/proc/sys/vm/* ;;
    parseCgroupV2Path) ls "$fixtures"/host-*/cgroup-* "$fixtures"/*/proc/*/cgroup ;;
    parseMemInfo) ls "$fixtures"/host-*/meminfo "$fixtures"/*/proc/meminfo ;;
    parsePressure) ls "$fixtures"/host-*/pressure-* "$fixtures"/host-*/*.pressure ;;
    parseLimit) ls "$fixtures"/*/cgroup/*/memory.max "$fixtures"/*/cgroup/*/memory.swap.max ;;
    parseFlatKeyed|parseMemoryEvents) ls "$fixtures"/*/cgroup/*/memory.events ;;
    parsePidList) ls "$fixtures"/*/cgroup/*/cgroup.procs ;;
    parseWordList) ls "$fixtures"/host-*/*cgroup.controllers "$fixtures"/*/cgroup/cgroup.controllers ;;
    parseBuddyInfo) ls "$fixtures"/host-*/buddyinfo ;;
    parseAllocatedPages) ls "$fixtures"/host-*/vmstat ;;
    parseKernelRelease) ls "$fixtures"/host-*/osrelease "$fixtures"/*/proc/sys/kernel/osrelease ;;
    parseKmsgRecord|parseOomKillSummary|parseKilledProcess|OomReportAssembler) ls "$fixtures"/kmsg-*/*.txt ;;
    Config) ls examples/*.json tests/fuzz/seeds/config/* ;;
    Glob) ls tests/fuzz/seeds/glob/* ;;
  esac 2>/dev/null || true
}

passed=0
failed=0
work=$(mktemp -d)
# A fuzzer still running when this script ends (a signal, an error) is stopped before its files go.
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$work"' EXIT
# One target per core at a time (each libFuzzer run is single-threaded): 20 targets x 20 s take 200 s
# on 2 cores instead of 400. Each job writes its verdict to $work/<name>.result; they are printed in
# the targets' order once all have finished.
jobs="${FUZZ_JOBS:-$(nproc)}"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || jobs=1
fuzz_one() {
  local target=$1 name=${1##*/fuzz_}
  local corpus="$work/$name" seeds=0 seed runs
  mkdir -p "$corpus"
  for seed in $(seeds_for "$name"); do
    cp "$seed" "$corpus/$(echo "$seed" | tr '/' '_')"
    seeds=$((seeds + 1))
  done
  if [ "$seeds" -eq 0 ]; then
    echo "fuzz: $name has no seed files" > "$work/$name.result"
    return
  fi
  if "$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$work/$name-" "$corpus" >"$work/$name.log" 2>&1; then
    runs=$(grep -oE 'Done [0-9]+ runs' "$work/$name.log" | grep -oE '[0-9]+' || echo '?')
    printf 'fuzz: %-20s ok   %s seeds, %s runs in %s s\n' "$name" "$seeds" "$runs" "$seconds" > "$work/$name.result"
  else
    { printf 'fuzz: %-20s FAILED\n' "$name"; tail -40 "$work/$name.log"; } > "$work/$name.result"
    mkdir -p "$build_dir/artifacts"
    cp "$work/$name"-* "$build_dir/artifacts/" 2>/dev/null || true
  fi
}
targets=("$build_dir"/bin/fuzz_*)
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  fuzz_one "$target" &
done
wait
for target in "${targets[@]}"; do
  name=${target##*/fuzz_}
  if [ -f "$work/$name.result" ]; then
    cat "$work/$name.result"
  else
    echo "fuzz: $name gave no verdict"
  fi
  if grep -qE "^fuzz: $name +ok " "$work/$name.result" 2>/dev/null; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
