#!/usr/bin/env bash
# capture-kmsg-fixtures.sh — (re)capture the kernel OOM reports in tests/fixtures/kmsg-6.12/ from the
# lab VM (tests/e2e/vmrun.sh). Each fixture starts at the "invoked oom-killer" record and ends with the
# last record of the report ("Killed process", "Tasks in ... memory.oom.group", "oom_reaper").
#   tests/e2e/tools/capture-kmsg-fixtures.sh [OUT_DIR]   (default tests/fixtures/kmsg-6.12)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
e2e=$(cd "$here/.." && pwd)
repo=$(cd "$e2e/../.." && pwd)
dest=${1:-$repo/tests/fixtures/kmsg-6.12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/base" "$work/cpuset" "$work/burst" "$dest"
for src in "$e2e"/guest/*.c; do
  gcc -std=c11 -O2 -Wall -Wextra -Werror -static -o "$work/bin/$(basename "$src" .c)" "$src"
done
helpers=(-b "$work/bin/hog" -b "$work/bin/kmsgdump" -f "$e2e/guest/guestlib.sh")
"$e2e/vmrun.sh" -m 512 -t 240 -d "$work/base" "${helpers[@]}" "$here/kmsg-capture.guest.sh" base >&2
"$e2e/vmrun.sh" -m 512 -t 120 -a numa=fake=2 -d "$work/cpuset" "${helpers[@]}" "$here/kmsg-capture.guest.sh" cpuset >&2
"$e2e/vmrun.sh" -m 512 -t 120 -d "$work/burst" "${helpers[@]}" "$here/kmsg-capture.guest.sh" burst >&2
cp "$work/base/kernel-release" "$dest/kernel-release.txt"
# dictionary.txt: the first 3 boot records that carry dictionary lines, as read.
python3 - "$work/base/boot.log" "$dest/dictionary.txt" <<'PY'
import sys
records = []
for line in open(sys.argv[1], encoding="utf-8", errors="surrogateescape"):
    if line.startswith(" ") and records:
        records[-1] += line
    else:
        records.append(line)
with_dict = [r for r in records if "\n " in r][:3]
with open(sys.argv[2], "w", encoding="utf-8", errors="surrogateescape") as f:
    f.writelines(with_dict)
print("%s: %d records" % (sys.argv[2], len(with_dict)))
PY
for raw in "$work"/base/*.raw "$work"/cpuset/*.raw "$work"/burst/*.raw; do
  name=$(basename "$raw" .raw)
  # Records (a line not starting with a space, plus its " KEY=value" dictionary lines), from the first
  # "invoked oom-killer" record through the last record that belongs to the report.
  python3 - "$raw" "$dest/$name.txt" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
records = []
for line in open(src, encoding="utf-8", errors="surrogateescape"):
    if line.startswith(" ") and records:
        records[-1] += line
    else:
        records.append(line)
def msg(r):
    return r.split("\n", 1)[0].partition(";")[2]
start = next(i for i, r in enumerate(records) if " invoked oom-killer: " in msg(r))
end = max(i for i, r in enumerate(records)
          if "Killed process " in msg(r) or msg(r).startswith(("oom_reaper:", "Tasks in ")))
with open(dst, "w", encoding="utf-8", errors="surrogateescape") as f:
    f.writelines(records[start:end + 1])
print("%s: %d records" % (dst, end + 1 - start))
PY
done
