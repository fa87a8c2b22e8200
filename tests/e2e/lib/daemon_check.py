"""Host-side checks for the scenarios that run `oomguard run` in the guest (daemon-*).

The guest writes SHARE/daemon.jsonl (the daemon's stdout: one JSON object per line), daemon.err (its
summary), daemon.stop (alive_before_stop, stop_ms, exit_code), and per trial SHARE/trials/N/params
(with the daemon's log line counts at the trial's start, trigger and end) and kmsg.txt (the kernel's
report, read independently with kmsgdump).
"""

import json
import os

from e2e_common import parse_oom_reports, read_kmsg, read_params, read_text, write_result

STOP_LIMIT_MS = 1000


def read_daemon_log(share_dir):
    """-> (list of (line_number, dict)), [malformed lines]). line_number counts from 0."""
    events, bad = [], []
    path = os.path.join(share_dir, "daemon.jsonl")
    if not os.path.exists(path):
        return events, ["no daemon.jsonl"]
    with open(path, errors="replace") as f:
        for n, line in enumerate(f):
            try:
                doc = json.loads(line)
            except ValueError:
                bad.append(line[:300])
                continue
            if not isinstance(doc, dict) or "event" not in doc:
                bad.append(line[:300])
                continue
            events.append((n, doc))
    return events, bad


def read_stop(share_dir):
    stop = {}
    text = read_text(os.path.join(share_dir, "daemon.stop")) or ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            stop[parts[0]] = parts[1]
    return stop


def check_lifecycle(share_dir, events, bad):
    """The daemon started, logged only valid JSON, was alive at the end, and SIGTERM stopped it with exit
    0 within STOP_LIMIT_MS, its last lines being stopping / stopping_state / stopped. -> (info, [errors])"""
    errors = []
    stop = read_stop(share_dir)
    names = [e["event"] for _, e in events]
    info = {"stop": stop, "malformed_lines": bad[:5], "lines": len(events) + len(bad)}
    if bad:
        errors.append("%d daemon log lines are not JSON objects with an event" % len(bad))
    if "started" not in names:
        errors.append("the daemon never logged started")
    if stop.get("alive_before_stop") != "1":
        errors.append("the daemon was not running at the end (alive_before_stop %s); stderr: %s"
                      % (stop.get("alive_before_stop"), (read_text(os.path.join(share_dir, "daemon.err")) or "")[-800:]))
    if stop.get("exit_code") != "0":
        errors.append("SIGTERM: exit code %s, expected 0" % stop.get("exit_code"))
    try:
        stop_ms = int(stop.get("stop_ms", ""))
    except ValueError:
        stop_ms = None
    info["stop_ms"] = stop_ms
    if stop_ms is None or stop_ms > STOP_LIMIT_MS:
        errors.append("SIGTERM: the daemon took %s ms to exit, limit %d" % (stop_ms, STOP_LIMIT_MS))
    foreign = foreign_candidates(events)
    info["foreign_candidates"] = len(foreign)
    info["foreign_candidate_examples"] = foreign[:10]
    if foreign:
        errors.append("%d next_victim/decision lines for a memcg domain name a task outside it (first: line %d, "
                      "domain %s, pid %s %s in %s)" % (len(foreign), foreign[0]["line"], foreign[0]["domain"],
                                                      foreign[0]["pid"], foreign[0]["comm"], foreign[0]["cgroup"]))
    tail = names[-3:]
    if tail != ["stopping", "stopping_state", "stopped"]:
        errors.append("the log does not end with stopping, stopping_state, stopped: %s" % tail)
    return info, errors


def foreign_candidates(events):
    """next_victim / decision lines for a memcg domain that name a candidate outside that domain (its
    cgroup neither the domain nor below it, or unknown): the kernel can only kill inside the domain."""
    bad = []
    for n, e in events:
        if e["event"] not in ("next_victim", "decision"):
            continue
        dom = e.get("domain")
        if not isinstance(dom, dict) or dom.get("kind") != "memcg":
            continue
        path = dom.get("cgroup")
        cands = e.get("candidates") if e["event"] == "decision" else [e.get("victim")]
        for c in cands or []:
            if not isinstance(c, dict):
                continue
            cg = c.get("cgroup")
            if not (isinstance(cg, str) and (cg == path or cg.startswith(path.rstrip("/") + "/"))):
                bad.append({"line": n, "event": e["event"], "domain": path, "pid": c.get("pid"), "comm": c.get("comm"),
                            "cgroup": cg, "trigger": e.get("trigger")})
                break
    return bad


def _domain_of(doc):
    dom = doc.get("domain")
    return dom.get("cgroup") if isinstance(dom, dict) else dom


