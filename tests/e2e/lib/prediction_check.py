"""Host-side assertion for the prediction scenarios: oomguard's rank 1 == the kernel's OOM victim.

Reads SHARE/trials/N/{params,top.json,top.rc,top.err,ref.tsv,procs.before,kmsg.txt} written by
scenarios/prediction-*.sh and writes SHARE/result.json. A trial passes only if oomguard ran, its
domain is the expected one, the kernel's first OOM in the trial has the expected constraint, and
the pid oomguard ranked first is the pid the kernel killed. Mismatches keep every detail.
"""

import os

from e2e_common import kernel_points, load_top, parse_oom_reports, read_kmsg, read_params, read_ref, \
    read_text, write_result


# The VM runs with vmrun's default of 1 vCPU (no scenario passes -c). The kernel reads a task's rss from
# per-CPU counters, approximately: each of the 4 counters may lag by up to (batch - 1) pages per CPU,
# batch = max(32, 2 * CPUs) (policies::perCpuCounterDriftPages). A model error beyond that band is the
# model's, whatever the verdict.
VM_CPUS = 1
DRIFT_BAND_PAGES = 4 * (max(32, 2 * VM_CPUS) - 1) * VM_CPUS


def check_trial(dir_path, kind):
    params = read_params(os.path.join(dir_path, "params"))
    trial = {"trial": int(params.get("trial", "0")), "case": params.get("case"),
             "domain": params.get("domain"), "seconds": float(params.get("seconds", "0") or 0),
             "match": False, "error": None}
    hog_names = {h["pid"]: h["name"] for h in params["hogs"]}
    top, err = load_top(dir_path)
    ref_total, ref_rows = read_ref(os.path.join(dir_path, "ref.tsv"))
    reports = parse_oom_reports(read_kmsg(os.path.join(dir_path, "kmsg.txt")))
    first = next((r for r in reports if r["oom_kill"]), None)

    predicted = None
    if top is not None:
        dom = top["domain"]
        want_cgroup = params.get("domain") if kind == "memcg" else "/"
        if dom.get("kind") != kind or dom.get("cgroup") != want_cgroup:
            err = "oomguard domain is %s %s, expected %s %s" % (dom.get("kind"), dom.get("cgroup"), kind,
                                                               want_cgroup)
        ranked = [c for c in top["candidates"] if c.get("rank") == 1]
        if ranked:
            predicted = ranked[0]
        elif err is None:
            err = "oomguard listed no rank-1 candidate"
    if predicted is not None:
        trial["predicted"] = {k: predicted.get(k) for k in ("pid", "comm", "cgroup", "points", "oom_score_adj")}
    if ref_rows:
        best = next((r for r in ref_rows if r["killable"]), None)
        trial["reference"] = None if best is None else {"pid": best["pid"], "comm": best["comm"],
                                                        "points": best["points"]}
    trial["oom_kill_delta"] = int(params.get("oom_kill_after", "0") or 0) - int(params.get("oom_kill_before", "0") or 0)
    trial["trigger_rc"] = params.get("trigger_rc")

    if first is None:
        err = err or "no OOM kill was reported by the kernel in this trial (kmsg_rc %s)" % params.get("kmsg_rc")
    else:
        ok = first["oom_kill"]
        victim_pid = int(ok.get("pid", "-1"))
        trial["kernel"] = {"pid": victim_pid, "comm": ok.get("task"), "constraint": ok.get("constraint"),
                           "oom_memcg": ok.get("oom_memcg"),
                           "task_memcg": ok.get("task_memcg"), "invoker": first["invoker"],
                           "kills_in_trial": sum(1 for r in reports if r["oom_kill"])}
        want_constraint = "CONSTRAINT_MEMCG" if kind == "memcg" else "CONSTRAINT_NONE"
        if ok.get("constraint") != want_constraint:
            err = err or "the kernel's OOM had constraint %s, expected %s" % (ok.get("constraint"), want_constraint)
        if kind == "memcg" and ok.get("oom_memcg") != params.get("domain"):
            err = err or "the kernel's OOM was in %s, expected %s" % (ok.get("oom_memcg"), params.get("domain"))
        if predicted is not None:
            trial["match"] = err is None and predicted.get("pid") == victim_pid
        if ref_rows and trial.get("reference"):
            trial["reference_match"] = trial["reference"]["pid"] == victim_pid
        trial["kernel_killed_trigger"] = ok.get("task") == "trigger"

    # How far oomguard's points (before the trigger) are from the kernel's own, computed from the
    # OOM report's task table, for every task in both: the model's error, trial by trial.
    if top is not None and first is not None:
        total = top["domain"].get("totalpages") or ref_total or 0
        rows = {t.get("pid"): t for t in first["tasks"]}
        deltas = []
        for c in top["candidates"]:
            row = rows.get(c.get("pid"))
            kp = kernel_points(row, total) if row else None
            if kp is not None and c.get("killable") and isinstance(c.get("points"), int):
                deltas.append(c["points"] - kp)
        trial["points_minus_kernel"] = deltas
        outside = [d for d in deltas if abs(d) > DRIFT_BAND_PAGES]
        if outside:
            err = err or "the model's points differ from the kernel's by %s pages, beyond the per-CPU drift band %d" % (
                outside[:5], DRIFT_BAND_PAGES)
            trial["match"] = False

    trial["error"] = err
    if not trial["match"]:
        # Everything needed to find out who is wrong.
        trial["details"] = {
            "hogs": params["hogs"],
            "params": {k: v for k, v in params.items() if k != "hogs"},
            "oomguard_domain": top["domain"] if top else None,
            "oomguard_candidates": top["candidates"] if top else None,
            "oomguard_stderr": read_text(os.path.join(dir_path, "top.err")),
            "reference_totalpages": ref_total,
            "reference": ref_rows,
            "procs_before": read_text(os.path.join(dir_path, "procs.before")),
            "kernel_reports": [{"lines": r["lines"], "tasks": r["tasks"],
                                "kernel_points": {str(t.get("pid")): kernel_points(t, (top or {}).get("domain", {}).get(
                                    "totalpages") or ref_total or 0) for t in r["tasks"]}}
                               for r in reports],
        }
    trial["names"] = {str(pid): name for pid, name in hog_names.items()}
    return trial


