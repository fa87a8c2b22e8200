"""Host check for group-kill: oomguard set memory.oom.group=1 on /gk/grp from its rule, then killed
the whole cgroup (decision action "kill_cgroup", cgroup /gk/grp, result "killed", target the
leaker) before the kernel had to: every task of /gk/grp died, cgroup.events says populated 0, the
keeper outside the group lives, memory.events oom / oom_kill / oom_group_kill stay 0 in /gk and
/gk/grp, no kernel OOM record, no kernel_oom_kill line. Writes SHARE/result.json."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import (epoch, in_range, intval, kmsg_oom_text, memory_events, ms, read_kv, read_leak,  # noqa: E402
                       slim)
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import write_result  # noqa: E402


def main(share):
    events, bad = read_daemon_log(share)
    lifecycle, errors = check_lifecycle(share, events, bad)
    p = read_kv(os.path.join(share, "params"))
    leak = read_leak(os.path.join(share, "leak.txt"))
    leaker = leak.get("pid")
    members = {"member1": intval(p.get("member1_pid")), "member2": intval(p.get("member2_pid")), "leaker": leaker}
    if not os.path.exists(os.path.join(share, "run.done")):
        errors.append("the guest script did not finish")

    # oomguard applied the rule's memory.oom.group.
    prot = [e for _, e in events if e.get("event") == "protection" and e.get("cgroup") == "/gk/grp"
            and "memory.oom.group" in e]
    if p.get("oom_group_before") != "0":
        errors.append("memory.oom.group of /gk/grp was %s before the daemon started, expected 0" % p.get("oom_group_before"))
    if not prot or prot[0].get("memory.oom.group") is not True or prot[0].get("ok") is not True:
        errors.append("no successful protection line setting memory.oom.group on /gk/grp: %s" % prot[:1])
    if p.get("oom_group_applied") != "1":
        errors.append("memory.oom.group of /gk/grp read %s after the daemon applied its rule" % p.get("oom_group_applied"))

    leak_line = intval(p.get("daemon_line_leak"), 0)
    lines = in_range(events, leak_line)
    acting = [e for _, e in lines if e.get("event") == "decision" and e.get("action") not in (None, "none")]
    group_kills = [e for e in acting if e.get("action") == "kill_cgroup"]
    kill = group_kills[0] if group_kills else None
    if kill is None:
        errors.append("no decision with action kill_cgroup (acting decisions: %s)" % [slim(e) for e in acting[:3]])
    else:
        if kill.get("cgroup") != "/gk/grp":
            errors.append("kill_cgroup of %r, expected /gk/grp" % kill.get("cgroup"))
        if kill.get("result") != "killed":
            errors.append("kill_cgroup result %r (detail %r), expected killed" % (kill.get("result"), kill.get("detail")))
        if (kill.get("domain") or {}).get("cgroup") != "/gk":
            errors.append("the decision's domain is %s, expected /gk" % kill.get("domain"))
        target = kill.get("target") or {}
        if target.get("pid") != leaker or target.get("comm") != "leaker":
            errors.append("the group kill's target is pid %s (%s), expected the leaker %s" % (target.get("pid"), target.get("comm"), leaker))
        if "cgroup.kill" not in str(kill.get("detail")):
            errors.append("the detail does not say cgroup.kill was written: %r" % kill.get("detail"))
    if len(acting) != 1:
        errors.append("%d acting decisions, expected exactly one (the group kill): %s" % (len(acting), [slim(e) for e in acting[:4]]))

    if not leak.get("killed_by_sigkill") or leak.get("timed_out") != 0:
        errors.append("the leaker ended with %r (timed_out %s), expected SIGKILL" % (leak.get("status"), leak.get("timed_out")))
    for name in ("member1", "member2"):
        if p.get("%s_alive_after" % name) != "0":
            errors.append("%s (pid %s) of /gk/grp is still alive" % (name, members[name]))
    if p.get("grp_procs_after", "").strip():
        errors.append("/gk/grp still has processes: %s" % p.get("grp_procs_after"))
    cev = read_kv(os.path.join(share, "grp.cgroup.events"))
    if cev.get("populated") != "0":
        errors.append("/gk/grp cgroup.events: populated %s, expected 0" % cev.get("populated"))
    if p.get("keeper_alive_after") != "1":
        errors.append("the keeper in /gk/keep (outside the group) died")

    mev = {"gk": memory_events(os.path.join(share, "gk.memory.events")),
           "gk_grp": memory_events(os.path.join(share, "grp.memory.events"))}
    for where, counters in mev.items():
        if not counters:
            errors.append("no memory.events snapshot of %s" % where)
        elif counters.get("oom") != 0 or counters.get("oom_kill") != 0 or counters.get("oom_group_kill") != 0:
            errors.append("the kernel's OOM killer acted (%s memory.events %s)" % (where, counters))
    koom = kmsg_oom_text(os.path.join(share, "kmsg-oom.txt"))
    if koom:
        errors.append("the kernel logged OOM-killer records: %s" % koom[:3])
    if any(e.get("event") in ("kernel_oom_kill", "kernel_oom_group_kill") for _, e in events):
        errors.append("the daemon logged a kernel OOM kill")
    if p.get("vmstat_oom_kill") != "0":
        errors.append("/proc/vmstat oom_kill is %s" % p.get("vmstat_oom_kill"))
    if p.get("daemon_alive_after") != "1":
        errors.append("the daemon was not alive after the group kill")

    t_kill = epoch(kill.get("time")) if kill else None
    figures = {
        "group_killed": bool(kill and kill.get("result") == "killed"),
        "tasks_killed": sum(1 for n in ("member1", "member2") if p.get("%s_alive_after" % n) == "0")
        + (1 if leak.get("killed_by_sigkill") else 0),
        "keeper_alive": p.get("keeper_alive_after") == "1",
        "oom_kill": mev["gk"].get("oom_kill"),
        "oom_group_kill": mev["gk"].get("oom_group_kill"),
        "reason": kill.get("reason") if kill else None,
        "reaction_us": kill.get("reaction_us") if kill else None,
        "decision_to_leaker_death_ms": ms(t_kill, leak.get("death_real")),
        "leak_to_death_s": round(leak["death_real"] - leak["start_real"], 3)
        if "death_real" in leak and "start_real" in leak else None,
        "peak_domain_mib": round(leak["peak_current_bytes"] / 2 ** 20, 1) if isinstance(leak.get("peak_current_bytes"), int) else None,
        "stop_ms": lifecycle.get("stop_ms"),
    }
    write_result(share, "group-kill", not errors, figures, errors=errors, kill_decision=slim(kill), params=p,
                 leak=leak, memory_events=mev, protection_lines=prot, lifecycle=lifecycle)


if __name__ == "__main__":
    main(sys.argv[1])
