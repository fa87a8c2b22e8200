"""Host check for earlyoom-side-by-side: in every round the killer (earlyoom 1.7 alone, or oomguard alone
in mode act) killed the leaker and nothing else: the leaker died of SIGKILL, the killer's own log names
the leaker (earlyoom: "sending SIGKILL to process PID ... "leaker""; oomguard: a decision with result
"killed" whose target is the leaker, and no other acting decision), both innocents live, and the
kernel's OOM killer did not fire (vmstat oom_kill unchanged, no OOM records in kmsg). Reports
time-to-kill from the leak's start and from the threshold crossing (MemAvailable < 10 % of MemTotal,
seen by leakwatch's 10 ms poll), per round and as medians, and the ratio oomguard / earlyoom.
Writes SHARE/result.json."""
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import epoch, kmsg_oom_text, ms, num, read_kv, read_leak, slim  # noqa: E402
from daemon_check import read_daemon_log, read_stop  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

SENT = re.compile(r'sending (SIG\w+) to process (\d+) uid \d+ "([^"]*)"')
AVAIL = re.compile(r"mem avail:\s+(\d+) of\s+(\d+) MiB \(\s*([\d.]+)%\)")


def metric(text, name):
    """A plain Prometheus sample 'name value' (no labels) -> float or None."""
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def check_round(share, name):
    d = os.path.join(share, "rounds", name)
    p = read_kv(os.path.join(d, "params"))
    leak = read_leak(os.path.join(d, "leak.txt"))
    killer = p.get("killer")
    rnd = {"round": name, "killer": killer, "leaker_pid": leak.get("pid"), "errors": []}
    err = rnd["errors"]
    leaker = leak.get("pid")
    if p.get("killer_alive_before") != "1":
        err.append("%s was not running when the leak started" % killer)
    if not leak.get("present"):
        err.append("no leakwatch record")
    elif leak.get("timed_out") != 0 or not leak.get("killed_by_sigkill"):
        err.append("the leaker ended with %r (timed_out %s), expected SIGKILL" % (leak.get("status"), leak.get("timed_out")))
    # The scenario's premise: at the crossing the leaker is clearly the largest process (both killers
    # take the largest by the kernel's model). Its expected size then: what MemAvailable saw at the
    # start (A less the per-CPU lists that mem_available_mib adds) less the 10 % threshold.
    try:
        expect_mib = (int(p["mem_available_mib"]) - int(p["pcp_mib"]) - int(p["mem_total_mib"]) * 0.10)
        rnd["leaker_mib_at_crossing_expected"] = round(expect_mib, 1)
        if expect_mib < 1.5 * int(p["innocent1_mib"]):
            err.append("scenario premise not met: the leaker would hold about %.0f MiB at the crossing, not 1.5 x "
                       "innocent1's %s MiB; a killer by the kernel's model may rightly take innocent1" % (
                           expect_mib, p["innocent1_mib"]))
    except (KeyError, TypeError, ValueError):
        err.append("the round's sizes were not recorded: %r" % {k: p.get(k) for k in (
            "mem_available_mib", "pcp_mib", "mem_total_mib", "innocent1_mib")})
    t_kill_logged = None
    if killer == "earlyoom":
        text = read_text(os.path.join(d, "earlyoom.log")) or ""
        sent = SENT.findall(text)
        # tsline's prefix: the time the line was read, just after earlyoom printed it (before kill(2)).
        for line in text.splitlines():
            stamp, _, rest = line.partition(" ")
            if SENT.search(rest):
                t_kill_logged = num(stamp)
                break
        rnd["earlyoom_signals"] = [{"signal": s, "pid": int(pid), "comm": comm} for s, pid, comm in sent]
        avail = AVAIL.findall(text)
        rnd["earlyoom_mem_avail_at_kill"] = ("%s of %s MiB (%s%%)" % avail[-1]) if avail else None
        if not sent:
            err.append("earlyoom sent no signal: %r" % text[-400:])
        else:
            if sent[0][0] != "SIGKILL" or int(sent[0][1]) != leaker or sent[0][2] != "leaker":
                err.append("earlyoom's first signal: %s to pid %s (%s), expected SIGKILL to the leaker %s" % (
                    sent[0][0], sent[0][1], sent[0][2], leaker))
            others = [s for s in sent if int(s[1]) != leaker]
            if others:
                err.append("earlyoom also signalled %s" % others)
    else:
        events, bad = read_daemon_log(d)
        if bad:
            err.append("%d daemon lines are not JSON" % len(bad))
        acting = [e for _, e in events if e.get("event") == "decision" and e.get("action") not in (None, "none")]
        kill = next((e for e in acting if e.get("result") == "killed"), None)
        rnd["kill_decision"] = slim(kill)
        if kill is None:
            err.append("oomguard logged no decision with result killed (acting: %s)" % [slim(e) for e in acting[:2]])
        else:
            target = kill.get("target") or {}
            if target.get("pid") != leaker or target.get("comm") != "leaker":
                err.append("oomguard killed pid %s (%s), the leaker is %s" % (target.get("pid"), target.get("comm"), leaker))
            if not str(kill.get("reason", "")).startswith("MemAvailable"):
                err.append("oomguard's kill reason is %r, expected the MemAvailable threshold" % kill.get("reason"))
            t_kill_logged = epoch(kill.get("time"))
            rnd["oomguard_reaction_us"] = kill.get("reaction_us")
            rnd["oomguard_trigger"] = (kill.get("trigger") or {}).get("kind")
            rnd["oomguard_reason"] = kill.get("reason")
        if len(acting) > 1:
            err.append("oomguard made %d acting decisions, expected one: %s" % (len(acting), [slim(e) for e in acting]))
        stop = read_stop(d)
        rnd["stop"] = stop
        if stop.get("exit_code") != "0":
            err.append("oomguard's exit code after SIGTERM: %s" % stop.get("exit_code"))
        mtext = read_text(os.path.join(d, "metrics.txt"), limit=10 ** 6)
        scans = metric(mtext, "oomguard_scan_duration_seconds_count")
        scan_sum = metric(mtext, "oomguard_scan_duration_seconds_sum")
        rnd["oomguard_refreshes"] = scans
        rnd["oomguard_mean_scan_ms"] = round(scan_sum / scans * 1000, 2) if scans and scan_sum is not None else None
    for who in ("innocent1", "innocent2"):
        if p.get("%s_alive" % who) != "1":
            err.append("%s died in this round" % who)
    if p.get("killer_alive_after") != "1":
        err.append("%s itself died" % killer)
    # Missing data is a failure, never "no OOM": both vmstat readings must be numbers, and kmsg must
    # have been read.
    if not (p.get("vmstat_oom_kill_before") or "").isdigit() or not (p.get("vmstat_oom_kill_after") or "").isdigit():
        err.append("vmstat oom_kill was not read: %r -> %r" % (p.get("vmstat_oom_kill_before"), p.get("vmstat_oom_kill_after")))
    if p.get("kmsg_read_ok") != "1":
        err.append("the kernel log was not read after the round: no evidence that the kernel stayed out")
    if p.get("vmstat_oom_kill_before") != p.get("vmstat_oom_kill_after"):
        err.append("the kernel's OOM killer fired: vmstat oom_kill %s -> %s" % (p.get("vmstat_oom_kill_before"), p.get("vmstat_oom_kill_after")))
    koom = kmsg_oom_text(os.path.join(d, "kmsg-oom.txt"))
    if koom:
        err.append("the kernel logged OOM-killer records: %s" % koom[:3])
    if "death_real" in leak and "start_real" in leak:
        rnd["from_leak_start_ms"] = ms(leak["start_real"], leak["death_real"])
    rnd["from_crossing_ms"] = ms(leak.get("cross_real"), leak.get("death_real"))
    if leak.get("cross_real") is None:
        err.append("leakwatch never saw MemAvailable below 10 %: the killer acted before the threshold?")
    # earlyoom: its "sending SIGKILL" line (printed just before kill(2)); oomguard: its decision line
    # (written after pidfd_send_signal and process_mrelease).
    rnd["crossing_to_kill_logged_ms"] = ms(leak.get("cross_real"), t_kill_logged)
    rnd["kill_logged_to_death_ms"] = ms(t_kill_logged, leak.get("death_real"))
    rnd["leak_to_crossing_ms"] = ms(leak.get("start_real"), leak.get("cross_real"))
    rnd["min_available_mib"] = round(leak["min_available_kb"] / 1024, 1) if isinstance(leak.get("min_available_kb"), int) else None
    rnd["leaker_rss_mib_at_last_poll"] = round(leak["last_rss_kb"] / 1024, 1) if isinstance(leak.get("last_rss_kb"), int) else None
    rnd["mem_available_mib_at_start"] = p.get("mem_available_mib")
    rnd["passed"] = not err
    return rnd


