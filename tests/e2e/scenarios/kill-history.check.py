"""Host check for kill-history: three kernel OOM kills in a pod laid out as the kubelet lays it out
(systemd driver, containerd), the daemon killed with SIGKILL between the first and the second.

Asserted:
- the kernel killed exactly the three leakers (each kmsgN.txt has one "Killed process", its pid a
  leaker's, in the right container's cgroup); app's main process lived;
- `oomguard history --json` (run with no daemon) has each of the three kills exactly once (keyed by
  kmsg sequence number, equal to the kernel's), each attributed to the pod (pod_uid) and its container
  (container_id, cgroup), with the victim's comm and RSS; the second marked replayed (made while the
  daemon was down), the first and third not; no gap; the table shows the three;
- the daemon logged kills 1 and 3 live (kernel_oom_kill with the pod's uid and the container's id) and,
  on its second start, history_resumed with one kill journaled;
- the second run stopped on SIGTERM with exit 0.
Writes SHARE/result.json."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import read_kv  # noqa: E402
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import read_kmsg, read_text, write_result  # noqa: E402

KILLED = re.compile(r"^(?:.*?: )?Killed process (?P<pid>\d+) \((?P<comm>.*?)\)")


def read_jsonl(path):
    out, bad = [], 0
    if not os.path.exists(path):
        return out, 1
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                bad += 1
    return out, bad


def main(share):
    errors = []
    p = read_kv(os.path.join(share, "params"))
    if not os.path.exists(os.path.join(share, "run.done")):
        errors.append("the guest script did not finish")
    events, bad = read_daemon_log(share)
    lifecycle, life_errors = check_lifecycle(share, events, bad)
    errors += life_errors
    containers = {1: ("app", p.get("app_cgroup"), p.get("app_id"), "app-child"),
                  2: ("sidecar", p.get("sidecar_cgroup"), p.get("sidecar_id"), "sidecar-leak"),
                  3: ("app", p.get("app_cgroup"), p.get("app_id"), "app-child")}
    kernel = {}
    for n in (1, 2, 3):
        kills = []
        for _level, seq, _usec, msg in read_kmsg(os.path.join(share, "kmsg%d.txt" % n)):
            m = KILLED.match(msg)
            if m:
                kills.append({"seq": seq, "pid": int(m.group("pid")), "comm": m.group("comm")})
        if len(kills) != 1:
            errors.append("kill %d: the kernel killed %d processes, expected 1" % (n, len(kills)))
            continue
        kernel[n] = kills[0]
        if kills[0].get("comm") != containers[n][3]:
            errors.append("kill %d: the kernel killed %r, expected the leaker %r" % (n, kills[0].get("comm"), containers[n][3]))
    if p.get("app_main_alive") != "1":
        errors.append("app's main process died: only its leaking child was to be killed")

    history, history_bad = read_jsonl(os.path.join(share, "history.jsonl"))
    if p.get("history_json_rc") != "0" or p.get("history_rc") != "0":
        errors.append("oomguard history exited %s / %s" % (p.get("history_json_rc"), p.get("history_rc")))
    if history_bad:
        errors.append("%d lines of oomguard history --json are not JSON" % history_bad)
    kills = [r for r in history if r.get("kind") == "kill"]
    gaps = [r for r in history if r.get("kind") == "gap"]
    if gaps:
        errors.append("the history has gaps: %s" % gaps)
    seqs = [r.get("seq") for r in kills]
    if len(seqs) != len(set(seqs)):
        errors.append("a kill is in the history twice: sequence numbers %s" % seqs)
    by_seq = {r.get("seq"): r for r in kills}
    for n, killed in kernel.items():
        name, cgroup, container_id, comm = containers[n]
        seq = killed.get("seq")
        record = by_seq.get(seq)
        if record is None:
            errors.append("kill %d (kmsg seq %s, pid %s) is not in the history (history seqs %s)" % (n, seq, killed.get("pid"), seqs))
            continue
        workload = record.get("workload") or {}
        checks = [("pid", record.get("pid"), killed.get("pid")), ("comm", record.get("comm"), comm),
                  ("cgroup", record.get("cgroup"), cgroup), ("pod_uid", workload.get("pod_uid"), p.get("pod_uid")),
                  ("container_id", workload.get("container_id"), container_id),
                  ("killer", record.get("killer"), "kernel"), ("constraint", record.get("constraint"), "CONSTRAINT_MEMCG"),
                  ("replayed", bool(record.get("replayed")), n == 2)]
        for what, got, want in checks:
            if got != want:
                errors.append("kill %d (%s): %s is %r, expected %r" % (n, name, what, got, want))
        # The container's memory.max, read when the daemon saw the kill live (the replayed one was not).
        want_limit = None if n == 2 else 48 * 2 ** 20
        if record.get("domain_limit_bytes") != want_limit:
            errors.append("kill %d: domain_limit_bytes %r, expected %r" % (n, record.get("domain_limit_bytes"), want_limit))
        if not isinstance(record.get("anon_rss_kb"), int) or record["anon_rss_kb"] < 20 * 1024:
            errors.append("kill %d: anon_rss_kb %r, expected the leaker's (tens of MiB)" % (n, record.get("anon_rss_kb")))
    if len(kills) != 3:
        errors.append("the history has %d kills, expected 3: %s" % (len(kills), [(r.get("seq"), r.get("comm")) for r in kills]))
    table = read_text(os.path.join(share, "history.txt")) or ""
    if table.count("app-child") != 2 or table.count("sidecar-leak") != 1:
        errors.append("the history table does not show the three kills:\n%s" % table[:1500])

    # The daemon's own lines: kills 1 and 3 live, with the pod and container; kill 2 found on restart.
    live = [e for _, e in events if e.get("event") == "kernel_oom_kill"]
    run1, _ = read_jsonl(os.path.join(share, "daemon-run1.jsonl"))
    live += [e for e in run1 if e.get("event") == "kernel_oom_kill"]
    for e in live:
        w = e.get("workload") or {}
        if w.get("pod_uid") != p.get("pod_uid") or w.get("container_id") != p.get("app_id"):
            errors.append("kernel_oom_kill line not attributed to app: %s" % w)
    if len(live) != 2:
        errors.append("the daemon logged %d kernel_oom_kill lines, expected 2 (kills 1 and 3)" % len(live))
    resumed = [e for _, e in events if e.get("event") == "history_resumed"]
    if not resumed or resumed[0].get("kills_journaled") != 1:
        errors.append("second start: history_resumed %s, expected one kill journaled (kill 2)" % resumed[:1])

    figures = {"kernel_kills": len(kernel), "history_kills": len(kills), "replayed": sum(1 for r in kills if r.get("replayed")),
               "gaps": len(gaps), "history_seqs": seqs, "kernel_seqs": [kernel[n].get("seq") for n in sorted(kernel)],
               "resumed": resumed[0] if resumed else None, "stop_ms": lifecycle.get("stop_ms")}
    write_result(share, "kill-history", not errors, figures, errors=errors, params=p, history=history,
                 lifecycle=lifecycle, state=read_text(os.path.join(share, "state.ls")))


if __name__ == "__main__":
    main(sys.argv[1])
