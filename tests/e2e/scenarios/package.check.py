"""Host check for package: the Debian package unpacked in the guest and run as its unit runs it.
  unpacked  the binary, the module, the unit, both configs and the act drop-in are where the package
            puts them; the unit's ExecStart is `/usr/bin/oomguard run --config /etc/oomguard/config.json`
            and OOMScoreAdjust -1000
  observe   the packaged config with the unit's capabilities only: it started in mode observe, its
            effective capabilities were exactly the unit's CapabilityBoundingSet, its oom_score_adj
            -1000, and SIGTERM stopped it with exit 0
  refused   mode act (the recommended config copied over config.json) with the same capabilities:
            exit 2, its stderr names CAP_KILL, it never logged started
  act       the drop-in's CAP_KILL added (effective set = the unit's plus CAP_KILL): one decision killed
            the leaker (action kill, target the leaker's pid, trigger the headroom threshold: /pk is made
            after the daemon started, so its limit is found by the young-cgroup probe, a "domain_added"
            line), the leaker died of SIGKILL, the innocent
            lives, no kernel OOM kill (memory.events of /pk, vmstat, kmsg), SIGTERM exit 0
  matrix    the capability each action needs, measured as uid 0 (each action without the capability
            thought needed fails, with every capability works; cgroup files, vm sysctls and cgroup.kill
            work with none): the unit grants exactly observe mode's, act.conf adds CAP_KILL
Writes SHARE/result.json."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from act_check import intval, kmsg_oom_text, memory_events, read_kv, read_leak, slim  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402
import json  # noqa: E402

# What each action is thought to need as uid 0 (docs/service.md), measured by package.sh.
MATRIX = {"signal_other_user": "CAP_KILL", "oom_score_adj_other_user": "CAP_DAC_OVERRIDE",
          "oom_score_adj_lower": "CAP_SYS_RESOURCE", "psi_trigger_1s_window": "CAP_SYS_RESOURCE",
          "kmsg_read_dmesg_restrict": "CAP_SYSLOG", "psi_trigger_delegated_cgroup": "CAP_DAC_OVERRIDE",
          "cgroup_write": "none", "vm_sysctl_write": "none",
          "cgroup_kill": "none"}
UNPACKED = ["/usr/bin/oomguard", "/usr/lib/oomguard/liboomguard_kube_tls.so", "/lib/systemd/system/oomguard.service",
            "/etc/oomguard/config.json", "/etc/oomguard/act-recommended.json", "/usr/share/doc/oomguard/act.conf"]


def log_events(share, name):
    events = []
    for line in (read_text(os.path.join(share, name + ".jsonl"), limit=10 ** 7) or "").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": "<not json>", "text": line[:200]})
    return events


def caps(text):
    return sorted(c.strip().lower() for c in (text or "").replace(",", " ").split() if c.strip())


def stopped_cleanly(share, name, errors):
    stop = {}
    path = os.path.join(share, name + ".stop")
    if os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) == 2:
                stop[parts[0]] = parts[1]
    if stop.get("alive_before_stop") != "1":
        errors.append("%s: the daemon was not running before SIGTERM: %s" % (name, (read_text(os.path.join(share, name + ".err")) or "")[-400:]))
    if stop.get("exit_code") != "0":
        errors.append("%s: exit code after SIGTERM %s, expected 0" % (name, stop.get("exit_code")))
    return stop


def main(share):
    p = read_kv(os.path.join(share, "params"))
    errors = []
    if not os.path.exists(os.path.join(share, "run.done")):
        errors.append("the guest script did not finish")
    unpacked = {}
    for line in (read_text(os.path.join(share, "params"), limit=10 ** 6) or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "unpacked":
            unpacked[parts[1]] = parts[2] == "1"
    for path in UNPACKED:
        if not unpacked.get(path):
            errors.append("the package did not put %s in place" % path)
    if p.get("exec_start") != "/usr/bin/oomguard run --config /etc/oomguard/config.json":
        errors.append("the unit's ExecStart is %r" % p.get("exec_start"))
    if p.get("oom_score_adjust") != "-1000":
        errors.append("the unit's OOMScoreAdjust is %r" % p.get("oom_score_adjust"))
    observe_caps, act_caps = caps(p.get("observe_caps")), caps(p.get("act_caps"))
    if "cap_kill" in observe_caps or "cap_kill" not in act_caps:
        errors.append("the unit grants %s and the act drop-in %s: CAP_KILL belongs to the drop-in only" % (observe_caps, act_caps))

    # The capability each action needs, measured in the guest (package.sh, "matrix" lines): the ones
    # the unit grants must be exactly what observe mode's actions need, and act.conf's what the kill needs.
    matrix = {}
    for line in (read_text(os.path.join(share, "params"), limit=10 ** 6) or "").splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "matrix":
            matrix[parts[1]] = {"cap": parts[2], "without": intval(parts[3]), "with_all": intval(parts[4])}
    needed = {}
    for action, cap in MATRIX.items():
        row = matrix.get(action)
        if row is None:
            errors.append("matrix: %s was not measured" % action)
            continue
        if row["with_all"] != 0:
            errors.append("matrix: %s failed even with every capability (rc %s)" % (action, row["with_all"]))
        elif cap == "none" and row["without"] != 0:
            errors.append("matrix: %s failed without any capability (rc %s): it needs one" % (action, row["without"]))
        elif cap != "none" and row["without"] == 0:
            errors.append("matrix: %s worked without %s: the unit grants it for nothing" % (action, cap))
        elif cap != "none":
            needed.setdefault(cap.lower(), []).append(action)
    for cap, actions in needed.items():
        in_observe, in_act = cap in observe_caps, cap in act_caps
        if cap == "cap_kill" and (in_observe or not in_act):
            errors.append("matrix: CAP_KILL (%s) must come with act.conf only" % actions)
        elif cap != "cap_kill" and not in_observe:
            errors.append("matrix: %s (%s) is needed in observe mode but the unit lacks it" % (cap, actions))

    # observe
    observe = log_events(share, "observe")
    started = [e for e in observe if e.get("event") == "started"]
    if p.get("observe_started") != "1" or not started:
        errors.append("observe: the packaged config did not start: %s" % (read_text(os.path.join(share, "observe.err")) or "")[-400:])
    elif started[0].get("mode") != "observe":
        errors.append("observe: the packaged config started in mode %r" % started[0].get("mode"))
    if caps(p.get("observe_cap_eff")) != observe_caps:
        errors.append("observe: effective capabilities %s, the unit's set %s" % (caps(p.get("observe_cap_eff")), observe_caps))
    if p.get("observe_oom_score_adj") != "-1000":
        errors.append("observe: oom_score_adj %r, expected -1000" % p.get("observe_oom_score_adj"))
    stopped_cleanly(share, "observe", errors)

    # refused
    refused_err = read_text(os.path.join(share, "refused.err")) or ""
    if p.get("refused_exit") != "2":
        errors.append("refused: mode act with the unit's capabilities exited %r, expected 2" % p.get("refused_exit"))
    if "CAP_KILL" not in refused_err:
        errors.append("refused: stderr does not name CAP_KILL: %r" % refused_err[-400:])
    if any(e.get("event") == "started" for e in log_events(share, "refused")):
        errors.append("refused: the daemon started before refusing")

    # act
    if caps(p.get("act_cap_eff")) != act_caps:
        errors.append("act: effective capabilities %s, the unit's set with the drop-in %s" % (caps(p.get("act_cap_eff")), act_caps))
    act = log_events(share, "act")
    leak = read_leak(os.path.join(share, "leak.txt"))
    leaker = leak.get("pid")
    after = intval(p.get("daemon_line_leak"), 0)
    acting = [e for e in act[after:] if e.get("event") == "decision" and e.get("action") not in (None, "none")]
    kills = [e for e in acting if e.get("result") == "killed"]
    if len(kills) != 1:
        errors.append("act: %d kills, expected one: %s" % (len(kills), [slim(e) for e in acting[:3]]))
    elif kills[0].get("action") != "kill" or (kills[0].get("target") or {}).get("pid") != leaker:
        errors.append("act: the kill was %s, expected the leaker %s" % (slim(kills[0]), leaker))
    elif (kills[0].get("trigger") or {}).get("kind") != "threshold":
        # /pk was made after the daemon started, its limit written after mkdir: the young-cgroup probe
        # must have made it a domain at once, so that the level watch (not the limit) triggers the kill.
        errors.append("act: the kill's trigger was %s, expected the headroom threshold" % kills[0].get("trigger"))
    if not any(e.get("event") == "domain_added" and e.get("cgroup") == "/pk" for e in act):
        errors.append("act: /pk (made after the daemon started) was not made a domain before the refresh (no domain_added line)")
    if not leak.get("killed_by_sigkill"):
        errors.append("act: the leaker ended with %r, expected SIGKILL" % leak.get("status"))
    if p.get("innocent_alive_after") != "1":
        errors.append("act: the innocent died")
    before, after_kills = intval(p.get("vmstat_oom_kill_before")), intval(p.get("vmstat_oom_kill_after"))
    if before is None or after_kills is None or after_kills != before:
        errors.append("act: vmstat oom_kill %s -> %s: the kernel's OOM killer fired" % (before, after_kills))
    events = memory_events(os.path.join(share, "pk.memory.events"))
    if events.get("oom_kill") != 0:
        errors.append("act: memory.events of /pk says oom_kill %s" % events.get("oom_kill"))
    if kmsg_oom_text(os.path.join(share, "kmsg-oom.txt")):
        errors.append("act: the kernel log has an OOM report")
    act_stop = stopped_cleanly(share, "act", errors)

    figures = {
        "deb": p.get("deb"),
        "capability_matrix": {a: "%s: rc %s without, %s with all" % (r["cap"], r["without"], r["with_all"])
                              for a, r in matrix.items()},
        "observe_caps": " ".join(observe_caps),
        "act_caps": " ".join(act_caps),
        "refused_exit": p.get("refused_exit"),
        "act_signal_us": kills[0].get("signal_us") if len(kills) == 1 else None,
        "act_peak_mib": round(leak["peak_current_bytes"] / 1048576.0, 1) if leak.get("peak_current_bytes") else None,
        "act_stop_ms": act_stop.get("stop_ms"),
    }
    write_result(share, "package", not errors, figures, errors=errors)
    for e in errors:
        print("package: " + e)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