def run(share_dir, name, kind, min_trials):
    trials_dir = os.path.join(share_dir, "trials")
    dirs = sorted((d for d in os.listdir(trials_dir) if d.isdigit()), key=int) if os.path.isdir(trials_dir) else []
    trials = [check_trial(os.path.join(trials_dir, d), kind) for d in dirs]
    done = os.path.exists(os.path.join(share_dir, "trials.done"))
    matches = sum(1 for t in trials if t["match"])
    errors = sum(1 for t in trials if t["error"])
    cases = {}
    for t in trials:
        cases[t["case"]] = cases.get(t["case"], 0) + 1
    figures = {
        "trials": len(trials),
        "matches": matches,
        "mismatches": sum(1 for t in trials if not t["match"] and not t["error"]),
        "errors": errors,
        "kernel_killed_trigger": sum(1 for t in trials if t.get("kernel_killed_trigger")),
        "reference_matches": sum(1 for t in trials if t.get("reference_match")),
        "cases": cases,
        "completed": done,
        "points_minus_kernel_min": min((d for t in trials for d in t.get("points_minus_kernel", [])), default=None),
        "points_minus_kernel_max": max((d for t in trials for d in t.get("points_minus_kernel", [])), default=None),
        "mean_trial_seconds": round(sum(t["seconds"] for t in trials) / len(trials), 2) if trials else None,
    }
    passed = done and len(trials) >= min_trials and matches == len(trials)
    failures = [{"trial": t["trial"], "case": t["case"], "error": t["error"], "predicted": t.get("predicted"),
                 "kernel": t.get("kernel")} for t in trials if not t["match"]]
    return write_result(share_dir, name, passed, figures, failures=failures, trials=trials)
