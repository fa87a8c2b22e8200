#!/usr/bin/env bash
# Builds oomguard and runs every test:
#   1. unit + integration tests (ctest; integration runs against this machine's live /proc)
#   1b. the Debian package (scripts/package.sh), checked by lintian and systemd-analyze
#   1c. the DaemonSet image built with podman and run as the chart runs it (tests/image; its build stage
#       is the Release build at -O3 with the unit tests)
#   2. the Helm chart (rendered by the real helm, from the npm registry) and the Dockerfile (static)
#   3. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#   4. the Prometheus alerting rules: promtool check rules and their unit tests (monitoring/tests)
#   5. every parser's libFuzzer target for FUZZ_SECONDS each (default 20), one per core at a time, and
#      clang-tidy: both at nice 19 in the background while the end-to-end suite runs
#   6. the end-to-end suite in a real kernel under QEMU (tests/e2e), when present
#   7. the benchmarks in a short form (bench/): their figures in the summary, a failure only past a
#      margin wide enough that noise on a shared machine does not cross it and a real regression does
# Installs what it needs first (scripts/install-deps.sh). Skipped checks are listed at the end, and the
# last line is "total: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
passed=0
failed=0
skipped=0
skipped_list=()
reasons_list=()
failed_list=()

section() { printf '\n===== %s ===== (%d s into the run)\n' "$*" "$SECONDS"; }
# The daemon's default kill history is the host's /var/lib/oomguard: no test may write it (each runs
# its daemons with a scratch history.dir, or none).
host_history_before=$([ -e /var/lib/oomguard ] && echo 1 || echo 0)

# Adds a ctest run's outcome to the totals: "N% tests passed, F tests failed out of T".
count_ctest() {
  local log=$1 label=$2 line total bad skips
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failed_list+=("$label: ctest did not run")
    return
  fi
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$line")
  skips=$(grep -cE '\*\*\*Skipped|Skipped +[0-9.]+ sec' "$log" || true)
  passed=$((passed + total - bad - skips))
  failed=$((failed + bad))
  skipped=$((skipped + skips))
  [ "$bad" -eq 0 ] || failed_list+=("$label: $bad failed")
  while read -r name; do
    [ -n "$name" ] && skipped_list+=("$label: $name")
  done < <(grep -E '\*\*\*Skipped|Skipped +[0-9.]+ sec' "$log" | sed -E 's/.*Test +#[0-9]+: ([^ ]+).*/\1/')
  # Why: each skip's reason ("SKIPPED: ...") and each test that narrowed itself ("NARROWED: ..."), from
  # the full output ctest keeps (it shows none of it for a test that passed or skipped).
  local full
  full="$(dirname "$log")/Testing/Temporary/LastTest.log"
  if [ -f "$full" ]; then
    while read -r reason; do
      [ -n "$reason" ] && reasons_list+=("$label: $reason")
    done < <(grep -ohE '(SKIPPED|NARROWED): .*' "$full" | sort -u)
  fi
}

section "dependencies"
scripts/install-deps.sh all || { echo "install-deps failed" >&2; exit 1; }

section "build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOOMGUARD_TESTS=ON -DOOMGUARD_BENCH=ON >/dev/null && cmake --build build -j"$jobs" || {
  echo "build failed" >&2; echo "total: $passed passed, 1 failed, $skipped skipped"; exit 1; }

section "unit + integration tests"
(cd build && ctest --output-on-failure --timeout 300 -j"$jobs") 2>&1 | tee build/ctest.log
count_ctest build/ctest.log "ctest"