def check_trial(dir_path, kind, events):
    params = read_params(os.path.join(dir_path, "params"))
    want_domain = params.get("domain") if kind == "memcg" else "/"
    want_constraint = "CONSTRAINT_MEMCG" if kind == "memcg" else "CONSTRAINT_NONE"
    trial = {"trial": int(params.get("trial", "0")), "case": params.get("case"), "domain": want_domain,
             "seconds": float(params.get("seconds", "0") or 0), "match": False, "error": None}
    start = int(params.get("daemon_line_start", "0") or 0)
    trig = int(params.get("daemon_line_trigger", "-1") or -1)
    end = int(params.get("daemon_line_end", "-1") or -1)
    if end < 0:
        end = max((n for n, _ in events), default=0) + 1
    in_trial = [(n, e) for n, e in events if start <= n < end]

    # The kernel's victim, independently from /dev/kmsg.
    reports = parse_oom_reports(read_kmsg(os.path.join(dir_path, "kmsg.txt")))
    first_report = next((r for r in reports if r["oom_kill"]), None)
    kernel = None
    if first_report is not None:
        ok = first_report["oom_kill"]
        kernel = {"pid": int(ok.get("pid", "-1")), "comm": ok.get("task"), "constraint": ok.get("constraint"),
                  "oom_memcg": ok.get("oom_memcg"), "task_memcg": ok.get("task_memcg"),
                  "reports_in_trial": sum(1 for r in reports if r["oom_kill"])}
    trial["kernel"] = kernel

    # What the daemon had logged as the domain's next victim just before the trigger.
    before = [e for n, e in in_trial if n < trig and e["event"] == "next_victim" and _domain_of(e) == want_domain]
    logged = before[-1]["victim"] if before else None
    trial["logged_next_victim"] = logged

    kills = [(n, e) for n, e in in_trial if e["event"] == "kernel_oom_kill" and (kind != "memcg" or e.get("domain") == want_domain)]
    trial["daemon_kills"] = [{"line": n, "victim": (e.get("victim") or {}).get("pid"), "prediction": e.get("prediction"),
                              "predicted": (e.get("predicted") or {}).get("pid") if e.get("predicted") else None,
                              "domain": e.get("domain"), "constraint": e.get("constraint")} for n, e in kills]
    first = kills[0][1] if kills else None
    trial["daemon"] = first
    # Later kills in the same trial (the trigger still over the limit): a prediction naming a pid the
    # daemon itself had already seen killed is stale; recorded (not part of the trial's verdict, which is
    # the first kill's), see the scenario's figures.
    killed = set()
    trial["stale_predictions"] = []
    for n, e in kills:
        predicted = (e.get("predicted") or {}).get("pid") if isinstance(e.get("predicted"), dict) else None
        if predicted is not None and predicted in killed and e.get("prediction") == "mismatch":
            trial["stale_predictions"].append({"line": n, "predicted_already_killed": predicted,
                                               "kernel_victim": (e.get("victim") or {}).get("pid")})
        killed.add((e.get("victim") or {}).get("pid"))

    err = None
    if params.get("daemon_saw_domain") != "1":
        err = "the daemon logged no next_victim for %s within 15 s (daemon_saw_domain %r)" % (
            want_domain, params.get("daemon_saw_domain"))
    if kernel is None:
        err = err or "no OOM kill reported by the kernel (kmsg_rc %s)" % params.get("kmsg_rc")
    else:
        if kernel["constraint"] != want_constraint:
            err = err or "the kernel's OOM had constraint %s, expected %s" % (kernel["constraint"], want_constraint)
        if kind == "memcg" and kernel["oom_memcg"] != want_domain:
            err = err or "the kernel's OOM was in %s, expected %s" % (kernel["oom_memcg"], want_domain)
        trial["kernel_killed_trigger"] = kernel["comm"] == "trigger"
    if first is None:
        err = err or "the daemon logged no kernel_oom_kill for %s in this trial" % want_domain
    elif kernel is not None:
        victim = first.get("victim") or {}
        predicted = first.get("predicted")
        if first.get("constraint") != want_constraint or first.get("domain") != want_domain:
            err = err or "daemon kernel_oom_kill has constraint %s domain %s, expected %s %s" % (
                first.get("constraint"), first.get("domain"), want_constraint, want_domain)
        if kind == "memcg" and first.get("oom_memcg") != want_domain:
            err = err or "daemon kernel_oom_kill oom_memcg %s, expected %s" % (first.get("oom_memcg"), want_domain)
        if victim.get("pid") != kernel["pid"]:
            err = err or "daemon kernel_oom_kill victim pid %s, kmsg says %s" % (victim.get("pid"), kernel["pid"])
        if first.get("prediction") != "match":
            err = err or "daemon prediction is %r (predicted %s, kernel killed %s)" % (
                first.get("prediction"), (predicted or {}).get("pid"), kernel["pid"])
        if not isinstance(predicted, dict) or predicted.get("pid") != kernel["pid"]:
            err = err or "daemon predicted pid %s, the kernel killed %s" % ((predicted or {}).get("pid"), kernel["pid"])
        trial["match"] = err is None
    # Independently of the daemon's own check: the next victim it had logged for the domain before the
    # trigger started is the task the kernel then killed.
    if logged is not None and kernel is not None:
        trial["logged_next_victim_match"] = logged.get("pid") == kernel["pid"]
        if not trial["logged_next_victim_match"]:
            err = err or "the next_victim logged before the trigger was pid %s, the kernel killed %s" % (
                logged.get("pid"), kernel["pid"])
            trial["match"] = False
    elif kernel is not None:
        err = err or "no next_victim was logged for %s before the trigger" % want_domain
        trial["match"] = False
    trial["alive_after"] = params.get("daemon_alive_after") == "1"
    if params.get("daemon_alive_after") != "1":
        err = err or "the daemon was not alive after this trial's OOM"
        trial["match"] = False
    trial["error"] = err
    if not trial["match"]:
        trial["details"] = {
            "hogs": params["hogs"],
            "params": {k: v for k, v in params.items() if k != "hogs"},
            "daemon_lines_in_trial": [e for _, e in in_trial],
            "reference": read_text(os.path.join(dir_path, "ref.tsv")),
            "procs_before": read_text(os.path.join(dir_path, "procs.before")),
            "kernel_reports": [{"lines": r["lines"], "tasks": r["tasks"]} for r in reports],
        }
    return trial


