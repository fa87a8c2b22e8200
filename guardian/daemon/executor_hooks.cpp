// Executor: the operator's hooks at the stages of a kill (config::Hooks). pre_kill runs between the
// decision and the signal, which waits for it at most its timeout; post_kill runs once the victim is gone.
#include <sys/stat.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cgroupfs/paths.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/text/format.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;
using policies::DecisionResult;

// The inode of a cgroup's directory (nullopt: gone or unreadable).
std::optional<uint64_t> inodeOf(const std::string& cgroup_root, const std::string& cgroup) {
  struct stat st {};
  if (::stat((cgroup == "/" ? cgroup_root : cgroup_root + cgroup).c_str(), &st) != 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(st.st_ino);
}

// Microseconds as milliseconds with one decimal, for the log.
double tenthsOfMs(uint64_t us) { return std::floor(static_cast<double>(us) / 100.0) / 10.0; }

std::string keyOf(const policies::VictimCandidate& victim) {
  return victim.pid != 0 ? "pid:" + std::to_string(victim.pid) : "cgroup:" + victim.group_kill_cgroup.value_or("");
}

}  // namespace

void Executor::runHook(const std::string& stage, const config::Hook& hook, const KillPlan& plan, const std::string& key,
                       Json extra, std::function<void(const io::HookOutcome&)> then) {
  const policies::VictimCandidate& victim = plan.victim;
  const kube::Workloads::Resolved resolved = podOf(victim);
  // stdin: one JSON document (invalid UTF-8 of a name replaced, as in the log). The environment: the
  // same facts as plain values (a name's bytes as they are).
  Json event{{"hook", stage},
             {"time", log_.timestamp()},
             {"domain", plan.domain},
             {"policy", plan.policy},
             {"reason", plan.reason_kind},
             {"victim", Json{{"pid", victim.pid},
                             {"comm", victim.comm},
                             {"cgroup", victim.cgroup},
                             {"points", victim.points},
                             {"oom_score_adj", victim.oom_score_adj}}}};
  if (victim.group_kill_cgroup) {
    event["group_kill_cgroup"] = *victim.group_kill_cgroup;
  }
  if (!resolved.labels.pod.empty()) {
    event["pod"] = Json{{"namespace", resolved.labels.namespace_name},
                        {"pod", resolved.labels.pod},
                        {"container", resolved.labels.container}};
  }
  for (auto& [field, value] : extra.items()) {
    event[field] = value;
  }
  std::vector<std::string> env{"OOMGUARD_HOOK=" + stage,
                               "OOMGUARD_DOMAIN=" + plan.domain,
                               "OOMGUARD_POLICY=" + plan.policy,
                               "OOMGUARD_REASON=" + plan.reason_kind,
                               "OOMGUARD_PID=" + std::to_string(victim.pid),
                               "OOMGUARD_COMM=" + victim.comm,
                               "OOMGUARD_CGROUP=" + victim.cgroup,
                               "OOMGUARD_NAMESPACE=" + resolved.labels.namespace_name,
                               "OOMGUARD_POD=" + resolved.labels.pod,
                               "OOMGUARD_CONTAINER=" + resolved.labels.container};
  log_.write("hook_start", Json{{"hook", stage}, {"argv0", hook.argv.front()}, {"domain", plan.domain},
                                {"pid", victim.pid}, {"comm", victim.comm}, {"timeout_ms", hook.timeout_ms}});
  hooks_.run(stage, hook, config_.hooks, key, text::jsonText(event), std::move(env), std::move(then));
}

void Executor::runWarnHook(const std::string& domain, const config::ActRule& rule, policies::Action policy,
                           const policies::VictimCandidate& victim, const std::string& reason_kind, Json extra) {
  if (!config_.hooks.warn || options_.dry_run) {
    return;
  }
  KillPlan plan = planFor(domain, victim, rule, reason_kind);
  plan.policy = policies::toString(policy);
  runHook("warn", *config_.hooks.warn, plan, "warn:" + domain, std::move(extra),
          [this, plan](const io::HookOutcome& outcome) { reportHook(outcome, plan); });
}