# A runner's "name: N passed, N failed, N skipped" summary (tests/helm, tests/image) into the totals;
# its "SKIP  ..." lines into the skipped list, its "FAIL  ..." lines into the failed list.
count_runner() {  # LOG LABEL
  local line p f s item
  line=$(grep -E "^$2: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$" "$1" | tail -1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failed_list+=("$2: did not run (see $1)")
    return
  fi
  read -r p f s < <(sed -E "s/^$2: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/" <<<"$line")
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  while read -r item; do
    [ -n "$item" ] && skipped_list+=("$2: $item")
  done < <(sed -nE 's/^SKIP  (.*)/\1/p' "$1")
  while read -r item; do
    [ -n "$item" ] && failed_list+=("$2: $item")
  done < <(sed -nE 's/^FAIL  (.*)/\1/p' "$1" | cut -c1-300)
}

section "the Debian package (scripts/package.sh): lintian, the unit's verify and security score"
# From the build above (RelWithDebInfo, stripped into the package, as Debian builds). The VM scenario
# `package` installs it in a guest and runs it as its unit would.
if scripts/package.sh build 2>&1 | tee build/package.log; then
  passed=$((passed + 1))
else
  why=$(grep -E 'lintian: [1-9][0-9]* errors|verify: ' build/package.log | grep -v 'verify: clean' | head -n 1)
  failed=$((failed + 1)); failed_list+=("package: ${why:-scripts/package.sh failed (build/package.log)}")
fi

section "the DaemonSet image, built and run (tests/image: podman, a Debian 12 base from mmdebstrap)"
# Its build stage is the Release build (-O3) with the unit tests run inside: once the image could not be
# built (-Werror at -O3) while every other build passed. Where the image cannot be built here (no root
# for podman), that Release build and its unit tests run on the host instead.
tests/image/run.sh build/bin/oomguard 2>&1 | tee build/image.log
count_runner build/image.log image
if grep -q '^SKIP  image: ' build/image.log; then
  if cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DOOMGUARD_TESTS=ON -DOOMGUARD_BENCH=OFF >/dev/null &&
     cmake --build build-release -j"$jobs" --target oomguard unit_tests &&
     ctest --test-dir build-release -L unit --timeout 300 -j"$jobs" --output-on-failure > build/release-unit.log 2>&1 &&
     build-release/bin/oomguard check-config examples/oomguard.json; then
    passed=$((passed + 1))
    tail -3 build/release-unit.log
  else
    tail -20 build/release-unit.log 2>/dev/null
    failed=$((failed + 1)); failed_list+=("release: the Release build, its unit tests or check-config failed (build/release-unit.log)")
  fi
fi

section "Kubernetes packaging: Helm chart and Dockerfile (tests/helm)"
tests/helm/run.sh 2>&1 | tee build/helm.log
count_runner build/helm.log helm

section "unit + integration tests under ASan + UBSan"
# -g1: line tables and function entries, what the sanitizers' stack traces print (function, file, line): six
# translation units drawn at random compiled 12 % faster than with -g.
if cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DOOMGUARD_SANITIZE=ON \
     -DOOMGUARD_BENCH=OFF >/dev/null &&
   cmake --build build-asan -j"$jobs"; then
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure --timeout 300 -j"$jobs") 2>&1 | tee build-asan/ctest.log
  count_ctest build-asan/ctest.log "asan+ubsan"
else
  failed=$((failed + 1)); failed_list+=("asan+ubsan: build failed")
fi

