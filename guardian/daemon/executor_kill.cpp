// Executor: a kill, from the decision to the signal (executor.hpp, Executor::kill).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "guardian/daemon/executor.hpp"

namespace oomguard::guardian::daemon {
namespace {

using policies::DecisionAction;
using policies::DecisionResult;

}  // namespace

void Executor::kill(const std::string& domain, const policies::VictimCandidate& victim, const config::ActRule& rule,
                    const std::string& reason_kind, uint64_t now_us, policies::Outcome& outcome) {
  KillPlan plan = planFor(domain, victim, rule, reason_kind);
  // A kill the pod asked for (its own pressure limit) spends the pod's budget, not the node's.
  plan.budget = reason_kind == kPodPressureReason ? domain : std::string();
  plan.decided_us = now_us;
  plan.snapshot_boot_ticks = snapshot_boot_ticks_;
  // The pod the victim belongs to, when the API server has told.
  const kube::Workloads::Resolved resolved = podOf(victim);
  outcome.target = policies::Target{victim, resolved.pod != nullptr, resolved.labels.namespace_name,
                                    resolved.labels.pod, resolved.labels.container};
  outcome.action = victim.group_kill_cgroup ? DecisionAction::kKillCgroup : DecisionAction::kKill;
  std::shared_ptr<io::PinnedProcess> pinned;
  std::optional<cgroupfs::ProcStatus> status;
  // A whole cgroup asked for as such (a pod's pressure-action kill-group, pid 0) has no member to pin.
  // Otherwise the pid is pinned first, for a single task and a group kill through it alike: what /proc
  // and the tree show then belong to the pinned process. A group is killed only through a member that
  // is still the one chosen (a grower measured at the last refresh may have exited, and its group with
  // it be innocent now).
  if (!(victim.pid == 0 && victim.group_kill_cgroup)) {
    auto pin = actuator_.pin(victim.pid);
    if (!pin) {
      outcome.result = DecisionResult::kGone;
      outcome.detail = pin.error().describe();
      metrics_.countKill(plan.policy, reason_kind, "gone");
      return;
    }
    if (auto why = changedSince(plan, *pin.value(), status)) {
      ++stats_.kills_no_data;
      outcome.result = DecisionResult::kChanged;
      outcome.detail = std::move(why);
      metrics_.countKill(plan.policy, reason_kind, "gone");
      return;
    }
    pinned = std::move(pin).value();
  }
  if (!victim.group_kill_cgroup) {
    // A pod's own grace replaces the rule's; outside protected_namespaces the rule's grace bounds it (an
    // operator who kills at once is never made to wait by a tenant).
    plan.grace_ms = rule.sigterm_grace_ms;
    if (const auto pod_grace = kube::Workloads::sigtermGraceSeconds(resolved);
        pod_grace && config_.kubernetes.annotations) {
      // A kill the pod asked for itself (its pressure limit) takes its own grace as it is.
      const bool trusted = (resolved.pod != nullptr &&
                            config::mayEscalate(config_.kubernetes.tenant, resolved.pod->namespace_name)) ||
                           reason_kind == kPodPressureReason;
      plan.grace_ms = trusted ? *pod_grace * 1000 : std::min(*pod_grace * 1000, rule.sigterm_grace_ms);
      outcome.sigterm_grace_ms = plan.grace_ms;
    }
  }
  if (config_.hooks.pre_kill) {
    if (!options_.dry_run) {
      startPreKill(std::move(plan), pinned, outcome);
      return;
    }
    // --dry-run shows the stage it would run first.
    signal(plan, pinned, status, outcome);
    outcome.detail = outcome.detail.value_or("") + "; first the pre_kill hook " + config_.hooks.pre_kill->argv.front() +
                     " (the kill would wait for it at most " + std::to_string(config_.hooks.pre_kill->timeout_ms) +
                     " ms)";
    return;
  }
  signal(plan, pinned, status, outcome);
}

Executor::KillPlan Executor::planFor(const std::string& domain, const policies::VictimCandidate& victim,
                                     const config::ActRule& rule, const std::string& reason_kind) {
  KillPlan plan;
  plan.domain = domain;
  plan.victim = victim;
  plan.rule = rule;
  plan.reason_kind = reason_kind;
  plan.policy = policies::toString(rule.action);
  return plan;
}

kube::Workloads::Resolved Executor::podOf(const policies::VictimCandidate& victim) const {
  return workloads_ != nullptr && !victim.cgroup.empty() ? workloads_->resolve(victim.cgroup)
                                                         : kube::Workloads::Resolved{};
}

std::optional<std::string> Executor::changedSince(const KillPlan& plan, const io::PinnedProcess& pinned,
                                                  std::optional<cgroupfs::ProcStatus>& status) {
  const policies::VictimCandidate& victim = plan.victim;
  // Membership is checked in the tree (cgroup.procs), where it was found: paths in /proc/<pid>/cgroup
  // are relative to the reader's cgroup namespace. A victim whose cgroup is unknown is never killed
  // (policies::exclusionReason): it is a member of none.
  auto now = node_.procfs().readProcess(victim.pid, false);
  if (now) {
    // --dry-run: the oom_score_adj it would have written stands in for /proc's, as in the ranking.
    std::vector<cgroupfs::ProcessSnapshot> read{now.value()};
    node_.overlayIntendedAdj(read);
    now.value().oom_score_adj = read.front().oom_score_adj;
  }
  bool member = false;
  if (!victim.cgroup.empty()) {
    if (auto procs = node_.cgroupfs().readText(victim.cgroup, cgroupfs::files::kProcs)) {
      if (auto pids = cgroupfs::parsePidList(procs.value())) {
        member = std::find(pids.value().begin(), pids.value().end(), victim.pid) != pids.value().end();
      }
    }
  }
  // And it started before the candidates were read: a process that started later holds a recycled pid
  // (same comm and cgroup are no proof: a pool respawning its workers).
  const auto started = node_.procfs().readStartTimeTicks(victim.pid);
  const bool older = started && started.value() <= plan.snapshot_boot_ticks;
  // Made unkillable since it was ranked (oom_score_adj -1000): the kernel would pass it over, and so does
  // oomguard. (A lower value that leaves it killable is the kernel's call too: it may still be first.)
  const bool unprotected = now && now.value().oom_score_adj != -1000;
  if (now && !pinned.exited() && now.value().status.comm == victim.comm && member && older && unprotected) {
    status = now.value().status;
    return std::nullopt;
  }
  const std::string pid = "pid " + std::to_string(victim.pid);
  return !now         ? now.error().describe()
         : !started   ? started.error().describe()
         : !older     ? pid + " started after the candidates were read: a new process under a recycled pid"
         : !unprotected ? pid + " has oom_score_adj -1000 now, " + std::to_string(victim.oom_score_adj) +
                            " when it was ranked"
                        : pid + " is no longer the chosen process";
}

void Executor::signal(KillPlan& plan, const std::shared_ptr<io::PinnedProcess>& pinned,
                      const std::optional<cgroupfs::ProcStatus>& status, policies::Outcome& outcome) {
  const policies::VictimCandidate& victim = plan.victim;
  const std::string& domain = plan.domain;
  // Resolved now: after a pre_kill hook the pod may have changed (or gone) since the decision.
  const kube::Workloads::Resolved resolved = podOf(victim);
  io::ActionResult result;
  std::string killed_cgroup;
  if (victim.group_kill_cgroup) {
    // memory.oom.group: the kernel would take the whole cgroup, and so does oomguard.
    outcome.action = DecisionAction::kKillCgroup;
    outcome.killed_cgroup = *victim.group_kill_cgroup;
    killed_cgroup = *victim.group_kill_cgroup;
    result = actuator_.killCgroup(killed_cgroup);
    outcome.signalled_at_us = clock_.monotonic_us();
  } else {
    result = actuator_.kill(pinned, plan.grace_ms);
    // The signal is what stops the leak (a killed process charges no more memory); the release after it
    // only returns the memory sooner.
    outcome.signalled_at_us = clock_.monotonic_us();
    if (result.ok && plan.grace_ms == 0) {
      result.detail += ", " + actuator_.release(pinned).detail;
    }
  }
  outcome.result = result.ok ? (options_.dry_run ? DecisionResult::kDryRun : DecisionResult::kKilled)
                             : DecisionResult::kFailed;
  outcome.detail = result.detail;
  if (result.ok && !options_.dry_run && resolved.pod != nullptr && on_pod_kill_) {
    // After the kill, never before it: the Event is queued and sent later on the loop.
    std::string message = "oomguard killed ";
    message += victim.group_kill_cgroup ? "cgroup " + *victim.group_kill_cgroup + " (memory.oom.group)"
                                        : "pid " + std::to_string(victim.pid) + " (" + victim.comm + ")";
    if (!resolved.labels.container.empty()) {
      message += " in container " + resolved.labels.container;
    }
    message += ": OOM domain " + (domain == "/" ? std::string("host") : domain) + ", " +
               std::to_string(victim.points) + " points, policy " + plan.policy + ", trigger " + plan.reason_kind;
    on_pod_kill_(*resolved.pod, message);
  }
  metrics_.countKill(plan.policy, plan.reason_kind, result.ok ? "success" : "failed");
  if (result.ok && !options_.dry_run) {
    metrics_.countOomKill(resolved.labels, "oomguard", domain == "/" ? "CONSTRAINT_NONE" : "CONSTRAINT_MEMCG");
    if (on_kill_) {
      on_kill_(OomguardKill{domain, victim, victim.group_kill_cgroup ? std::nullopt : status,
                            killed_cgroup.empty() ? std::nullopt : std::optional<std::string>(killed_cgroup),
                            plan.policy, plan.reason_kind, resolved.labels});
    }
  }
  if (!result.ok) {
    if (plan.reserved) {
      unreserve(plan, pinned);  // not made: the actuator failed
    }
    return;
  }
  ++stats_.kills;
  // Waited on from the decision; after a pre_kill hook (which took part of the wait), from the signal.
  const uint64_t now_us = plan.reserved ? clock_.monotonic_us() : plan.decided_us;
  // One OOM, one victim: the domains that hold it wait until its memory is back. The victim holds its
  // domain until it has exited, reaped or not: releasing the gate at the reap let a memory.events "high"
  // rise that predated the kill choose the neighbour next (beat-the-kernel, subrun worst, in CI).
  if (killed_cgroup.empty()) {
    // After a pre_kill hook: held again from the signal (the reservation may have run out meanwhile), and
    // not counted again (it was when the hook started).
    gate_.recordKill(victim.cgroup.empty() ? domain : victim.cgroup, pinned->pid(), now_us, plan.budget,
                     uint64_t{plan.grace_ms} * 1000, !plan.reserved);
    victim_pins_[pinned->pid()] = pinned;
  } else {
    gate_.recordKill(killed_cgroup, 0, now_us, plan.budget, 0, !plan.reserved);
    killed_cgroups_.insert(killed_cgroup);
  }
  if (config_.hooks.post_kill && !options_.dry_run) {
    post_kill_due_[killed_cgroup.empty() ? "pid:" + std::to_string(pinned->pid()) : "cgroup:" + killed_cgroup] = plan;
  }
}

}  // namespace oomguard::guardian::daemon
