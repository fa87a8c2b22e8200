"""Host check for cgroupns: oomguard ran in its own cgroup namespace (/guard), and still placed every
process in the tree it reads: its one acting decision killed the leaker (target cgroup /work/leak), and
the bigger "big" in /work/keep, omitted by the rule, lived; the kernel's OOM killer did not fire.
Writes SHARE/result.json."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import in_range, intval, kmsg_oom_text, read_kv, read_leak, slim  # noqa: E402
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import write_result  # noqa: E402


def main(share):
    events, bad = read_daemon_log(share)
    lifecycle, errors = check_lifecycle(share, events, bad)
    p = read_kv(os.path.join(share, "params"))
    leak = read_leak(os.path.join(share, "leak.txt"))
    leaker = leak.get("pid")
    if not os.path.exists(os.path.join(share, "run.done")):
        errors.append("the guest script did not finish")
    # The premise: oomguard in a cgroup namespace of its own, rooted at /guard; big is the kernel's
    # first choice at the crossing (bigger than the leaker can be then, by 1.2 x at least).
    if p.get("daemon_in_guard") != "1" or p.get("daemon_cgroupns_differs") != "1":
        errors.append("scenario premise not met: oomguard was not in a cgroup namespace of its own at /guard (%s, %s)"
                      % (p.get("daemon_in_guard"), p.get("daemon_cgroupns_differs")))
    try:
        leaker_mib = (int(p["mem_available_mib_before_leak"]) - int(p["pcp_mib_before_leak"]) -
                      0.10 * int(p["mem_total_mib"]))
        big_mib = int(p["big_rss_kb"]) / 1024
        if big_mib < 1.2 * leaker_mib:
            errors.append("scenario premise not met: big (%.0f MiB) is not clearly bigger than the leaker at the "
                          "crossing (about %.0f MiB)" % (big_mib, leaker_mib))
    except (KeyError, TypeError, ValueError):
        errors.append("the sizes before the leak were not recorded")
    lines = in_range(events, intval(p.get("daemon_line_leak"), 0))
    acting = [e for _, e in lines if e.get("event") == "decision" and e.get("action") not in (None, "none")]
    kills = [e for e in acting if e.get("result") == "killed"]
    kill = kills[0] if kills else None
    target = (kill or {}).get("target") or {}
    if kill is None:
        errors.append("oomguard killed nothing (acting decisions: %s)" % [slim(e) for e in acting[:3]])
    else:
        if target.get("pid") != leaker or target.get("cgroup") != "/work/leak":
            errors.append("oomguard killed pid %s (%s) in %r, expected the leaker %s in /work/leak"
                          % (target.get("pid"), target.get("comm"), target.get("cgroup"), leaker))
    if len(acting) != 1:
        errors.append("%d acting decisions, expected one: %s" % (len(acting), [slim(e) for e in acting[:3]]))
    if p.get("big_alive_after") != "1":
        errors.append("big (in /work/keep, omitted by rule) died")
    if not leak.get("killed_by_sigkill") or leak.get("timed_out") != 0:
        errors.append("the leaker ended with %r (timed_out %s), expected SIGKILL" % (leak.get("status"), leak.get("timed_out")))
    if p.get("vmstat_oom_kill_before") != p.get("vmstat_oom_kill_after") or not (p.get("vmstat_oom_kill_after") or "").isdigit():
        errors.append("the kernel's OOM killer fired: vmstat oom_kill %s -> %s" % (
            p.get("vmstat_oom_kill_before"), p.get("vmstat_oom_kill_after")))
    koom = kmsg_oom_text(os.path.join(share, "kmsg-oom.txt"))
    if koom:
        errors.append("the kernel logged OOM-killer records: %s" % koom[:3])
    figures = {
        "killed_pid_is_leaker": target.get("pid") == leaker if kill else False,
        "killed_cgroup": target.get("cgroup"),
        "big_alive": p.get("big_alive_after") == "1",
        "reaction_us": (kill or {}).get("reaction_us"),
        "stop_ms": lifecycle.get("stop_ms"),
    }
    write_result(share, "cgroupns", not errors, figures, errors=errors, kill_decision=slim(kill), params=p,
                 leak=leak, lifecycle=lifecycle)


if __name__ == "__main__":
    main(sys.argv[1])
