"""Host check for race: per cell (domain x rate x contender, plus several leakers and swap), each trial is
judged from the guest's records:
  win             every leaker died of the contender's signal (SIGKILL, or earlyoom's SIGTERM first: its log
                  names the leaker's pid),
                  the kernel's OOM killer did not fire (vmstat oom_kill unchanged, no OOM records in
                  kmsg), the innocent lives, and the contender signalled nothing else
  kernel kill     vmstat oom_kill rose during the trial
  innocent killed the innocent died (by the contender when its log names it, else by the kernel)
and the cell's figures are: trials, wins, trials with a kernel kill, kernel kills, innocents killed (and by
whom), the median time from the leak's start to the last leaker's death, and the leak rate reached.
Each cell's first leak is a warm-up (race.sh says why): judged, reported, not counted in its wins.
A trial whose leaker outlived leakwatch's SIGKILL stalled the guest (its reclaim looping on zram, no killer
acting) and was ended by the kernel's OOM killer invoked by hand: counted per cell as a stall, and an error
in an oomguard cell (keeping the node out of that state is its job).
Asserted: oomguard kills no innocent in any trial (the warm-up included); it wins at least 95 % of the trials at slow and medium
in both domains; at full speed on the host it wins at least as often as earlyoom; the config it ran is
examples/act-recommended.json unchanged (default refresh interval). Every trial must have its records
(leakwatch, vmstat before and after, the kernel log read): missing data fails, never counts as a win.
Writes SHARE/result.json."""
import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from act_check import intval, kmsg_oom_text, read_kv, read_leak  # noqa: E402
from daemon_check import read_daemon_log, read_stop  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

SENT = re.compile(r'sending (SIG\w+) to process (\d+) uid \d+ "([^"]*)"')
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def contender_kills(cdir, params, contender):
    """-> (pids the contender signalled in this trial, problems)."""
    if contender == "earlyoom":
        lines = (read_text(os.path.join(cdir, "earlyoom.log"), limit=10 ** 7) or "").splitlines()
        lo, hi = intval(params.get("earlyoom_line_before")), intval(params.get("earlyoom_line_after"))
        if lo is None or hi is None:
            return [], ["the earlyoom log offsets were not recorded"]
        return [int(m.group(2)) for line in lines[lo:hi] for m in [SENT.search(line)] if m], []
    if contender == "oomguard":
        events, bad = read_daemon_log(cdir)
        lo, hi = intval(params.get("daemon_line_before")), intval(params.get("daemon_line_after"))
        if lo is None or hi is None:
            return [], ["the daemon log offsets were not recorded"]
        problems = ["%d daemon lines are not JSON" % len(bad)] if bad else []
        pids = []
        for n, e in events:
            if lo <= n < hi and e.get("event") in ("decision", "pod_pressure") and e.get("result") == "killed":
                target = e.get("target") or {}
                if e.get("action") == "kill_cgroup":
                    problems.append("oomguard killed a whole cgroup %s" % e.get("cgroup"))
                pids.append(target.get("pid"))
        return pids, problems
    return [], []


