"""Host-side helpers for the scenarios where oomguard acts (mode "act"): beat-the-kernel,
protection-holds, group-kill, panic, earlyoom-side-by-side.

The guest records with guest/leakwatch ("key value" lines: pid, start/cross/high/max/death _mono and
_real seconds, status, ...), params files ("key value" lines) and the daemon's JSON log
(daemon.jsonl; every line has "time", an ISO-8601 UTC wall-clock time with microseconds, comparable
with leakwatch's *_real values since both come from the guest's CLOCK_REALTIME).
"""

import datetime
import os

from e2e_common import parse_oom_reports, read_kmsg, read_text


def read_kv(path):
    """'key value...' lines -> {key: value string} (first occurrence wins; missing file: {})."""
    out = {}
    for line in (read_text(path, limit=10 ** 6) or "").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            out.setdefault(parts[0], parts[1].strip())
        elif len(parts) == 1:
            out.setdefault(parts[0], "")
    return out


def num(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def intval(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def epoch(iso):
    """The daemon's "time" field -> seconds since the epoch (None if unparsable)."""
    try:
        t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        return None
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def ms(a, b):
    """(b - a) in ms, rounded to 0.1, or None."""
    if a is None or b is None:
        return None
    return round((b - a) * 1000.0, 1)


def read_leak(path):
    """leakwatch's record -> dict with ints/floats where they are numbers."""
    raw = read_kv(path)
    leak = {"present": bool(raw)}
    for key, value in raw.items():
        if key == "status":
            leak[key] = value
            continue
        n = num(value)
        leak[key] = value if n is None else (int(n) if n == int(n) and "." not in value else n)
    status = raw.get("status", "")
    leak["killed_by_sigkill"] = status == "signaled 9"
    return leak


def in_range(events, start, end=None):
    """events (line, doc) with start <= line < end."""
    return [(n, e) for n, e in events if n >= start and (end is None or n < end)]


def domain_of(doc):
    dom = doc.get("domain")
    return dom.get("cgroup") if isinstance(dom, dict) else dom


def decisions(events, domain=None):
    return [(n, e) for n, e in events if e.get("event") == "decision" and (domain is None or domain_of(e) == domain)]


def acting(events):
    """Decisions that did something (or tried): action other than none."""
    return [(n, e) for n, e in events if e.get("event") == "decision" and e.get("action") not in (None, "none")]


def kernel_oom(kmsg_path):
    """The kernel's OOM reports in a kmsgdump file (or a file of its raw lines) -> list of summaries."""
    reports = parse_oom_reports(read_kmsg(kmsg_path))
    out = []
    for r in reports:
        out.append({"invoker": r["invoker"], "constraint": (r["oom_kill"] or {}).get("constraint"),
                    "killed": [{"pid": k["pid"], "comm": k["comm"]} for k in r["killed"]]})
    return out


def kmsg_oom_text(path):
    """kmsg_oom_lines output (the OOM-killer records, raw) -> list of lines."""
    return [line for line in (read_text(path, limit=10 ** 6) or "").splitlines() if line.strip()]


def slim(decision):
    """A decision line without its candidate list (for result files)."""
    if decision is None:
        return None
    d = dict(decision)
    cands = d.pop("candidates", None)
    if isinstance(cands, list):
        d["candidates_pids"] = [(c.get("pid"), c.get("comm"), c.get("points")) for c in cands if isinstance(c, dict)]
    return d


def memory_events(path):
    return {k: intval(v) for k, v in read_kv(path).items()}


def kernel_oom_errors(run_dir, params, domain):
    """Why the kernel's OOM killer must have run in a sub-run (none: it never did): memory.events oom or
    oom_kill of the domain (run_dir/memory.events), vmstat oom_kill before and after (params), a kmsg OOM
    record (run_dir/kmsg-oom.txt)."""
    errors = []
    events_file = memory_events(os.path.join(run_dir, "memory.events"))
    if events_file.get("oom") or events_file.get("oom_kill"):
        errors.append("the kernel's OOM killer ran in %s: %s" % (domain, events_file))
    if intval(params.get("vmstat_oom_kill_after"), 0) != intval(params.get("vmstat_oom_kill_before"), 0):
        errors.append("vmstat oom_kill rose: the kernel killed")
    oom_text = kmsg_oom_text(os.path.join(run_dir, "kmsg-oom.txt"))
    if oom_text:
        errors.append("kernel OOM report: %s" % oom_text[:2])
    return errors


def exists(path):
    return os.path.exists(path)