void Executor::reportHook(const io::HookOutcome& outcome, const KillPlan& plan) {
  metrics_.countHook(outcome.hook, outcome.result);
  Json line{{"hook", outcome.hook},  {"result", outcome.result},       {"detail", outcome.detail},
            {"domain", plan.domain}, {"victim_pid", plan.victim.pid}, {"hook_pid", outcome.pid},
            {"duration_ms", tenthsOfMs(outcome.duration_us)}};
  if (!outcome.output.empty()) {
    line["output"] = outcome.output;  // the log writer replaces invalid UTF-8 and escapes control bytes
  }
  if (outcome.output_truncated) {
    line["output_truncated"] = true;
  }
  log_.write("hook", line);
}

void Executor::startPreKill(KillPlan plan, const std::shared_ptr<io::PinnedProcess>& pinned,
                            policies::Outcome& outcome) {
  const config::Hook& hook = *config_.hooks.pre_kill;
  const policies::VictimCandidate& victim = plan.victim;
  // From now on the kill is under way: the gate holds the victim's domains (for the hook's timeout, its
  // grace and the bounded wait) and counts it toward the kill cap, so no second victim is chosen while
  // the hook runs. A victim that exits meanwhile is released as any other.
  const std::string holder = victim.group_kill_cgroup ? *victim.group_kill_cgroup
                             : victim.cgroup.empty()  ? plan.domain
                                                      : victim.cgroup;
  gate_.recordKill(holder, pinned ? pinned->pid() : 0, plan.decided_us, plan.budget,
                   (uint64_t{plan.grace_ms} + hook.timeout_ms) * 1000);
  if (pinned) {
    victim_pins_[pinned->pid()] = pinned;
  } else {
    killed_cgroups_.insert(holder);
    plan.cgroup_inode = inodeOf(options_.cgroup_root, holder);
  }
  plan.reserved = true;
  auto pending = std::make_shared<KillPlan>(std::move(plan));
  pending_kills_.emplace_back(pending, pinned);
  outcome.result = DecisionResult::kPreKillHook;
  outcome.detail = "the pre_kill hook " + hook.argv.front() + " runs first; the kill follows when it ends, within " +
                   std::to_string(hook.timeout_ms) + " ms";
  runHook("pre_kill", hook, *pending, keyOf(victim), Json{{"timeout_ms", hook.timeout_ms}},
          [this, pending, pinned](const io::HookOutcome& result) {
            reportHook(result, *pending);
            completeKill(pending, pinned, result);
          });
}

void Executor::completeKill(const std::shared_ptr<KillPlan>& plan, const std::shared_ptr<io::PinnedProcess>& pinned,
                            const io::HookOutcome& hook) {
  // Once: a hook's outcome queued before stopHooks() made this kill may still arrive after it.
  if (std::erase_if(pending_kills_, [&](const auto& entry) { return entry.first == plan; }) == 0) {
    return;
  }
  const policies::VictimCandidate& victim = plan->victim;
  policies::Outcome outcome;
  outcome.action = victim.group_kill_cgroup ? policies::DecisionAction::kKillCgroup : policies::DecisionAction::kKill;
  std::optional<cgroupfs::ProcStatus> status;
  std::optional<std::string> no_kill;
  if (plan->kernel_killed) {
    // One OOM, one victim: the kernel's kill answered this shortage (or another in the same domains).
    no_kill = "the kernel killed " + plan->kernel_kill + " while the pre_kill hook ran: no second kill";
  } else if (pinned) {
    no_kill = changedSince(*plan, *pinned, status);
  } else if (victim.group_kill_cgroup && inodeOf(options_.cgroup_root, *victim.group_kill_cgroup) != plan->cgroup_inode) {
    no_kill = "cgroup " + *victim.group_kill_cgroup + " was removed (or made again) while the pre_kill hook ran";
  }
  if (no_kill) {
    outcome.result = pinned && pinned->exited() ? DecisionResult::kGone : DecisionResult::kChanged;
    outcome.detail = *no_kill;
    metrics_.countKill(plan->policy, plan->reason_kind, "gone");
    unreserve(*plan, pinned);  // a kernel victim holds the gate by its own entry
  } else {
    signal(*plan, pinned, status, outcome);
  }
  Json line{{"domain", plan->domain},
            {"pid", victim.pid},
            {"comm", victim.comm},
            {"cgroup", victim.cgroup},
            {"result", policies::toString(outcome.result)},
            {"detail", outcome.detail.value_or("")},
            {"pre_kill", hook.result},
            {"since_decision_ms", tenthsOfMs(clock_.monotonic_us() - plan->decided_us)}};
  if (outcome.killed_cgroup) {
    line["killed_cgroup"] = *outcome.killed_cgroup;
  }
  log_.write("kill", line);
}