def run_prediction(share_dir, name, kind, min_trials, self_protection=False):
    events, bad = read_daemon_log(share_dir)
    lifecycle, life_errors = check_lifecycle(share_dir, events, bad)
    if self_protection:
        # daemon.self: what the guest read from /proc/<daemon>/ right after start-up.
        own = read_params(os.path.join(share_dir, "daemon.self"))
        lifecycle["self"] = {k: v for k, v in own.items() if k != "hogs"}
        if own.get("daemon_oom_score_adj") != "-1000":
            life_errors.append("the daemon's oom_score_adj is %s, expected -1000 (config self.oom_score_adj)"
                               % own.get("daemon_oom_score_adj"))
    trials_dir = os.path.join(share_dir, "trials")
    dirs = sorted((d for d in os.listdir(trials_dir) if d.isdigit()), key=int) if os.path.isdir(trials_dir) else []
    trials = [check_trial(os.path.join(trials_dir, d), kind, events) for d in dirs]
    done = os.path.exists(os.path.join(share_dir, "trials.done"))
    all_kills = [e for _, e in events if e["event"] == "kernel_oom_kill"]
    figures = {
        "trials": len(trials),
        "matches": sum(1 for t in trials if t["match"]),
        "mismatches": sum(1 for t in trials if (t.get("daemon") or {}).get("prediction") == "mismatch"),
        "none": sum(1 for t in trials if (t.get("daemon") or {}).get("prediction") == "none"),
        "errors": sum(1 for t in trials if t["error"]),
        "kernel_killed_trigger": sum(1 for t in trials if t.get("kernel_killed_trigger")),
        "logged_next_victim_matches": sum(1 for t in trials if t.get("logged_next_victim_match")),
        "daemon_kernel_oom_kills": len(all_kills),
        "daemon_predictions": {p: sum(1 for e in all_kills if e.get("prediction") == p) for p in ("match", "mismatch", "none")},
        "later_kills_predicting_a_dead_pid": sum(len(t["stale_predictions"]) for t in trials),
        "stop_ms": lifecycle["stop_ms"],
        "daemon_alive_after_every_oom": all(t.get("alive_after") for t in trials) if trials else False,
        "completed": done,
        "mean_trial_seconds": round(sum(t["seconds"] for t in trials) / len(trials), 2) if trials else None,
    }
    passed = done and not life_errors and len(trials) >= min_trials and figures["matches"] == len(trials)
    failures = [{"trial": t["trial"], "case": t["case"], "error": t["error"], "kernel": t.get("kernel"),
                 "daemon": t.get("daemon")} for t in trials if not t["match"]]
    return write_result(share_dir, name, passed, figures, lifecycle=lifecycle, lifecycle_errors=life_errors,
                        failures=failures, trials=trials)
