"""Host check for beat-the-kernel: in each sub-run oomguard (mode act, defaults) killed the leaker
itself (a decision with result "killed" whose target is the leaker, and the leaker died of SIGKILL), the
neighbour lives, the cgroup's memory.events oom and oom_kill stay 0, the kernel wrote no OOM report and
the daemon logged no kernel_oom_kill. kill-worst must pick the leaker as the biggest; kill-allocating
(alloc) must pick the leaker while the kernel's next victim is the (bigger) neighbour, whose start-up
lies inside the trend window.
Timing and cost are asserted, not only recorded: the cgroup's peak charge stays within PEAK_SLACK_MIB
of memory.high (worst, alloc: the kernel throttles there; a late kill lets it climb towards memory.max)
or of the rule's threshold (nohigh: nothing throttles; at 25 MiB/s the slack is 0.3 s of leak); in
worst and alloc the leaker dies within HIGH_TO_DEATH_LIMIT_MS of the high event (leakwatch's first
sight of it, or the daemon's memory_event line when the leaker died before leakwatch polled; measured
9.7-50 ms in the VM; a kill seconds late fails); the killing decision's trigger is a memory.events high
rise (worst, alloc) or the headroom threshold (nohigh); and no decision in the domain comes before the
kill. Writes SHARE/result.json."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import (decisions, epoch, in_range, intval, kmsg_oom_text, memory_events, ms, read_kv,  # noqa: E402
                       read_leak, slim)
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import write_result  # noqa: E402

SUBRUNS = {"worst": "kill-worst", "alloc": "kill-allocating", "nohigh": "kill-allocating"}
# nohigh: the rule's threshold, memory.max 160 MiB * (1 - headroom_below 0.10)
NOHIGH_THRESHOLD_MIB = 144
PEAK_SLACK_MIB = 8
HIGH_TO_DEATH_LIMIT_MS = 1000


def check_subrun(share, name, events):
    d = os.path.join(share, "runs", name)
    p = read_kv(os.path.join(d, "params"))
    leak = read_leak(os.path.join(d, "leak.txt"))
    domain = p.get("cgroup", "/btk-" + name)
    run = {"name": name, "policy": SUBRUNS[name], "domain": domain, "params": p, "leak": leak, "errors": []}
    err = run["errors"]
    if not p:
        err.append("no params: the sub-run did not run")
        return run
    start, end = intval(p.get("daemon_line_start"), 0), intval(p.get("daemon_line_end"))
    leak_line = intval(p.get("daemon_line_leak"), start)
    lines = in_range(events, start, end)
    leaker = leak.get("pid")
    neighbour = intval(p.get("neighbour_pid"))
    run["leaker_pid"], run["neighbour_pid"] = leaker, neighbour

    if p.get("daemon_saw_domain") != "1":
        err.append("the daemon logged no next_victim for %s within 15 s" % domain)
    if not leak["present"]:
        err.append("no leakwatch record")
    if leak.get("timed_out") != 0:
        err.append("the leaker was still running after 40 s (leakwatch killed it): nobody acted")
    if not leak["killed_by_sigkill"]:
        err.append("the leaker ended with %r, expected SIGKILL" % leak.get("status"))

    doms = decisions(lines, domain)
    kills = [(n, e) for n, e in doms if e.get("result") == "killed"]
    acted = [(n, e) for n, e in lines if e.get("event") == "decision" and e.get("action") not in (None, "none")]
    run["decisions"] = len(doms)
    run["decision_results"] = [e.get("result") for _, e in doms]
    kill = kills[0][1] if kills else None
    run["kill_decision"] = slim(kill)
    if kill is None:
        err.append("no decision with result \"killed\" for %s (results: %s)" % (domain, run["decision_results"]))
    else:
        target = kill.get("target") or {}
        if kill.get("action") != "kill":
            err.append("the killing decision has action %r, expected \"kill\"" % kill.get("action"))
        if kill.get("policy") != SUBRUNS[name]:
            err.append("the killing decision has policy %r, expected %r" % (kill.get("policy"), SUBRUNS[name]))
        if target.get("pid") != leaker or target.get("comm") != "leaker":
            err.append("oomguard killed pid %s (%s), the leaker is pid %s" % (target.get("pid"), target.get("comm"), leaker))
        trigger = kill.get("trigger") or {}
        if name == "nohigh":
            if trigger.get("kind") != "threshold" or "headroom" not in str(kill.get("reason")):
                err.append("the kill was not made for the headroom threshold: trigger %s, reason %s" % (
                    trigger, kill.get("reason")))
        elif trigger.get("kind") != "memory_event" or "high" not in (trigger.get("rose") or {}):
            err.append("the kill was not triggered by a memory.events high rise: %s" % kill.get("trigger"))
        victim = (kill.get("victim") or {}).get("pid")
        run["kernel_next_victim"] = victim
        if name == "worst" and victim != leaker:
            err.append("kill-worst: the kernel's next victim is pid %s, expected the leaker %s (the biggest)" % (victim, leaker))
        if name == "alloc" and victim != neighbour:
            err.append("kill-allocating: the kernel's next victim is pid %s, expected the bigger neighbour %s "
                       "(the sub-run must show a choice the kernel would not make)" % (victim, neighbour))
    others = [(n, e) for n, e in acted if (e.get("target") or {}).get("pid") != leaker or e.get("result") != "killed"]
    if others:
        err.append("%d other acting decisions (first: line %d, %s %s target %s)" % (
            len(others), others[0][0], others[0][1].get("action"), others[0][1].get("result"), others[0][1].get("target")))
    if p.get("neighbour_alive_after") != "1":
        err.append("the neighbour (pid %s) did not survive" % neighbour)

    mev = memory_events(os.path.join(d, "memory.events"))
    run["memory_events"] = mev
    if not mev:
        err.append("no memory.events snapshot")
    elif mev.get("oom") != 0 or mev.get("oom_kill") != 0:
        err.append("the kernel's OOM killer acted in %s: memory.events %s" % (domain, mev))
    koom = kmsg_oom_text(os.path.join(d, "kmsg-oom.txt"))
    run["kernel_oom_records"] = koom[:20]
    if koom:
        err.append("the kernel logged OOM-killer records: %s" % koom[:3])
    klines = [e for _, e in lines if e.get("event") == "kernel_oom_kill"]
    if klines:
        err.append("the daemon logged %d kernel_oom_kill lines" % len(klines))
    if p.get("vmstat_oom_kill_before") != p.get("vmstat_oom_kill_after"):
        err.append("/proc/vmstat oom_kill went from %s to %s" % (p.get("vmstat_oom_kill_before"), p.get("vmstat_oom_kill_after")))
    if p.get("daemon_alive_after") != "1":
        err.append("the daemon was not alive after the sub-run")

    # Timings.
    first_event = next((e for n, e in lines if n >= leak_line and e.get("event") == "memory_event"
                        and e.get("cgroup") == domain and e.get("file") == "memory.events"
                        and "high" in (e.get("rose") or {})), None)
    t_event = epoch(first_event.get("time")) if first_event else None
    t_kill = epoch(kill.get("time")) if kill else None
    run["timing"] = {
        "reaction_us": kill.get("reaction_us") if kill else None,
        "event_line_to_kill_decision_ms": ms(t_event, t_kill),
        "event_line_to_leaker_death_ms": ms(t_event, leak.get("death_real")),
        "high_seen_by_poll_to_death_ms": ms(leak.get("high_real"), leak.get("death_real")),
        "leak_start_to_death_s": round(leak["death_real"] - leak["start_real"], 3)
        if "death_real" in leak and "start_real" in leak else None,
        "decisions_before_the_kill": sum(1 for n, e in doms if kills and n < kills[0][0]),
        "leaker_rss_mib_at_last_poll": round(leak["last_rss_kb"] / 1024, 1) if isinstance(leak.get("last_rss_kb"), int) else None,
        "peak_cgroup_mib": round(leak["peak_current_bytes"] / 2 ** 20, 1) if isinstance(leak.get("peak_current_bytes"), int) else None,
        "chosen_because": kill.get("chosen_because") if kill else None,
    }
    timing = run["timing"]
    limit_mib = NOHIGH_THRESHOLD_MIB if name == "nohigh" else intval(p.get("high_mib"))
    limit_name = "the headroom threshold" if name == "nohigh" else "memory.high"
    peak = timing["peak_cgroup_mib"]
    if peak is None or limit_mib is None:
        err.append("no peak charge or %s recorded (peak %s, limit %s)" % (limit_name, peak, limit_mib))
    elif peak > limit_mib + PEAK_SLACK_MIB:
        err.append("the cgroup peaked at %.1f MiB, more than %s %d MiB + %d: the kill came late" % (
            peak, limit_name, limit_mib, PEAK_SLACK_MIB))
    if name != "nohigh":
        # From leakwatch's 10 ms poll of memory.events; a leaker killed before that poll saw the rise
        # has none, and then the daemon's own memory_event line times the event.
        late = timing["high_seen_by_poll_to_death_ms"]
        if late is None:
            late = timing["event_line_to_leaker_death_ms"]
        if late is None:
            err.append("no time from the high event to the leaker's death")
        elif late > HIGH_TO_DEATH_LIMIT_MS:
            err.append("the leaker died %.1f ms after the high event, limit %d ms" % (late, HIGH_TO_DEATH_LIMIT_MS))
    if timing["decisions_before_the_kill"]:
        err.append("%d decisions in %s came before the kill: the first high event was not acted on" % (
            timing["decisions_before_the_kill"], domain))
    run["passed"] = not err
    return run


def main(share):
    events, bad = read_daemon_log(share)
    lifecycle, life_errors = check_lifecycle(share, events, bad)
    runs = [check_subrun(share, name, events) for name in SUBRUNS]
    done = os.path.exists(os.path.join(share, "runs.done"))
    figures = {"subruns": len(runs), "subruns_passed": sum(1 for r in runs if r["passed"]), "completed": done,
               "stop_ms": lifecycle.get("stop_ms")}
    for r in runs:
        t = r.get("timing", {})
        figures["%s_reaction_us" % r["name"]] = t.get("reaction_us")
        figures["%s_event_to_kill_decision_ms" % r["name"]] = t.get("event_line_to_kill_decision_ms")
        figures["%s_event_to_death_ms" % r["name"]] = t.get("event_line_to_leaker_death_ms")
        figures["%s_high_polled_to_death_ms" % r["name"]] = t.get("high_seen_by_poll_to_death_ms")
        figures["%s_leak_to_death_s" % r["name"]] = t.get("leak_start_to_death_s")
        figures["%s_peak_cgroup_mib" % r["name"]] = t.get("peak_cgroup_mib")
        figures["%s_oom_kill" % r["name"]] = (r.get("memory_events") or {}).get("oom_kill")
    passed = done and not life_errors and all(r["passed"] for r in runs)
    write_result(share, "beat-the-kernel", passed, figures, lifecycle=lifecycle, lifecycle_errors=life_errors,
                 failures=[{"subrun": r["name"], "errors": r["errors"]} for r in runs if r["errors"]], runs=runs)


if __name__ == "__main__":
    main(sys.argv[1])