def judge_trial(cdir, tdir, contender, leakers):
    p = read_kv(os.path.join(tdir, "params"))
    leaks = [read_leak(os.path.join(tdir, "leak-%d.txt" % i)) for i in range(1, leakers + 1)]
    trial = {"trial": os.path.basename(tdir), "errors": []}
    err = trial["errors"]
    if not all(leak.get("present") for leak in leaks):
        err.append("a leakwatch record is missing")
    before, after = p.get("vmstat_oom_kill_before", ""), p.get("vmstat_oom_kill_after", "")
    if not (before.isdigit() and after.isdigit()):
        err.append("vmstat oom_kill was not read: %r -> %r" % (before, after))
    if p.get("kmsg_read_ok") != "1":
        err.append("the kernel log was not read after the trial")
    if contender != "kernel" and p.get("contender_alive_after") != "1":
        err.append("%s itself died" % contender)
    kernel_kills = int(after) - int(before) if before.isdigit() and after.isdigit() else None
    koom = kmsg_oom_text(os.path.join(tdir, "kmsg-oom.txt"))
    leaker_pids = [leak.get("pid") for leak in leaks]
    innocent = intval(p.get("innocent_pid"))
    killed, problems = contender_kills(cdir, p, contender)
    err.extend(problems)
    innocent_alive = p.get("innocent_alive") == "1"
    trial.update({
        "leaker_pids": leaker_pids,
        "leaker_status": [leak.get("status") for leak in leaks],
        "timed_out": any(leak.get("timed_out") for leak in leaks),
        # The guest stalled: a leaker outlived leakwatch's SIGKILL by 5 s, and the kernel's OOM killer was
        # invoked by hand (sysrq f, once) to end it (leakwatch.c says why); that kill is in kernel_kills.
        "stalled": any(leak.get("stalled") for leak in leaks),
        "kernel_kills": kernel_kills,
        "kernel_oom_records": len(koom),
        "contender_killed": killed,
        "innocent_alive": innocent_alive,
        "innocent_killed_by_contender": innocent in killed,
    })
    starts = [leak.get("start_real") for leak in leaks if leak.get("start_real") is not None]
    deaths = [leak.get("death_real") for leak in leaks if leak.get("death_real") is not None]
    if starts and len(deaths) == len(leaks):
        trial["leak_to_death_ms"] = round((max(deaths) - min(starts)) * 1000.0, 1)
    # The rate reached: what the first leaker held (its peak charge in a memcg, its last RSS on the host)
    # over its life.
    first = leaks[0]
    held_kb = (first.get("peak_current_bytes") or 0) / 1024.0 if first.get("peak_current_bytes") else first.get("last_rss_kb")
    if held_kb and first.get("start_real") is not None and first.get("death_real") is not None:
        life = first["death_real"] - first["start_real"]
        if life > 0:
            trial["rate_mib_s"] = round(held_kb / 1024.0 / life, 1)
    trial["win"] = (not err and kernel_kills == 0 and not koom and innocent_alive
                    and all(leak.get("status") in ("signaled 9", "signaled 15") for leak in leaks)
                    and all(pid in killed for pid in leaker_pids)
                    and all(pid in leaker_pids for pid in killed))
    return trial


def judge_cell(share, name):
    cdir = os.path.join(share, "cells", name)
    p = read_kv(os.path.join(cdir, "params"))
    contender, leakers = p.get("contender"), intval(p.get("leakers"), 1)
    cell = {"cell": name, "domain": p.get("domain"), "rate": p.get("rate"), "contender": contender,
            "leakers": leakers, "errors": []}
    if p.get("done") != "1":
        cell["errors"].append("the cell did not finish")
    trials = sorted((d for d in os.listdir(cdir) if d.startswith("trial-")), key=lambda d: int(d.split("-")[1])) \
        if os.path.isdir(cdir) else []
    judged = [judge_trial(cdir, os.path.join(cdir, t), contender, leakers) for t in trials]
    # The warm-up leak (race.sh: the contender's path runs cold under TCG) is judged but not counted:
    # its data must be there, and an innocent it cost is counted below like any other.
    warmup = judge_trial(cdir, os.path.join(cdir, "warmup"), contender, leakers) \
        if os.path.isdir(os.path.join(cdir, "warmup")) else None
    if warmup is None:
        cell["errors"].append("the warm-up leak did not run")
    every = judged + ([warmup] if warmup else [])  # the warm-up included
    for t in every:
        cell["errors"].extend("%s: %s" % (t["trial"], e) for e in t["errors"])
    if contender == "oomguard":
        stop = read_stop(cdir)
        if stop.get("exit_code") != "0":
            cell["errors"].append("oomguard's exit code after SIGTERM: %s" % stop.get("exit_code"))
        config = read_text(os.path.join(cdir, "daemon-config.json"), limit=10 ** 5)
        try:
            with open(os.path.join(REPO, "examples", "act-recommended.json")) as f:
                recommended = json.load(f)
            if name.startswith("memcg-several-"):
                # The one tuned cell (race.sh says why): the recommended config plus a kill cap of 60.
                recommended = dict(recommended, policy={"max_kills_per_minute": 60})
            if json.loads(config or "null") != recommended:
                cell["errors"].append("oomguard did not run examples/act-recommended.json as it is%s" % (
                    " (with the several cell's kill cap)" if name.startswith("memcg-several-") else ""))
        except (OSError, ValueError) as e:
            cell["errors"].append("the config cannot be compared: %s" % e)
    times = [t["leak_to_death_ms"] for t in judged if "leak_to_death_ms" in t]
    rates = [t["rate_mib_s"] for t in judged if "rate_mib_s" in t]
    cell.update({
        "trials": len(judged),
        "wins": sum(1 for t in judged if t["win"]),
        "trials_with_kernel_kill": sum(1 for t in judged if t["kernel_kills"]),
        "kernel_kills": sum(t["kernel_kills"] or 0 for t in judged),
        "innocents_killed": sum(1 for t in judged if not t["innocent_alive"]),
        "innocents_killed_by_contender": sum(1 for t in every if t["innocent_killed_by_contender"]),
        "stalls": sum(1 for t in every if t["stalled"]),
        "warmup_won": warmup["win"] if warmup else None,
        "median_leak_to_death_ms": round(statistics.median(times), 1) if times else None,
        "median_rate_mib_s": round(statistics.median(rates), 1) if rates else None,
        "trial_details": every,
    })
    return cell


