"""Host check for panic: without policy.allow_panic a "panic" act rule is refused (check-config and run
exit 2, naming /policy/allow_panic); with it, check-config accepts the config, and when the threshold is
crossed the daemon's decision line (action "panic", result "panicking", policy "panic") reaches the
console before the kernel's "sysrq: Trigger a crash" and "Kernel panic" lines, and the guest never
reaches its exit marker (vmrun --expect-panic exits 0 only then). Writes SHARE/result.json."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from act_check import epoch, intval, read_kv  # noqa: E402
from e2e_common import read_text, write_result  # noqa: E402

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")


def main(share):
    errors = []
    p = read_kv(os.path.join(share, "params"))
    # The refusal without the second opt-in.
    refused_out = (read_text(os.path.join(share, "check-refused.out")) or "").strip()
    run_err = (read_text(os.path.join(share, "run-refused.err")) or "").strip()
    if p.get("check_config_refused_rc") != "2":
        errors.append("check-config without allow_panic exited %s, expected 2" % p.get("check_config_refused_rc"))
    if "/policy/allow_panic" not in refused_out:
        errors.append("check-config's refusal does not name /policy/allow_panic: %r" % refused_out[:300])
    if p.get("run_refused_rc") != "2":
        errors.append("run without allow_panic exited %s, expected 2" % p.get("run_refused_rc"))
    if "/policy/allow_panic" not in run_err:
        errors.append("run's refusal does not name /policy/allow_panic: %r" % run_err[:300])
    if p.get("check_config_allowed_rc") != "0":
        errors.append("check-config with allow_panic exited %s, expected 0" % p.get("check_config_allowed_rc"))
    if p.get("daemon_alive_before_trigger") != "1":
        errors.append("the daemon was not running before the trigger: %s"
                      % (read_text(os.path.join(share, "daemon.err")) or "")[-500:])
    if p.get("triggered") != "1":
        errors.append("the guest never reached the trigger")
    if "no_panic_after_s" in p:
        errors.append("the kernel did not panic within %s s of the trigger" % p["no_panic_after_s"])

    # The console.
    lines = (read_text(os.path.join(share, "console.log"), limit=10 ** 7) or "").splitlines()
    decision_idx = sysrq_idx = panic_idx = trigger_idx = None
    decision, daemon_lines, bad_json = None, 0, []
    for i, line in enumerate(lines):
        if line.startswith('{"time"'):
            daemon_lines += 1
            try:
                doc = json.loads(line)
            except ValueError:
                bad_json.append(line[:200])
                continue
            if doc.get("event") == "decision" and doc.get("action") == "panic" and decision is None:
                decision, decision_idx = doc, i
            if doc.get("event") == "panic_failed":
                errors.append("the daemon logged panic_failed: %s" % doc.get("detail"))
        elif "@@PANIC-SCENARIO trigger" in line and trigger_idx is None:
            trigger_idx = i
        elif "sysrq: Trigger a crash" in line and sysrq_idx is None:
            sysrq_idx = i
        elif "Kernel panic - not syncing" in line and panic_idx is None:
            panic_idx = i
    exit_marker = any("@@VMRUN-EXIT=" in line for line in lines)
    if exit_marker:
        errors.append("the guest reached its exit marker: the kernel did not panic")
    if decision is None:
        errors.append("no decision line with action \"panic\" on the console (%d daemon lines, %d not JSON: %s)"
                      % (daemon_lines, len(bad_json), bad_json[:2]))
    else:
        if decision.get("result") != "panicking" or decision.get("policy") != "panic":
            errors.append("the panic decision has policy %r result %r, expected panic / panicking"
                          % (decision.get("policy"), decision.get("result")))
        if (decision.get("domain") or {}).get("kind") != "host":
            errors.append("the panic decision is not for the host domain: %s" % decision.get("domain"))
        if not str(decision.get("reason", "")).startswith("MemAvailable"):
            errors.append("the panic decision's reason is %r, expected the MemAvailable threshold" % decision.get("reason"))
    if panic_idx is None:
        errors.append("no \"Kernel panic - not syncing\" line on the console")
    if sysrq_idx is None:
        errors.append("no \"sysrq: Trigger a crash\" line on the console (the panic came from elsewhere)")
    if decision_idx is not None and panic_idx is not None and decision_idx > panic_idx:
        errors.append("the decision line (console line %d) came after the panic (line %d)" % (decision_idx, panic_idx))
    if decision_idx is not None and sysrq_idx is not None and decision_idx > sysrq_idx:
        errors.append("the decision line (console line %d) came after the sysrq crash line (%d)" % (decision_idx, sysrq_idx))
    if trigger_idx is not None and decision_idx is not None and decision_idx < trigger_idx:
        errors.append("the panic decision came before the trigger (console line %d < %d)" % (decision_idx, trigger_idx))
    panic_uptime = None
    if panic_idx is not None:
        m = STAMP.match(lines[panic_idx])
        panic_uptime = float(m.group(1)) if m else None
    trig = re.search(r"trigger uptime=([\d.]+)", lines[trigger_idx]) if trigger_idx is not None else None
    figures = {
        "check_config_refused_rc": intval(p.get("check_config_refused_rc")),
        "run_refused_rc": intval(p.get("run_refused_rc")),
        "decision_before_panic": decision_idx is not None and panic_idx is not None and decision_idx < panic_idx,
        "console_lines_decision_to_panic": (panic_idx - decision_idx) if decision_idx is not None and panic_idx is not None else None,
        "reaction_us": decision.get("reaction_us") if decision else None,
        "reason": decision.get("reason") if decision else None,
        "trigger_to_panic_s": round(panic_uptime - float(trig.group(1)), 2) if panic_uptime is not None and trig else None,
        "exit_marker": exit_marker,
    }
    write_result(share, "panic", not errors, figures, errors=errors, params=p, decision=decision,
                 decision_time_epoch=epoch(decision.get("time")) if decision else None,
                 console_tail=lines[panic_idx - 3:panic_idx + 3] if panic_idx else lines[-20:])


if __name__ == "__main__":
    main(sys.argv[1])
