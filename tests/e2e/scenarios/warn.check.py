"""Host check for warn: one warning for /wn before the decision, naming the leaker, with a time-to-OOM
forecast within 25 % of the leak's own time to memory.max (measured from the guest's sampler: the rate
fitted to its readings, the use read when the warn hook started); the warn hook ran with the warning's
event; then the decision (pre_kill_hook, the leaker) and the pre_kill hook's start, after the warning with
the leaker alive, the kill no later than its 300 ms timeout plus KILL_SLACK_MS after the decision (and
not before the timeout: the hook sleeps past it), the leaker died of SIGKILL, the post_kill hook saw it
gone, no hook process outlived its timeout, the neighbour lives, and the kernel's OOM killer never ran.
Writes SHARE/result.json."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import decisions, in_range, intval, kernel_oom_errors, num, read_kv, read_leak, slim  # noqa: E402
from daemon_check import check_lifecycle, read_daemon_log  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

DOMAIN = "/wn"
TIMEOUT_MS = 300
KILL_SLACK_MS = 300  # as in hooks.check.py: the loop's turn after the deadline under TCG
FORECAST_TOLERANCE = 0.25


def read_samples(path):
    """sampler.txt -> [(uptime_s, bytes)]."""
    out = []
    for line in (read_text(path, limit=10 ** 6) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and num(parts[0]) is not None and num(parts[1]) is not None:
            out.append((num(parts[0]), num(parts[1])))
    return out


def leak_rate(samples):
    """Least-squares bytes/s over the leak: from the first sample 4 MiB above the rest level to the peak."""
    if len(samples) < 4:
        return None
    rest = samples[0][1]
    peak = max(range(len(samples)), key=lambda i: samples[i][1])
    leak = [s for s in samples[:peak + 1] if s[1] > rest + 4 * 2 ** 20]
    if len(leak) < 4:
        return None
    n = len(leak)
    mt = sum(t for t, _ in leak) / n
    mu = sum(u for _, u in leak) / n
    var = sum((t - mt) ** 2 for t, _ in leak)
    return sum((t - mt) * (u - mu) for t, u in leak) / var if var > 0 else None


def use_at(samples, t):
    """The sampled use at uptime t (linear between the two samples around it)."""
    for (t0, u0), (t1, u1) in zip(samples, samples[1:]):
        if t0 <= t <= t1 and t1 > t0:
            return u0 + (u1 - u0) * (t - t0) / (t1 - t0)
    return None


def index_of(lines, pred):
    return next((n for n, e in lines if pred(e)), None)


def main(share):
    events, bad = read_daemon_log(share)
    lifecycle, life_errors = check_lifecycle(share, events, bad)
    errors = list(life_errors)
    p = read_kv(os.path.join(share, "params"))
    leak = read_leak(os.path.join(share, "leak.txt"))
    leaker = leak.get("pid")
    lines = in_range(events, intval(p.get("daemon_line_start"), 0), intval(p.get("daemon_line_end")))
    figures = {"completed": os.path.exists(os.path.join(share, "runs.done")), "stop_ms": lifecycle.get("stop_ms")}
    if not p:
        errors.append("no params: the scenario did not run")
    if not leak["present"] or leak.get("timed_out") != 0 or not leak["killed_by_sigkill"]:
        errors.append("the leaker did not die of SIGKILL in time: %s" % {k: leak.get(k) for k in ("present", "timed_out", "status")})

    warnings = [(n, e) for n, e in lines if e.get("event") == "warning"]
    warning = warnings[0][1] if warnings else {}
    figures["warnings"] = len(warnings)
    if len(warnings) != 1:
        errors.append("%d warning lines, expected one (one excursion)" % len(warnings))
    if warning:
        if (warning.get("domain") or {}).get("cgroup") != DOMAIN or warning.get("reason") != "headroom":
            errors.append("the warning is not a headroom warning of %s: %s" % (DOMAIN, warning))
        if (warning.get("victim") or {}).get("pid") != leaker:
            errors.append("the warning named %s, the leaker is pid %s" % (warning.get("victim"), leaker))

    # The forecast against the leak's own time to memory.max.
    samples = read_samples(os.path.join(share, "sampler.txt"))
    rate = leak_rate(samples)
    warn_rec = read_kv(os.path.join(share, "warn.txt"))
    warned_at = num((warn_rec.get("warn") or "").split()[0] if warn_rec.get("warn") else None)
    used = use_at(samples, warned_at) if warned_at is not None else None
    limit = num(p.get("memory_max_bytes"))
    forecast = num(warning.get("oom_forecast_s"))
    measured = (limit - used) / rate if rate and used is not None and limit else None
    figures.update({"leak_rate_mib_s": round(rate / 2 ** 20, 2) if rate else None,
                    "oom_forecast_s": forecast, "measured_time_to_limit_s": round(measured, 1) if measured else None,
                    "forecast_error": round(forecast / measured - 1, 3) if forecast and measured else None})
    if forecast is None:
        errors.append("the warning has no oom_forecast_s: %s" % warning)
    if measured is None:
        errors.append("the time to the limit could not be measured (rate %s, use at the warning %s, %d samples)" % (
            rate, used, len(samples)))
    if forecast is not None and measured and abs(forecast / measured - 1) > FORECAST_TOLERANCE:
        errors.append("the forecast %.1f s is not within %d %% of the measured %.1f s" % (
            forecast, FORECAST_TOLERANCE * 100, measured))
    hook_lines = [e for _, e in lines if e.get("event") == "hook" and e.get("hook") == "warn"]
    if not hook_lines or hook_lines[0].get("result") != "ok":
        errors.append("no warn hook line with result ok: %s" % hook_lines[:1])
    try:
        warn_event = json.loads(read_text(os.path.join(share, "warn.json"), limit=10 ** 5) or "")
    except ValueError:
        warn_event = None
    if not isinstance(warn_event, dict) or warn_event.get("hook") != "warn" or \
            (warn_event.get("victim") or {}).get("pid") != leaker or warn_event.get("domain") != DOMAIN or \
            "headroom" not in str(warn_event.get("reading")) or warn_event.get("oom_forecast_s") != forecast:
        errors.append("the warn hook's stdin was not this warning's event: %r" % (warn_event,))

    # The order: the warning, then the decision and its pre_kill hook (the hook starts while the decision is
    # made: its hook_start line comes before the decision's line), then the kill.
    at_warning = warnings[0][0] if warnings else None
    at_decision = index_of(lines, lambda e: e.get("event") == "decision" and e.get("result") == "pre_kill_hook")
    at_pre = index_of(lines, lambda e: e.get("event") == "hook_start" and e.get("hook") == "pre_kill")
    at_kill = index_of(lines, lambda e: e.get("event") == "kill" and e.get("domain") == DOMAIN)
    order = [at_warning, at_decision, at_pre, at_kill]
    figures["line_order"] = order
    if None in order or not at_warning < min(at_decision, at_pre) <= max(at_decision, at_pre) < at_kill:
        errors.append("not the warning, then the decision and the pre_kill hook's start, then the kill, in the "
                      "log: lines %s" % order)
    decided = [e for _, e in decisions(lines, DOMAIN) if e.get("result") == "pre_kill_hook"]
    if decided and (decided[0].get("target") or {}).get("pid") != leaker:
        errors.append("the decision chose %s, the leaker is pid %s" % (slim(decided[0]).get("target"), leaker))
    kill = next((e for _, e in lines if e.get("event") == "kill" and e.get("domain") == DOMAIN), None)
    if kill:
        waited = num(kill.get("since_decision_ms"))
        figures["kill_since_decision_ms"] = waited
        if kill.get("result") != "killed" or kill.get("pid") != leaker or kill.get("pre_kill") != "timeout":
            errors.append("the kill line: %s" % kill)
        if waited is None or not TIMEOUT_MS - 10 <= waited <= TIMEOUT_MS + KILL_SLACK_MS:
            errors.append("the kill came %s ms after the decision, not within the hook's timeout %d ms (+%d)" % (
                waited, TIMEOUT_MS, KILL_SLACK_MS))
    pre = read_kv(os.path.join(share, "pre-%s.txt" % leaker))
    if "victim alive" not in (pre.get("pre_start") or ""):
        errors.append("the pre_kill hook left no record with the leaker alive: %s" % pre)
    post = read_kv(os.path.join(share, "post-%s.txt" % leaker))
    if "victim gone" not in (post.get("post") or ""):
        errors.append("the post_kill hook did not see the leaker gone: %s" % post)
    if intval(p.get("hook_sleepers_left"), 1) != 0:
        errors.append("the pre_kill hook's sleep outlived its timeout")
    if warned_at is not None and leak.get("death_mono") is not None:
        figures["warning_to_death_s"] = round(leak["death_mono"] - warned_at, 1)
    if p.get("neighbour_alive_after") != "1":
        errors.append("the neighbour died")
    errors += kernel_oom_errors(share, p, DOMAIN)
    passed = figures["completed"] and not errors
    write_result(share, "warn", passed, figures, lifecycle=lifecycle, errors=errors, warning=warning)


if __name__ == "__main__":
    main(sys.argv[1])