def main(share):
    expected_trials = intval((read_text(os.path.join(share, "trials")) or "").strip(), 0)
    cells_dir = os.path.join(share, "cells")
    names = sorted(os.listdir(cells_dir)) if os.path.isdir(cells_dir) else []
    cells = {name: judge_cell(share, name) for name in names}
    errors = []
    if not os.path.exists(os.path.join(share, "race.done")):
        errors.append("the scenario did not finish")
    if expected_trials < 5:
        errors.append("%d trials per cell; at least 5 are needed" % expected_trials)
    expected = ["%s-%s-%s" % (d, r, c) for d in ("memcg", "host") for r in ("slow", "medium", "full")
                for c in ("kernel", "earlyoom", "oomguard")] + ["memcg-several-kernel", "memcg-several-oomguard"]
    if not os.path.exists(os.path.join(share, "swap.skipped")):
        expected += ["host-swap-%s" % c for c in ("kernel", "earlyoom", "oomguard")]
    for name in expected:
        if name not in cells:
            errors.append("cell %s is missing" % name)
        elif cells[name]["trials"] != expected_trials:
            errors.append("cell %s ran %d trials of %d" % (name, cells[name]["trials"], expected_trials))
    for cell in cells.values():
        errors.extend("%s: %s" % (cell["cell"], e) for e in cell["errors"])
        if cell["contender"] == "oomguard" and cell["stalls"]:
            errors.append("%s: the guest stalled in %d trials (a leaker outlived its SIGKILL; see sysrq f)" % (
                cell["cell"], cell["stalls"]))
        if cell["contender"] == "oomguard" and cell["innocents_killed_by_contender"]:
            errors.append("%s: oomguard killed the innocent in %d trials" % (cell["cell"], cell["innocents_killed_by_contender"]))
    for domain in ("memcg", "host"):
        for rate in ("slow", "medium"):
            cell = cells.get("%s-%s-oomguard" % (domain, rate))
            if cell and cell["trials"] and cell["wins"] < 0.95 * cell["trials"]:
                errors.append("%s: oomguard won %d of %d (at least 95%% required)" % (cell["cell"], cell["wins"], cell["trials"]))
    # Several leakers at once: one victim at a time, the next as soon as the last one's memory is back
    # (5/5 in the lab once a reaped victim released its domain; 1/5 before, held by the kill cap).
    # (a figure, not asserted: the reap-time release that made it 5/5 is withdrawn, see executor.cpp)
    ours, theirs = cells.get("host-full-oomguard"), cells.get("host-full-earlyoom")
    if ours and theirs and ours["wins"] < theirs["wins"]:
        errors.append("host-full: oomguard won %d, earlyoom %d" % (ours["wins"], theirs["wins"]))
    figures = {"trials_per_cell": expected_trials}
    for name, cell in cells.items():
        figures[name] = "%d/%d won, kernel %d, innocents %d, median %s ms, %s MiB/s; warm-up %s%s" % (
            cell["wins"], cell["trials"], cell["kernel_kills"], cell["innocents_killed"],
            cell["median_leak_to_death_ms"], cell["median_rate_mib_s"],
            {True: "won", False: "lost", None: "missing"}[cell["warmup_won"]],
            "; guest stalled %d times (sysrq f)" % cell["stalls"] if cell["stalls"] else "")
    summary = {name: {k: v for k, v in cell.items() if k != "trial_details"} for name, cell in cells.items()}
    write_result(share, "race", not errors, figures, errors=errors, cells=summary,
                 trials={name: cell["trial_details"] for name, cell in cells.items()})
    for e in errors:
        print("race: " + e)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
