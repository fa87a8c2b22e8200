#!/usr/bin/env bash
# /metrics at scale: `oomguard run` over a tree of 500 OOM domains (a temporary directory, as in
# bench/idle_footprint.sh: 50 parents x 10 leaves with memory.max, memory.events and memory.pressure;
# every leaf lists the same 12 sleeping processes, so each domain ranks a full top 10). Prints the size
# of /metrics (plain and gzip), its series count, the scrape time (median and max of SCRAPES, default
# 30), and the mean ranking refresh (oomguard_scan_duration_seconds) with and without back-to-back
# scrapes running, i.e. how much scraping slows the daemon's loop. Loopback only; removes everything.
# Usage: monitoring/scrape_bench.sh [OOMGUARD_BINARY]
set -euo pipefail
binary="${1:-$(dirname "$0")/../build/bin/oomguard}"
scrapes="${SCRAPES:-30}"
tree=$(mktemp -d)
config="$tree.json"
out="$tree.log"
sleepers=()
cleanup() {
  [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  for pid in "${sleepers[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tree" "$config" "$out" "$tree.metrics"
}
trap cleanup EXIT

for _ in $(seq 12); do sleep 3600 & sleepers+=($!); done
procs=$(printf '%s\n' "${sleepers[@]}")
printf '' > "$tree/cgroup.procs"
for p in $(seq 0 49); do
  mkdir "$tree/parent$p"
  printf '' > "$tree/parent$p/cgroup.procs"
  echo max > "$tree/parent$p/memory.max"
  for l in $(seq 0 9); do
    leaf="$tree/parent$p/leaf$l"
    mkdir "$leaf"
    echo "$procs" > "$leaf/cgroup.procs"
    echo 268435456 > "$leaf/memory.max"
    echo 0 > "$leaf/memory.swap.max"
    echo 0 > "$leaf/memory.oom.group"
    printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n' > "$leaf/memory.events"
    printf 'some avg10=1.50 avg60=0.75 avg300=0.20 total=1234567\nfull avg10=0.50 avg60=0.25 avg300=0.05 total=234567\n' \
      > "$leaf/memory.pressure"
  done
done
cat > "$config" <<JSON
{"refresh_interval_s": 1, "read_kmsg": false, "self": {"mlock": false, "oom_score_adj": null},
 "cgroups": [{"match": "/**", "watch_events": true, "pressure": null}], "host": {"pressure": null}}
JSON

"$binary" --cgroup-root "$tree" run --config "$config" --metrics-listen 127.0.0.1:0 > "$out" 2>/dev/null &
daemon=$!
port=
for _ in $(seq 100); do
  port=$(grep -o '"event":"metrics_listening".*"port":[0-9]*' "$out" 2>/dev/null | grep -o '[0-9]*$' || true)
  [ -n "$port" ] && grep -q '"event":"started"' "$out" && break
  sleep 0.1
done
[ -n "$port" ] || { echo "oomguard did not start"; exit 1; }
url="http://127.0.0.1:$port/metrics"
sleep "${WARMUP_S:-5}"
rss_before=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status")
domains=0
for _ in $(seq 120); do
  domains=$(curl -s "$url" | grep '^oomguard_victim_rank{' | grep -o 'domain="[^"]*"' | sort -u | wc -l)
  [ "$domains" -ge 501 ] && break
  sleep 0.5
done

scan_mean() {  # mean refresh time over the scans since the previous call
  local sum count
  read -r sum count < <(curl -s "$url" | awk '/^oomguard_scan_duration_seconds_sum/ {s=$2} /^oomguard_scan_duration_seconds_count/ {c=$2} END {print s, c}')
  awk -v s="$sum" -v c="$count" -v s0="${last_sum:-0}" -v c0="${last_count:-0}" \
    'BEGIN { if (c > c0) printf "%.2f ms over %d scans", 1000 * (s - s0) / (c - c0), c - c0; else print "no scan" }'
  last_sum=$sum; last_count=$count
}

curl -s "$url" > "$tree.metrics"
size=$(wc -c < "$tree.metrics")
gzip_size=$(curl -s -H 'Accept-Encoding: gzip' "$url" | wc -c)
series=$(grep -vc '^#' "$tree.metrics")
times=$(for _ in $(seq "$scrapes"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n)
gzip_times=$(for _ in $(seq "$scrapes"); do curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%{time_total}\n' "$url"; done | sort -n)

scan_mean > /dev/null
sleep 10
quiet=$(scan_mean)
end=$((SECONDS + 10))
while [ "$SECONDS" -lt "$end" ]; do curl -s -o /dev/null "$url"; done
busy=$(scan_mean)
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status")

median() { awk '{a[NR]=$1} END {printf "%.1f ms (max %.1f ms)", 1000 * a[int((NR + 1) / 2)], 1000 * a[NR]}'; }
echo "metrics at scale: $domains domains ranked (500 cgroups + host), top K 10"
echo "  /metrics: $series series, $(awk -v b="$size" 'BEGIN {printf "%.2f MiB", b / 1048576}') plain, $(awk -v b="$gzip_size" 'BEGIN {printf "%.2f MiB", b / 1048576}') gzip"
echo "  scrape (curl, $scrapes each): plain $(median <<<"$times"), gzip $(median <<<"$gzip_times")"
echo "  ranking refresh: $quiet without scrapes; $busy with back-to-back scrapes"
echo "  series per family:$(grep -v '^#' "$tree.metrics" | sed -E 's/[{ ].*//; s/_(bucket|sum|count)$//' | sort | uniq -c | awk '{printf " %s %d,", $2, $1}' | sed 's/,$//')"
echo "  daemon RSS: $(awk -v k="$rss_before" 'BEGIN {printf "%.1f MiB", k / 1024}') before the first scrape, $(awk -v k="$rss" 'BEGIN {printf "%.1f MiB", k / 1024}') after"
