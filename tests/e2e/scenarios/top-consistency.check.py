"""Host check for top-consistency: `oomguard top --json --all` agrees with the kernel's own view."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from e2e_common import load_top, read_text, write_result  # noqa: E402


def parse_kv_lines(path):
    """'PID key=value ...' lines -> {pid: {key: value}}"""
    out = {}
    for line in (read_text(path, 1 << 20) or "").splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        out[int(parts[0])] = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return out


def parse_scores(path):
    out = {}
    for line in (read_text(path, 1 << 20) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].lstrip("-").isdigit():
            out[int(parts[0])] = int(parts[1])
    return out


def main(share):
    raw = os.path.join(share, "raw")
    checks = []

    def check(name, ok, detail=""):
        checks.append({"check": name, "passed": bool(ok), "detail": detail if not ok else ""})
        return ok

    hogs = []
    for line in (read_text(os.path.join(raw, "hogs")) or "").splitlines():
        parts = line.split()
        if len(parts) == 5:
            hogs.append({"name": parts[0], "pid": int(parts[1]), "mib": int(parts[2]), "adj": int(parts[3]),
                         "cgroup": "/" if parts[4] == "-" else parts[4]})
    meminfo = dict(line.split() for line in (read_text(os.path.join(raw, "meminfo")) or "").splitlines())
    procs = parse_kv_lines(os.path.join(raw, "procs"))
    procs_after = parse_kv_lines(os.path.join(raw, "procs.after"))
    before = parse_scores(os.path.join(raw, "scores.before"))
    after = parse_scores(os.path.join(raw, "scores.after"))
    if not check("guest recorded everything", os.path.exists(os.path.join(raw, "done")) and len(hogs) == 9,
                 "raw/done missing or hogs incomplete: %d hogs" % len(hogs)):
        return write_result(share, "top-consistency", False, {"checks": len(checks), "failed": 1}, checks=checks)

    def read_top(tag):
        d = os.path.join(raw, "_" + tag)
        os.makedirs(d, exist_ok=True)
        for suffix in ("json", "rc", "err"):
            src = os.path.join(raw, "top-%s.%s" % (tag, suffix))
            dst = os.path.join(d, "top." + suffix)
            if os.path.exists(src):
                with open(src, "rb") as s, open(dst, "wb") as t:
                    t.write(s.read())
        return load_top(d)

    host, err = read_top("host")
    tc, err_tc = read_top("tc")
    check("top --domain host ran and printed valid JSON", host is not None, err)
    check("top --domain /tc ran and printed valid JSON", tc is not None, err_tc)
    host_total = (int(meminfo.get("MemTotal:", 0)) + int(meminfo.get("SwapTotal:", 0))) // 4
    tc_total = 160 * 256
    figures = {}

    def ranking(doc, label):
        cands = doc["candidates"]
        ranks = [c.get("rank") for c in cands]
        check("%s: ranks are 1..n" % label, ranks == list(range(1, len(cands) + 1)), "ranks %s" % ranks[:20])
        pts = [c.get("points") for c in cands if c.get("killable")]
        check("%s: killable candidates in non-increasing points" % label,
              all(a >= b for a, b in zip(pts, pts[1:])), "points %s" % pts[:20])
        return {c.get("pid"): c for c in cands}

    if host is not None:
        dom = host["domain"]
        check("host domain is kind=host cgroup=/", dom.get("kind") == "host" and dom.get("cgroup") == "/", str(dom))
        check("host totalpages = MemTotal + SwapTotal in pages", dom.get("totalpages") == host_total,
              "oomguard %s, kernel %d" % (dom.get("totalpages"), host_total))
        by_pid = ranking(host, "host")
        figures["host_candidates"] = len(by_pid)
        compared, wrong = 0, []
        for pid, c in by_pid.items():
            if pid in before and before.get(pid) == after.get(pid):
                compared += 1
                if c.get("oom_score") != before[pid]:
                    wrong.append("pid %s (%s): oomguard %s, /proc %s" % (pid, c.get("comm"), c.get("oom_score"),
                                                                       before[pid]))
        figures["oom_scores_compared"] = compared
        check("oom_score equals /proc/PID/oom_score for every stable candidate", not wrong and compared >= len(hogs),
              "; ".join(wrong[:20]) or "only %d compared" % compared)
        # The model's own oom_score: the kernel reads the per-CPU mm counters approximately while
        # /proc/PID/status holds exact sums, so the kernel's value must lie within what the model's points
        # give at the ends of that drift band: 4 counters * (batch - 1) pages per CPU, batch = max(32, 2 * CPUs).
        cpus = 1
        batch = max(32, 2 * cpus)
        band = 4 * (batch - 1) * cpus
        total = dom.get("totalpages") or 1

        def score(points):
            q = abs(points) * 1000 // total
            return (1000 + (q if points >= 0 else -q)) * 2 // 3

        exact, outside = 0, []
        for pid, c in by_pid.items():
            if pid not in before or before.get(pid) != after.get(pid) or not c.get("killable"):
                continue
            if c.get("oom_score_computed") == before[pid]:
                exact += 1
            elif not score(c["points"] - band) <= before[pid] <= score(c["points"] + band):
                outside.append("pid %s: points %s, kernel %s" % (pid, c["points"], before[pid]))
        figures["oom_scores_computed_exactly"] = exact
        check("oom_score_computed is within the per-CPU counter drift of /proc/PID/oom_score", not outside,
              "; ".join(outside[:20]))
        for h in hogs:
            c = by_pid.get(h["pid"])
            if not check("host lists hog %s" % h["name"], c is not None, "pid %d missing" % h["pid"]):
                continue
            check("hog %s: comm, adj, cgroup" % h["name"],
                  (c.get("comm"), c.get("oom_score_adj"), c.get("cgroup")) == (h["name"], h["adj"], h["cgroup"]),
                  "oomguard %s" % {k: c.get(k) for k in ("comm", "oom_score_adj", "cgroup")})
            check("hog %s: killable iff adj != -1000" % h["name"], c.get("killable") == (h["adj"] != -1000),
                  "killable %s with adj %d" % (c.get("killable"), h["adj"]))
            p, pa = procs.get(h["pid"], {}), procs_after.get(h["pid"], {})
            if p and p == pa:
                rss = sum(int(p.get(k, 0)) for k in ("RssAnon", "RssFile", "RssShmem"))
                mine = (c.get("rss_kb"), c.get("swap_kb"), c.get("pgtables_kb"))
                kern = (rss, int(p.get("VmSwap", 0)), int(p.get("VmPTE", 0)))
                check("hog %s: rss/swap/pgtables kB equal /proc status" % h["name"], mine == kern,
                      "oomguard %s, /proc %s" % (mine, kern))
            if h["adj"] != -1000:  # an unkillable task is never the victim: its group kill is unspecified
                want_group = "/tc/b" if h["cgroup"] == "/tc/b" else None
                check("hog %s: group_kill_cgroup in host domain" % h["name"],
                      c.get("group_kill_cgroup") == want_group,
                      "oomguard %s, expected %s" % (c.get("group_kill_cgroup"), want_group))

    if tc is not None:
        dom = tc["domain"]
        check("/tc domain is kind=memcg cgroup=/tc", dom.get("kind") == "memcg" and dom.get("cgroup") == "/tc",
              str(dom))
        check("/tc totalpages = memory.max in pages (swap.max 0)", dom.get("totalpages") == tc_total,
              "oomguard %s, expected %d" % (dom.get("totalpages"), tc_total))
        by_pid = ranking(tc, "/tc")
        want = {h["pid"] for h in hogs if h["cgroup"].startswith("/tc/")}
        check("/tc candidates are exactly the tasks of its subtree", set(by_pid) == want,
              "oomguard %s, cgroup.procs %s" % (sorted(by_pid), sorted(want)))
        for h in hogs:
            c = by_pid.get(h["pid"])
            if c is None:
                continue
            if h["adj"] != -1000:
                want_group = "/tc/b" if h["cgroup"] == "/tc/b" else None
                check("hog %s: group_kill_cgroup in /tc domain" % h["name"], c.get("group_kill_cgroup") == want_group,
                      "oomguard %s, expected %s" % (c.get("group_kill_cgroup"), want_group))
            hc = (host or {"candidates": []})["candidates"]
            hc = next((x for x in hc if x.get("pid") == h["pid"]), None)
            if hc is not None and c.get("killable") and hc.get("killable"):
                base_tc = c.get("points", 0) - h["adj"] * (tc_total // 1000)
                base_host = hc.get("points", 0) - h["adj"] * (host_total // 1000)
                check("hog %s: points differ between domains only by the adj term" % h["name"],
                      base_tc == base_host, "/tc base %s, host base %s" % (base_tc, base_host))

    failed = [c for c in checks if not c["passed"]]
    figures.update({"checks": len(checks), "failed": len(failed)})
    return write_result(share, "top-consistency", not failed, figures, failures=failed, checks=checks)


if __name__ == "__main__":
    main(sys.argv[1])