section "alerting rules (promtool check rules, promtool test rules)"
if command -v promtool >/dev/null 2>&1; then
  if promtool check rules monitoring/oomguard.rules.yml; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failed_list+=("promtool check rules monitoring/oomguard.rules.yml")
  fi
  for rule_test in monitoring/tests/*.yml; do
    if promtool test rules "$rule_test"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1)); failed_list+=("promtool test rules $rule_test")
    fi
  done
else
  skipped=$((skipped + 1)); skipped_list+=("alerting rules: promtool not installed (Debian package prometheus)")
fi

# clang-tidy and the fuzzers run in the background, at nice 19, while the end-to-end suite runs: the
# suite's emulated guest keeps one core busy and leaves the other idle, and these two took 12.6 min of
# the 68 on their own. nice 19 leaves the guest the CPU it asks for; both are reported after the suite.
# Neither measures time (the fuzzers run for a fixed time each, with as many runs as they get).
background_checks() {
  # -Wno-unknown-warning-option: the build's GCC-only flags (-Wno-error=restrict, see CMakeLists.txt).
  if run-clang-tidy -p build -quiet -extra-arg=-Wno-unknown-warning-option 'cgroupfs/|policies/|guardian/' \
       > build/tidy.log 2>&1; then
    echo 0 > build/tidy.rc
  else
    echo 1 > build/tidy.rc
  fi
  tests/fuzz/run-fuzzers.sh build-fuzz > build/fuzz.log 2>&1
}
rm -f build/tidy.rc build/fuzz.log
background_start=$SECONDS
# Its own process group (setsid), so that an early exit of this script takes it along.
setsid -w nice -n 19 bash -c "$(declare -f background_checks); background_checks" &
background_pid=$!
trap 'kill -- -"$background_pid" 2>/dev/null' EXIT

section "end-to-end suite (real kernel under QEMU)"
if [ -x tests/e2e/run-suite.sh ]; then
  if tests/e2e/run-suite.sh 2>&1 | tee build/e2e.log; then
    e2e_ok=1
  else
    e2e_ok=0
  fi
  if [ -f build/e2e/results.json ]; then
    read -r e2e_passed e2e_failed < <(python3 -c '
import json
s = json.load(open("build/e2e/results.json"))["scenarios"]
print(sum(1 for x in s if x["passed"]), sum(1 for x in s if not x["passed"]))')
    passed=$((passed + e2e_passed))
    failed=$((failed + e2e_failed))
    # Each failed scenario by name, with what its check said first: the summary is what a CI log keeps.
    while IFS= read -r line; do
      failed_list+=("e2e: $line")
    done < <(python3 -c '
import json
for x in json.load(open("build/e2e/results.json"))["scenarios"]:
    if x["passed"]:
        continue
    why = " | ".join(([x["problem"]] if x.get("problem") else []) + (x.get("evidence") or [])[:4])
    print("%s failed: %s" % (x["name"], " ".join(why.split())[:900] or "see build/e2e.log"))')
    if [ "$e2e_ok" -eq 0 ] && [ "$e2e_failed" -eq 0 ]; then
      failed=$((failed + 1)); failed_list+=("e2e: the suite failed (see build/e2e.log)")
    fi
  else
    failed=$((failed + 1)); failed_list+=("e2e: no results (see build/e2e.log)")
  fi
else
  skipped=$((skipped + 1)); skipped_list+=("e2e: tests/e2e/run-suite.sh not present")
fi

section "clang-tidy and the parser fuzzers (run in the background since $background_start s)"
wait "$background_pid"
trap - EXIT  # done: its group id may name another group later
echo "background checks done $((SECONDS - background_start)) s after they started"
if [ "$(cat build/tidy.rc 2>/dev/null)" = 0 ]; then
  passed=$((passed + 1))
  echo "clang-tidy (the root .clang-tidy; warnings are errors): clean ($(grep -c '^clang-tidy' build/tidy.log) files)"
else
  failed=$((failed + 1)); failed_list+=("clang-tidy: see build/tidy.log")
  sed 's/\x1b\[[0-9;]*m//g' build/tidy.log | grep -E 'error:' | sort -u | head -40
fi
cat build/fuzz.log
fuzz_line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed' build/fuzz.log | tail -1)
if [ -n "$fuzz_line" ]; then
  passed=$((passed + $(sed -E 's/fuzz: ([0-9]+) passed.*/\1/' <<<"$fuzz_line")))
  fuzz_failed=$(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$fuzz_line")
  failed=$((failed + fuzz_failed))
  [ "$fuzz_failed" -eq 0 ] || failed_list+=("fuzz: $fuzz_failed targets failed")
else
  failed=$((failed + 1)); failed_list+=("fuzz: did not run")
fi

section "benchmarks (short forms; bench/)"
# Ratios are measured against a floor in the same run. Margins, and why: the whole-host ranking measured
# 0.98-1.21x its floor and `top --all --json` 1.70x (target 1.3, not met: see bench/host_ranking.cpp),
# reading /proc/<pid>/cgroup for every process again would put it at 2.0-2.4x; the event-to-kill p99
# measured 172-400 us (target 1 ms); the idle daemon with 500 populated cgroups 5.8-6.1 MiB and
# 0.09-0.17 % (default config) / 0.18-0.25 % (recommended) of a core, failing above 2.5 % (targets 8 MiB,
# 0.1 %); its floor on the same fixture (bench_idle_floor: the reads its 30 s freshness contract needs,
# at the fewest wake-ups) measured 0.16-0.19 %, and the recommended config 1.03-1.07 times it in a 20 s
# window of both at once that held none of its full scans (every 30 s) and 1.33-1.46 times in 30 and 45 s
# ones that held one, failing above 3 (the 30 s window here holds one cycle of each: the daemon's full
# scan, and the floor's six refreshes that spread the same reads); and the recommended config's level
# watch about 22 readings a second (each domain every 30 s; read on a timer it made 2,200 a second and
# 19.7 % of the VM's core);
# the level watch kills 4-5 ms after a 50 or 500 MiB/s leak crosses its threshold (6.8 % of the headroom
# used at 500 MiB/s; a watch blind for a refresh used 4,300 %: the limit, 100 %, is the kernel's OOM).
bench_list=()
bench_check() {  # NAME VALUE LIMIT UNIT: fails when VALUE is missing or above LIMIT
  if [ -z "$2" ]; then
    failed=$((failed + 1)); failed_list+=("bench: $1 was not measured"); bench_list+=("$1: not measured")
  elif awk -v v="$2" -v l="$3" 'BEGIN { exit !(v > l) }'; then
    failed=$((failed + 1)); failed_list+=("bench: $1 $2 $4 is past the margin $3 $4")
    bench_list+=("$1: $2 $4 (fails above $3)")
  else
    passed=$((passed + 1)); bench_list+=("$1: $2 $4 (fails above $3)")
  fi
}
build/bin/bench_host_ranking --processes 1000 --rounds 7 2>&1 | tee build/bench-host-ranking.log
bench_check "host ranking / floor" "$(sed -nE 's/.*ratio ranking\/floor ([0-9.]+).*/\1/p' build/bench-host-ranking.log)" 1.8 x
bench_check "top --all --json / floor" "$(sed -nE 's/.*ratio top\/floor +([0-9.]+).*/\1/p' build/bench-host-ranking.log)" 2.6 x
build/bin/bench_reaction --processes 1000 --events 500 2>&1 | tee build/bench-reaction.log
bench_check "event to kill p99" "$(sed -nE 's/.*kill \(event.*p99 +([0-9.]+) us.*/\1/p' build/bench-reaction.log)" 5000 us
grep -q "FAILED:" build/bench-reaction.log && { failed=$((failed + 1)); failed_list+=("bench: $(grep -m1 "FAILED:" build/bench-reaction.log)"); }
build/bin/bench_level_watch --trials 3 2>&1 | tee build/bench-level-watch.log
bench_check "level watch 50 MiB/s, crossing to kill (worst)" \
  "$(sed -nE 's/.*rate +50 MiB\/s: .*worst +([0-9.]+) ms;.*/\1/p' build/bench-level-watch.log)" 250 ms
bench_check "level watch 500 MiB/s, headroom used at the kill (worst)" \
  "$(sed -nE 's/.*rate +500 MiB\/s: .*worst +([0-9.]+)%; killed 3\/3.*/\1/p' build/bench-level-watch.log)" 99 "%"
bench/idle_footprint.sh 30 build/bin/oomguard 2>&1 | tee build/bench-idle.log
for config in default recommended; do
  bench_check "idle RSS at end ($config config)" \
    "$(sed -nE "s/.*$config RSS .*MiB at start, ([0-9.]+) MiB at end.*/\\1/p" build/bench-idle.log)" 12 MiB
  bench_check "idle CPU ($config config)" \
    "$(sed -nE "s/.*$config CPU .* = ([0-9.]+)% of a core.*/\\1/p" build/bench-idle.log)" 2.5 "% of a core"
done
bench_check "idle CPU, recommended config / its floor" \
  "$(sed -nE 's/.*idle ratio recommended\/floor ([0-9.]+) .*/\1/p' build/bench-idle.log)" 3 x
bench_check "idle level readings (recommended config)" \
  "$(sed -nE "s/.*recommended level readings ([0-9.]+) per second.*/\\1/p" build/bench-idle.log)" 100 "per second"

if [ "$host_history_before" = 0 ] && [ -e /var/lib/oomguard ]; then
  failed=$((failed + 1)); failed_list+=("a test wrote the host's /var/lib/oomguard (the daemon's default history.dir)")
fi

section "summary"
for item in "${skipped_list[@]}"; do echo "SKIPPED  $item"; done
for item in "${reasons_list[@]}"; do echo "REASON   $item"; done
for item in "${bench_list[@]}"; do echo "BENCH    $item"; done
for item in "${failed_list[@]}"; do echo "FAILED   $item"; done
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