void Executor::unreserve(const KillPlan& plan, const std::shared_ptr<io::PinnedProcess>& pinned) {
  gate_.refund(plan.budget, plan.decided_us);
  if (pinned && !plan.kernel_killed_victim) {
    gate_.release(pinned->pid());
    victim_pins_.erase(pinned->pid());
  } else if (!pinned && plan.victim.group_kill_cgroup) {
    gate_.releaseCgroup(*plan.victim.group_kill_cgroup);
    killed_cgroups_.erase(*plan.victim.group_kill_cgroup);
  }
}

void Executor::stopHooks() {
  hooks_.stop();  // no hook calls back after this
  const auto pending = std::move(pending_kills_);
  pending_kills_.clear();
  for (const auto& [plan, pinned] : pending) {
    plan->grace_ms = 0;  // no SIGTERM grace: its timer would hold the loop past the daemon's exit
    pending_kills_.emplace_back(plan, pinned);  // completeKill makes each once
    io::HookOutcome cancelled;
    cancelled.hook = "pre_kill";
    cancelled.result = "cancelled";
    cancelled.detail = "oomguard is stopping: the hook was killed and the kill is made now";
    reportHook(cancelled, *plan);
    completeKill(plan, pinned, cancelled);
  }
}

void Executor::runPostKill(const std::string& key, bool victim_gone) {
  const auto found = post_kill_due_.find(key);
  if (found == post_kill_due_.end()) {
    return;
  }
  auto plan = std::make_shared<KillPlan>(std::move(found->second));
  post_kill_due_.erase(found);
  if (!config_.hooks.post_kill) {
    return;  // a reload took it away
  }
  runHook("post_kill", *config_.hooks.post_kill, *plan, key, Json{{"victim_gone", victim_gone}},
          [this, plan](const io::HookOutcome& result) { reportHook(result, *plan); });
}

void Executor::recordKernelKill(const std::string& cgroup, pid_t pid, uint64_t now_us) {
  // A kill waiting for its pre_kill hook is not made when the kernel killed in its domain meanwhile:
  // a named victim in the domain or in a cgroup above it (an OOM of an enclosing domain), or an
  // oom_kill rise of memory.events in the domain or below (such a rise also shows in every ancestor's
  // hierarchical memory.events: an unrelated pod's OOM must not cancel it). A hook the kernel killed is
  // not the OOM's answer (with oom_score_adj 1000 it is the kernel's first choice).
  if (!(pid > 0 && hooks_.isHook(pid))) {
    for (const auto& [pending, unused] : pending_kills_) {
      const std::string& domain = pending->domain;
      if (cgroupfs::isSameOrBelow(cgroup, domain) || (pid > 0 && cgroupfs::isSameOrBelow(domain, cgroup))) {
        pending->kernel_killed = true;
        pending->kernel_killed_victim = pending->kernel_killed_victim || (pid > 0 && pid == pending->victim.pid);
        pending->kernel_kill = (pid > 0 ? "pid " + std::to_string(pid) + " in " : std::string("a task in ")) + cgroup;
      }
    }
  }
  gate_.recordKernelKill(cgroup, pid, now_us);
  if (pid <= 0) {
    return;
  }
  if (auto pinned = actuator_.pin(pid); pinned && !pinned.value()->exited()) {
    victim_pins_[pid] = std::move(pinned).value();
  } else if (pinned || pinned.error().vanished()) {
    gate_.release(pid);  // already gone: its memory is back
  }
  // Otherwise (no descriptor left, say) nothing is known of it: the gate waits for it its bounded time.
}

}  // namespace oomguard::guardian::daemon
