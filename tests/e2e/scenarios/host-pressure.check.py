"""Host check for host-pressure: for each host PSI trigger and leak rate, when the daemon's first
host pressure decision came relative to the kernel's OOM kill of the leaker (leakwatch's death time)
and to MemAvailable falling below 10 %. Asserted: every trial is a real OOM (the leaker died of
SIGKILL, vmstat oom_kill rose) seen by a living daemon that logged the kernel's kill; the shipped
default (the trigger `oomguard run` arms on the host without a config, from its exit summary) is among
the triggers tried and was armed. Whether each trigger fired before the OOM, and how long before, is
the measurement, reported per trigger and rate: in this guest (no swap, and no reclaimable page cache:
its files live in the initramfs) the first run found no trigger firing before any OOM, so a PSI trigger
cannot be what stops a leak on such a host; the MemAvailable level watch is (race, earlyoom-side-by-side).
Writes SHARE/result.json."""
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import epoch, intval, read_kv, read_leak  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

RATES = ("slow", "medium", "full")
DEFAULT_RE = re.compile(r'host PSI trigger: "(some|full) (\d+) (\d+)"')


def daemon_lines(path):
    out = []
    for line in (read_text(path, limit=10 ** 8) or "").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({})
    return out


def main(share):
    errors = []
    m = DEFAULT_RE.search(read_text(os.path.join(share, "defaults.err")) or "")
    default = (m.group(1), int(m.group(2)), int(m.group(3)) // 1000) if m else None
    if default is None:
        errors.append("the default host trigger is not in the exit summary of `oomguard run` without a config")
    cells = {}
    cells_dir = os.path.join(share, "cells")
    for cell in sorted(os.listdir(cells_dir)) if os.path.isdir(cells_dir) else []:
        cdir = os.path.join(cells_dir, cell)
        lines = daemon_lines(os.path.join(cdir, "daemon.jsonl"))
        for rate in RATES:
            trials = []
            for tname in sorted(t for t in os.listdir(cdir) if t.startswith(rate + "-")):
                tdir = os.path.join(cdir, tname)
                p = read_kv(os.path.join(tdir, "params"))
                leak = read_leak(os.path.join(tdir, "leak.txt"))
                kind, stall, window = (p.get("trigger") or "? 0 0").split()
                trigger = (kind, int(stall), int(window))
                lo, hi = intval(p.get("daemon_line_before"), 0), intval(p.get("daemon_line_after"), len(lines))
                fires = [epoch(e.get("time")) for e in lines[lo:hi]
                         if e.get("event") == "decision" and (e.get("trigger") or {}).get("kind") == "pressure"
                         and (e.get("trigger") or {}).get("cgroup") == "/"]
                fires = [f for f in fires if f is not None]
                death, cross = leak.get("death_real"), leak.get("cross_real")
                oom = intval(p.get("vmstat_oom_kill_after"), 0) > intval(p.get("vmstat_oom_kill_before"), 0)
                trial = {"trial": tname, "oom": oom, "sigkill": leak.get("killed_by_sigkill"),
                         "daemon_alive": p.get("daemon_alive_after") == "1",
                         "first_psi_to_death_ms": round((death - fires[0]) * 1000, 1) if fires and death else None,
                         "first_psi_to_cross_ms": round((cross - fires[0]) * 1000, 1) if fires and cross else None,
                         "leak_to_death_ms": round((death - leak["start_real"]) * 1000, 1)
                         if death and leak.get("start_real") else None,
                         "psi_decisions": len(fires)}
                trial["fired_before_oom"] = bool(fires and death and fires[0] < death)
                if not (oom and trial["sigkill"]):
                    errors.append("%s %s: not an OOM kill (vmstat oom_kill rose: %s, status %s)" % (
                        cell, tname, oom, leak.get("status")))
                if not trial["daemon_alive"]:
                    errors.append("%s %s: the daemon died" % (cell, tname))
                logged = [e for e in lines[lo:hi] if e.get("event") == "kernel_oom_kill"
                          and (e.get("victim") or {}).get("pid") == leak.get("pid")]
                if not logged:
                    errors.append("%s %s: the daemon logged no kernel_oom_kill for the leaker" % (cell, tname))
                trials.append(trial)
            leads = [t["first_psi_to_death_ms"] for t in trials if t["fired_before_oom"]]
            cells.setdefault(cell, {"trigger": list(trigger) if trials else None})[rate] = {
                "trials": trials, "fired_before_oom": sum(1 for t in trials if t["fired_before_oom"]),
                "median_lead_ms": statistics.median(leads) if leads else None}
    armed = read_text(os.path.join(share, "defaults.err")) or ""
    if default and "host PSI trigger: \"" not in armed:
        errors.append("the default host trigger was not armed")
    if default and not any(c.get("trigger") == list(default) for c in cells.values()):
        errors.append("the default trigger %s was not among the triggers tried" % (default,))
    figures = {"default_trigger": list(default) if default else None}
    for cell, c in cells.items():
        for rate in RATES:
            if rate in c:
                figures["%s_%s_fired_before_oom" % (cell, rate)] = "%d/%d" % (c[rate]["fired_before_oom"],
                                                                              len(c[rate]["trials"]))
                figures["%s_%s_median_lead_ms" % (cell, rate)] = c[rate]["median_lead_ms"]
    done = os.path.exists(os.path.join(share, "done"))
    if not done:
        errors.append("the scenario did not finish")
    write_result(share, "host-pressure", done and not errors, figures, errors=errors, cells=cells)


if __name__ == "__main__":
    main(sys.argv[1])
