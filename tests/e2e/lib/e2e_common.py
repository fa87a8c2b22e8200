"""Host-side helpers for the e2e scenario checks: kmsg OOM reports, oomguard JSON, results."""

import json
import os
import re

# ----------------------------------------------------------------------------------------------
# /dev/kmsg records, as written by guest/kmsgdump: "prio,seq,usec,flags;message"


def read_kmsg(path):
    """Returns [(level, seq, usec, message)] from a kmsgdump file (missing file: [])."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path, errors="replace") as f:
        for line in f:
            head, sep, msg = line.rstrip("\n").partition(";")
            if not sep:
                continue
            fields = head.split(",")
            try:
                level, seq, usec = int(fields[0]) & 7, int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                continue
            records.append((level, seq, usec, msg))
    return records


_KV = re.compile(r"(\w+)=([^,]*)")
_KILLED = re.compile(r"^(?P<kind>.*?): Killed process (?P<pid>\d+) \((?P<comm>.*?)\)(?P<rest>.*)$")
_GROUP = re.compile(r"^Tasks in (?P<cgroup>\S+) are going to be killed due to memory\.oom\.group set")


def parse_oom_reports(records):
    """Splits kmsg records into OOM reports, in order. Each report is a dict:
    invoker, header, tasks (rows of the 'Tasks state' table as dicts), oom_kill (key/values of the
    'oom-kill:' line), killed ([{'pid','comm','kind','line'}]), group_cgroup, lines (the report's
    lines minus the call trace and memory.stat dump)."""
    reports = []
    cur = None
    columns = None
    for _level, _seq, _usec, msg in records:
        if " invoked oom-killer: " in msg:
            cur = {"invoker": msg.split(" invoked oom-killer: ")[0], "header": msg, "tasks": [],
                   "oom_kill": None, "killed": [], "group_cgroup": None, "lines": [msg]}
            reports.append(cur)
            columns = None
            continue
        if cur is None:
            continue
        stripped = msg.strip()
        if stripped.startswith("[  pid  ]"):
            columns = ["pid"] + stripped.split("]", 1)[1].split()
            cur["lines"].append(msg)
            continue
        if columns and stripped.startswith("["):
            parts = stripped.replace("[", " ").replace("]", " ").split()
            if len(parts) >= len(columns):
                row = {}
                for key, value in zip(columns[:-1], parts[: len(columns) - 1]):
                    try:
                        row[key] = int(value)
                    except ValueError:
                        row[key] = value
                row[columns[-1]] = " ".join(parts[len(columns) - 1:])
                cur["tasks"].append(row)
                cur["lines"].append(msg)
                continue
        if msg.startswith("oom-kill:"):
            cur["oom_kill"] = dict(_KV.findall(msg[len("oom-kill:"):]))
            if ",global_oom," in msg + ",":
                cur["oom_kill"].setdefault("oom_memcg", "global_oom")
            cur["lines"].append(msg)
            columns = None
            continue
        m = _KILLED.match(msg)
        if m:
            cur["killed"].append({"pid": int(m.group("pid")), "comm": m.group("comm"),
                                  "kind": m.group("kind"), "line": msg})
            cur["lines"].append(msg)
            continue
        m = _GROUP.match(msg)
        if m:
            cur["group_cgroup"] = m.group("cgroup")
            cur["lines"].append(msg)
            continue
        if msg.startswith(("memory: usage", "swap: usage", "Mem-Info", "oom_reaper:")):
            cur["lines"].append(msg)
    return reports


def kernel_points(row, totalpages):
    """The kernel's badness for one 'Tasks state' row (values in pages, pgtables in bytes)."""
    adj = int(row.get("oom_score_adj", 0))
    if adj == -1000:
        return None
    return (int(row.get("rss", 0)) + int(row.get("swapents", 0)) + int(row.get("pgtables_bytes", 0)) // 4096
            + adj * (totalpages // 1000))


# ----------------------------------------------------------------------------------------------
# files written by the guest


def read_params(path):
    """'key value...' lines -> dict of key -> value string; 'hog' lines -> list of dicts."""
    params = {"hogs": []}
    if not os.path.exists(path):
        return params
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "hog" and len(parts) == 5:
                params["hogs"].append({"name": parts[1], "size_mib": int(parts[2]), "adj": int(parts[3]),
                                       "pid": int(parts[4])})
            else:
                params[parts[0]] = " ".join(parts[1:])
    return params


def read_ref(path):
    """refscore output -> (totalpages, [rows])."""
    totalpages, rows = None, []
    if not os.path.exists(path):
        return totalpages, rows
    with open(path) as f:
        for line in f:
            if line.startswith("# totalpages"):
                totalpages = int(line.split()[2])
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 9:
                continue
            rows.append({"pid": int(parts[0]), "comm": parts[1], "cgroup": parts[2], "oom_score_adj": int(parts[3]),
                         "rss_kb": int(parts[4]), "swap_kb": int(parts[5]), "pte_kb": int(parts[6]),
                         "points": int(parts[7]), "killable": parts[8] == "1"})
    return totalpages, rows


def read_text(path, limit=4000):
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        return f.read(limit)


def load_top(dir_path):
    """Reads top.json/top.rc/top.err of one trial -> (document or None, error string or None)."""
    rc = (read_text(os.path.join(dir_path, "top.rc")) or "").strip()
    err = (read_text(os.path.join(dir_path, "top.err")) or "").strip()
    if rc != "0":
        return None, "oomguard top exited %s: %s" % (rc or "?", err[:500])
    try:
        with open(os.path.join(dir_path, "top.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return None, "oomguard top printed no valid JSON: %s" % e
    if not isinstance(doc, dict) or not isinstance(doc.get("candidates"), list) \
            or not isinstance(doc.get("domain"), dict):
        return None, "oomguard top JSON lacks domain/candidates"
    return doc, None


def write_result(share_dir, name, passed, figures, **extra):
    result = {"name": name, "passed": bool(passed), "figures": figures}
    result.update(extra)
    with open(os.path.join(share_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")
    return result