def median(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return round(statistics.median(values), 1) if values else None


def main(share):
    rdir = os.path.join(share, "rounds")
    names = sorted(os.listdir(rdir), key=lambda n: (int(n.split("-")[0]), n)) if os.path.isdir(rdir) else []
    rounds = [check_round(share, n) for n in names]
    errors = []
    want = int((read_text(os.path.join(share, "rounds.done")) or "0").strip() or 0)
    if want == 0:
        errors.append("the guest script did not finish its rounds")
    by = {k: [r for r in rounds if r["killer"] == k] for k in ("earlyoom", "oomguard")}
    for k, rs in by.items():
        if len(rs) < max(want, 1):
            errors.append("%d %s rounds, expected %d" % (len(rs), k, want))
    for r in rounds:
        errors += ["round %s: %s" % (r["round"], e) for e in r["errors"]]
    med = {k: {"from_crossing_ms": median(r.get("from_crossing_ms") for r in rs),
               "from_leak_start_ms": median(r.get("from_leak_start_ms") for r in rs),
               "leak_to_crossing_ms": median(r.get("leak_to_crossing_ms") for r in rs),
               "min_available_mib": median(r.get("min_available_mib") for r in rs)} for k, rs in by.items()}

    def ratio(key):
        a, b = med["oomguard"][key], med["earlyoom"][key]
        return round(a / b, 2) if a and b else None

    figures = {
        "rounds_per_killer": want,
        "rounds_passed": sum(1 for r in rounds if r["passed"]),
        "earlyoom_victims": [r.get("earlyoom_signals", [{}])[0].get("comm") if r.get("earlyoom_signals") else None
                             for r in by["earlyoom"]],
        "oomguard_victims": [((r.get("kill_decision") or {}).get("target") or {}).get("comm") for r in by["oomguard"]],
        "earlyoom_from_crossing_ms": [r.get("from_crossing_ms") for r in by["earlyoom"]],
        "oomguard_from_crossing_ms": [r.get("from_crossing_ms") for r in by["oomguard"]],
        "earlyoom_median_from_crossing_ms": med["earlyoom"]["from_crossing_ms"],
        "oomguard_median_from_crossing_ms": med["oomguard"]["from_crossing_ms"],
        "ratio_from_crossing_oomguard_over_earlyoom": ratio("from_crossing_ms"),
        "earlyoom_median_from_leak_start_ms": med["earlyoom"]["from_leak_start_ms"],
        "oomguard_median_from_leak_start_ms": med["oomguard"]["from_leak_start_ms"],
        "ratio_from_leak_start_oomguard_over_earlyoom": ratio("from_leak_start_ms"),
        "earlyoom_crossing_to_sigkill_line_ms": [r.get("crossing_to_kill_logged_ms") for r in by["earlyoom"]],
        "oomguard_crossing_to_decision_ms": [r.get("crossing_to_kill_logged_ms") for r in by["oomguard"]],
        "oomguard_reaction_us": [r.get("oomguard_reaction_us") for r in by["oomguard"]],
        "oomguard_mean_scan_ms": [r.get("oomguard_mean_scan_ms") for r in by["oomguard"]],
        "kernel_oom_kills": sum(1 for r in rounds if any("kernel's OOM killer" in e or "kernel logged" in e for e in r["errors"])),
    }
    write_result(share, "earlyoom-side-by-side", not errors, figures, errors=errors, medians=med,
                 earlyoom_version=(read_text(os.path.join(share, "earlyoom.version")) or "").strip(), rounds=rounds)
    print(json.dumps({k: figures[k] for k in ("earlyoom_median_from_crossing_ms", "oomguard_median_from_crossing_ms",
                                              "ratio_from_crossing_oomguard_over_earlyoom")}), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
