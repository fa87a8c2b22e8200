"""Host check for protection-holds: under host memory pressure only unprotected processes die.
Phase 1 (oomguard, kill-worst when MemAvailable < 6 %): oomguard wrote oom_score_adj -998 to the
"critical" task, killed the leaker (a decision with result "killed", target the leaker), never acted on
crit, omit or pinned, all three live, and the kernel's OOM killer did not fire. Phase 2 (the daemon
stopped, omit gone): the kernel's OOM killer killed an unprotected task, and crit (-998, written by
oomguard) and pinned (-1000) live. Writes SHARE/result.json."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import epoch, in_range, intval, kernel_oom, kmsg_oom_text, ms, read_kv, read_leak, slim  # noqa: E402
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

PROTECTED = ("crit", "omit", "pinned")


def main(share):
    events, bad = read_daemon_log(share)
    lifecycle, errors = check_lifecycle(share, events, bad)
    p = read_kv(os.path.join(share, "params"))
    tasks = {}
    for line in (read_text(os.path.join(share, "tasks")) or "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            tasks[parts[0]] = {"pid": int(parts[1]), "rss_kb": int(parts[2])}
    leak = read_leak(os.path.join(share, "leak.txt"))
    leaker = leak.get("pid")
    protected_pids = {tasks[t]["pid"]: t for t in PROTECTED if t in tasks}
    if not os.path.exists(os.path.join(share, "run.done")):
        errors.append("the guest script did not finish")
    if set(tasks) != {"crit", "omit", "pinned", "plain"}:
        errors.append("the sleeping tasks were not all started: %s" % sorted(tasks))

    # The protections are in force before the leak.
    crit = tasks.get("crit", {}).get("pid")
    prot = [e for _, e in events if e.get("event") == "protection" and e.get("pid") == crit]
    if not prot or prot[0].get("oom_score_adj") != -998 or prot[0].get("ok") is not True:
        errors.append("no successful protection line writing oom_score_adj -998 for crit (pid %s): %s" % (crit, prot[:1]))
    if p.get("crit_adj_applied") != "-998":
        errors.append("crit's oom_score_adj was %s before the leak, expected -998 (protection critical)" % p.get("crit_adj_applied"))
    if p.get("pinned_adj") != "-1000":
        errors.append("pinned's oom_score_adj was %s, expected -1000" % p.get("pinned_adj"))
    wrong = [e for _, e in events if e.get("event") == "protection" and e.get("pid") is not None and e.get("pid") != crit]
    if wrong:
        errors.append("oomguard changed oom_score_adj of other tasks: %s" % wrong[:3])

    # The premise: at the crossing the leaker is clearly bigger than plain, the only other task
    # kill-worst may take (MemAvailable before the leak, less the per-CPU lists mem_available_mib adds,
    # less the 6 % threshold).
    try:
        expect_mib = (int(p["mem_available_mib_before_leak"]) - int(p["pcp_mib_before_leak"]) -
                      0.06 * int(p["mem_total_mib"]))
        plain_mib = tasks["plain"]["rss_kb"] / 1024
        if expect_mib < 1.5 * plain_mib:
            errors.append("scenario premise not met: the leaker would hold about %.0f MiB at the crossing, not 1.5 x "
                          "plain's %.0f MiB" % (expect_mib, plain_mib))
    except (KeyError, TypeError, ValueError):
        errors.append("the sizes before the leak were not recorded")

    # Phase 1: oomguard acts.
    start = intval(p.get("daemon_line_leak"), 0)
    end = intval(p.get("daemon_line_phase1_end"))
    lines = in_range(events, start, end)
    acting = [e for _, e in lines if e.get("event") == "decision" and e.get("action") not in (None, "none")]
    kills = [e for e in acting if e.get("result") == "killed"]
    kill = kills[0] if kills else None
    if kill is None:
        errors.append("phase 1: oomguard killed nothing (acting decisions: %s)" % [slim(e) for e in acting[:3]])
    else:
        target = kill.get("target") or {}
        if target.get("pid") != leaker:
            errors.append("phase 1: oomguard's first kill was pid %s (%s), expected the leaker %s"
                          % (target.get("pid"), target.get("comm"), leaker))
        if (kill.get("domain") or {}).get("kind") != "host" or kill.get("policy") != "kill-worst":
            errors.append("phase 1: the kill is not a host kill-worst decision: domain %s policy %s"
                          % (kill.get("domain"), kill.get("policy")))
        if not str(kill.get("reason", "")).startswith("MemAvailable"):
            errors.append("phase 1: the kill's reason is %r, expected the MemAvailable threshold" % kill.get("reason"))
    if len(acting) != 1:
        errors.append("phase 1: %d acting decisions, expected exactly one (the leaker's kill): %s"
                      % (len(acting), [slim(e) for e in acting[:3]]))
    if p.get("plain_alive_phase1") != "1":
        errors.append("phase 1: the unprotected bystander (plain) died: oomguard's one kill must be the leaker")
    on_protected = [slim(e) for e in acting if (e.get("target") or {}).get("pid") in protected_pids]
    if on_protected:
        errors.append("oomguard acted on a protected task: %s" % on_protected[:2])
    for t in PROTECTED:
        if p.get("%s_alive_phase1" % t) != "1":
            errors.append("phase 1: %s (protected) died" % t)
    if not leak.get("killed_by_sigkill") or leak.get("timed_out") != 0:
        errors.append("phase 1: the leaker ended with %r (timed_out %s), expected SIGKILL" % (leak.get("status"), leak.get("timed_out")))
    k1 = kmsg_oom_text(os.path.join(share, "kmsg-oom-phase1.txt"))
    if k1 or p.get("vmstat_oom_kill_phase1") != "0":
        errors.append("phase 1: the kernel's OOM killer fired before oomguard acted (vmstat oom_kill %s): %s"
                      % (p.get("vmstat_oom_kill_phase1"), k1[:3]))
    if p.get("daemon_alive_phase1") != "1":
        errors.append("phase 1: the daemon died")

    # Phase 2: the kernel acts (the daemon is stopped; omit was removed by the script).
    reports = kernel_oom(os.path.join(share, "kmsg-phase2.txt"))
    killed2 = [k for r in reports for k in r["killed"]]
    if not killed2:
        errors.append("phase 2: the kernel killed nothing (%s burst pieces)" % p.get("burst_pieces"))
    for k in killed2:
        if k["pid"] in protected_pids:
            errors.append("phase 2: the kernel killed protected %s (pid %s)" % (protected_pids[k["pid"]], k["pid"]))
    for t in ("crit", "pinned"):
        if p.get("%s_alive_end" % t) != "1":
            errors.append("at the end: %s (protected) is dead" % t)

    died = []
    if leak.get("killed_by_sigkill"):
        died.append("leaker (oomguard)")
    died += ["%s (kernel)" % k["comm"] for k in killed2]
    if p.get("plain_alive_phase1") == "0":
        died.append("plain")
    if not died:
        errors.append("no unprotected task died")
    t_kill = epoch(kill.get("time")) if kill else None
    figures = {
        "mem_available_mib_start": intval(p.get("mem_available_mib_start")),
        "oomguard_killed": (kill.get("target") or {}).get("comm") if kill else None,
        "kernel_next_victim_at_kill": (kill.get("victim") or {}).get("comm") if kill else None,
        "kernel_killed_phase2": [k["comm"] for k in killed2],
        "unprotected_died": died,
        "protected_alive_end": {t: p.get("%s_alive_end" % t) == "1" for t in ("crit", "pinned")},
        "omit_alive_phase1": p.get("omit_alive_phase1") == "1",
        "crit_adj": intval(p.get("crit_adj_applied")),
        "reaction_us": kill.get("reaction_us") if kill else None,
        "cross_to_death_ms": ms(leak.get("cross_real"), leak.get("death_real")),
        "decision_to_death_ms": ms(t_kill, leak.get("death_real")),
        "leak_to_death_s": round(leak["death_real"] - leak["start_real"], 3)
        if "death_real" in leak and "start_real" in leak else None,
        "min_available_mib_phase1": round(leak["min_available_kb"] / 1024, 1) if isinstance(leak.get("min_available_kb"), int) else None,
        "stop_ms": lifecycle.get("stop_ms"),
    }
    write_result(share, "protection-holds", not errors, figures, errors=errors, tasks=tasks, params=p, leak=leak,
                 kill_decision=slim(kill), acting_decisions=[slim(e) for e in acting],
                 kernel_reports_phase2=reports, lifecycle=lifecycle)


if __name__ == "__main__":
    main(sys.argv[1])
