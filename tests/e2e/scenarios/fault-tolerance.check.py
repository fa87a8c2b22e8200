"""Host check for fault-tolerance: after heavy cgroup churn the daemon is alive and its watch set is
exact: the cgroups it watches are the real tree (find /sys/fs/cgroup -type d), it holds the inotify
watches and PSI triggers that tree implies, and its open fds are back to the baseline (plus one per
PSI trigger still armed). Writes SHARE/result.json."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

MIN_DIR_OPS = 2000   # mkdir + rmdir: the churn must have been real


def read_tree(path):
    """cgroup_tree output -> {path: (has_events, memory_max or None, populated)}."""
    tree = {}
    for line in (read_text(path, limit=10 ** 7) or "").splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        tree[parts[0]] = (parts[1] == "1", None if parts[2] == "-" else parts[2], parts[3] == "1")
    return tree


def expected(tree):
    """PSI triggers are written only into populated cgroups (2 s old or more), and stay when the cgroup
    empties: between the populated limited cgroups and all limited ones."""
    watches = sum(1 + (2 if p != "/" and ev else 0) for p, (ev, _, _) in tree.items())
    limited = [p for p, (_, mx, _) in tree.items() if p != "/" and mx not in (None, "max")]
    populated = [p for p in limited if tree[p][2]]
    return {"cgroups": sorted(tree), "inotify_watches": watches,
            "pressure_triggers": (len(populated), len(limited))}


def read_keyvalues(path):
    out = {}
    for line in (read_text(path, limit=10 ** 6) or "").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            out.setdefault(parts[0], parts[1])
    return out


def check_point(share, name, errors):
    """One watch set against its tree. -> summary dict."""
    ws_text = read_text(os.path.join(share, name + ".json"), limit=10 ** 7)
    try:
        ws = json.loads(ws_text) if ws_text else None
    except ValueError:
        ws = None
    tree = read_tree(os.path.join(share, name + ".tree"))
    settle = read_keyvalues(os.path.join(share, name + ".settle"))
    point = {"settle": settle}
    if ws is None or ws.get("event") != "watch_set":
        errors.append("%s: no watch_set line" % name)
        return point
    if not tree:
        errors.append("%s: no tree snapshot" % name)
        return point
    want = expected(tree)
    got_list = ws.get("cgroups")
    point.update({"tree_cgroups": len(tree), "watched_cgroups": ws.get("watched_cgroups"),
                  "inotify_watches": ws.get("inotify_watches"), "expected_inotify_watches": want["inotify_watches"],
                  "pressure_triggers": ws.get("pressure_triggers"),
                  "expected_pressure_triggers": list(want["pressure_triggers"]), "open_fds": ws.get("open_fds"),
                  "domains": ws.get("domains"), "stats": ws.get("stats")})
    if not isinstance(got_list, list) or sorted(got_list) != want["cgroups"]:
        got = set(got_list or [])
        point["watched_but_gone"] = sorted(got - set(want["cgroups"]))[:50]
        point["present_but_unwatched"] = sorted(set(want["cgroups"]) - got)[:50]
        errors.append("%s: the watched cgroups differ from the tree: %d watched but gone, %d present but unwatched"
                      % (name, len(got - set(want["cgroups"])), len(set(want["cgroups"]) - got)))
    if isinstance(got_list, list) and len(got_list) != len(set(got_list)):
        errors.append("%s: the cgroups list has duplicates" % name)
    if ws.get("watched_cgroups") != len(tree):
        errors.append("%s: watched_cgroups %s, the tree has %d" % (name, ws.get("watched_cgroups"), len(tree)))
    if ws.get("inotify_watches") != want["inotify_watches"]:
        errors.append("%s: inotify_watches %s, the tree implies %d" % (name, ws.get("inotify_watches"),
                                                                       want["inotify_watches"]))
    low, high = want["pressure_triggers"]
    got_triggers = ws.get("pressure_triggers")
    if not isinstance(got_triggers, int) or not low <= got_triggers <= high:
        errors.append("%s: pressure_triggers %s, the tree implies %d..%d (populated limited cgroups .. all limited)"
                      % (name, got_triggers, low, high))
    stats = ws.get("stats") or {}
    if isinstance(stats.get("cgroups_added"), int) and isinstance(stats.get("cgroups_removed"), int):
        live = stats["cgroups_added"] - stats["cgroups_removed"]
        point["added_minus_removed"] = live
        if live != ws.get("watched_cgroups"):
            errors.append("%s: cgroups_added - cgroups_removed = %d but %s are watched"
                          % (name, live, ws.get("watched_cgroups")))
    if settle.get("converged") != "1":
        errors.append("%s: the watch set did not match the tree within 15 s (%s polls)" % (name, settle.get("polls")))
    point["_ws"] = ws
    return point


def main(share):
    events, bad = read_daemon_log(share)
    lifecycle, errors = check_lifecycle(share, events, bad)
    churn = read_keyvalues(os.path.join(share, "churn.stats"))
    points = {name: check_point(share, name, errors) for name in ("baseline", "after_churn", "after_cleanup")}

    base, mid, end = (points[n].get("_ws") for n in ("baseline", "after_churn", "after_cleanup"))
    if base and end:
        if end.get("open_fds") != base.get("open_fds"):
            errors.append("open_fds after the cleanup is %s, baseline %s: %+d descriptors"
                          % (end.get("open_fds"), base.get("open_fds"), end.get("open_fds", 0) - base.get("open_fds", 0)))
        if end.get("inotify_watches") != base.get("inotify_watches"):
            errors.append("inotify_watches after the cleanup %s, baseline %s" % (end.get("inotify_watches"),
                                                                                base.get("inotify_watches")))
        if sorted(end.get("cgroups") or []) != sorted(base.get("cgroups") or []):
            errors.append("the watched cgroups after the cleanup differ from the baseline's")
    if base and mid:
        # Every armed PSI trigger holds one fd; nothing else may have grown.
        want_fds = base.get("open_fds", 0) + mid.get("pressure_triggers", 0) - base.get("pressure_triggers", 0)
        if mid.get("open_fds") != want_fds:
            errors.append("open_fds after the churn is %s, expected %d (baseline %s + %d PSI triggers more)"
                          % (mid.get("open_fds"), want_fds, base.get("open_fds"),
                             mid.get("pressure_triggers", 0) - base.get("pressure_triggers", 0)))
    if read_tree(os.path.join(share, "after_cleanup.tree")) != read_tree(os.path.join(share, "baseline.tree")):
        errors.append("scenario: the tree after the cleanup is not the baseline tree")

    def num(key, cast=int):
        try:
            return cast(churn.get(key, ""))
        except ValueError:
            return None
    mkdirs, rmdirs, seconds = num("mkdir"), num("rmdir"), num("seconds", float)
    if churn.get("churn_rc") != "0" or num("errors") != 0:
        errors.append("scenario: cgchurn exited %s with %s errors" % (churn.get("churn_rc"), churn.get("errors")))
    if mkdirs is None or rmdirs is None or mkdirs + rmdirs < MIN_DIR_OPS:
        errors.append("scenario: only %s mkdir + %s rmdir, fewer than %d" % (mkdirs, rmdirs, MIN_DIR_OPS))
    if churn.get("daemon_alive_after_churn") != "1":
        errors.append("the daemon was not alive right after the churn")

    # Nothing in this scenario allocates (1-2 MiB sleepers, 64M limits, a 512 MiB VM): there is no memory
    # pressure, so a PSI trigger that "fires" here is spurious, and so is the decision it starts.
    pressure = [e for _, e in events if e["event"] == "decision" and (e.get("trigger") or {}).get("kind") == "pressure"]
    if pressure:
        errors.append("%d decisions on PSI triggers that fired without memory pressure (first: %s, some_avg10 %s)"
                      % (len(pressure), pressure[0]["trigger"].get("cgroup"), pressure[0]["trigger"].get("some_avg10")))

    names = [e["event"] for _, e in events]
    figures = {
        "churn_seconds": seconds,
        "mkdir": mkdirs,
        "rmdir": rmdirs,
        "dir_ops_per_s": round((mkdirs + rmdirs) / seconds, 1) if mkdirs is not None and rmdirs is not None and seconds else None,
        "limits_written": num("limits"),
        "process_moves": num("moves"),
        "subtrees": num("subtrees"),
        "left_after_churn": num("left"),
        "cgroup_added_lines": names.count("cgroup_added"),
        "cgroup_removed_lines": names.count("cgroup_removed"),
        "pressure_trigger_gone_lines": names.count("pressure_trigger_gone"),
        "inotify_overflows": names.count("inotify_overflow"),
        "read_error_lines": names.count("read_error"),
        "spurious_pressure_decisions": len(pressure),
        "foreign_candidate_lines": lifecycle.get("foreign_candidates"),
        "open_fds": [p.get("open_fds") for p in points.values()],
        "inotify_watches": [p.get("inotify_watches") for p in points.values()],
        "pressure_triggers": [p.get("pressure_triggers") for p in points.values()],
        "tree_cgroups": [p.get("tree_cgroups") for p in points.values()],
        "settle_seconds": [float(p["settle"].get("seconds", "nan")) for p in points.values()],
        "stop_ms": lifecycle["stop_ms"],
    }
    for p in points.values():
        p.pop("_ws", None)
    read_errors = [e for _, e in events if e["event"] == "read_error"][:20]
    write_result(share, "fault-tolerance", not errors, figures, errors=errors, points=points, churn=churn,
                 lifecycle=lifecycle, read_errors=read_errors, spurious_pressure_decisions=pressure[:10])


if __name__ == "__main__":
    main(sys.argv[1])
