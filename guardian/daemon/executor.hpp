// Everything the daemon does to the node, each through the Actuator: kills (with the re-check that the
// pinned pid is still the chosen process), the kill gate and the victims in progress (ours and the
// kernel's), protections (oom_score_adj, memory.oom.group), declared sysctls, and the daemon's own
// protection (mlockall, its oom_score_adj).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/exporter/metrics.hpp"
#include "guardian/io/actuator.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/io/hooks.hpp"
#include "guardian/io/node.hpp"
#include "guardian/kube/workloads.hpp"
#include "policies/act.hpp"
#include "policies/decision.hpp"

namespace oomguard::guardian::daemon {

// The reason_kind of a kill a pod's own pressure limit asked for (Executor::kill): it spends a budget of
// the pod's own (policies::KillGate), never the node's.
inline constexpr const char* kPodPressureReason = "pod_pressure";

// One kill oomguard made (the signal sent), for the kill history.
struct OomguardKill {
  std::string domain;
  policies::VictimCandidate victim;
  std::optional<cgroupfs::ProcStatus> status;  // the victim's, read after it was pinned (none for a group kill)
  std::optional<std::string> killed_cgroup;    // a group kill (memory.oom.group)
  std::string policy;
  std::string reason;
  kube::WorkloadLabels labels;
};

class Executor {
 public:
  Executor(io::Node& node, io::Actuator& actuator, io::HookRunner& hooks, const config::Config& config,
           const DaemonOptions& options, io::EventLog& log, exporter::Metrics& metrics, DaemonStats& stats,
           const Clock& clock);

  // mlockall and the configured oom_score_adj of the daemon itself; returns the status for the summary.
  std::string protectSelf();
  // Once start-up is done, unless config.self.release_startup_pages is false: releases the resident pages
  // of the shared libraries' code and read-only data (io/startup_pages.hpp), most of which only start-up
  // touched; oomguard's own files stay as they are, and so does everything when they cannot be told.
  // Locked pages stay where the kernel cannot release them (before Linux 5.18). Returns the status for
  // the log: "N KiB in M mappings", then what was kept and what failed.
  std::string releaseStartupPages();
  // oomguard and the processes that started it: never chosen, never given another oom_score_adj.
  void findNeverKill();
  [[nodiscard]] const std::set<pid_t>& neverKill() const { return never_kill_; }
  // --dry-run: the oom_score_adj each pid would have been given (see io::Node::useIntendedAdj).
  [[nodiscard]] const std::unordered_map<pid_t, int>& intendedAdj() const { return intended_adj_; }

  [[nodiscard]] bool dryRun() const { return options_.dry_run; }
  [[nodiscard]] const policies::KillGate& gate() const { return gate_; }
  // The candidates of the decision being made were read at this boot-clock tick (see kill()).
  void markSnapshot() { snapshot_boot_ticks_ = clock_.boot_ticks(); }

  // The pod a cgroup belongs to, when the API server has told (null otherwise), for the kill's target,
  // its SIGTERM grace and the Event about it.
  void setWorkloads(const kube::Workloads* workloads) { workloads_ = workloads; }
  // Called after a successful kill of a pod's process or cgroup (never before the kill): the Event.
  using OnPodKill = std::function<void(const kube::KubePod& pod, const std::string& message)>;
  void onPodKill(OnPodKill on_pod_kill) { on_pod_kill_ = std::move(on_pod_kill); }
  // Every kill once its signal is sent (not in --dry-run).
  void onKill(std::function<void(const OomguardKill&)> on_kill) { on_kill_ = std::move(on_kill); }

  // Kills `victim` (its memory.oom.group cgroup when it has one) for `rule` in `domain`, and fills the
  // outcome: target, action, result and detail. A pid is pinned first and then checked to be the chosen
  // process: same comm, still in its cgroup, started before the decision's snapshot; if not, no kill.
  // A kill that worked holds the gate until its memory is back.
  // With a pre_kill hook (hooks.pre_kill, not in --dry-run): the result is kPreKillHook. The gate holds
  // the victim's domains and counts the kill from then on; the hook runs, and when it ends (or at its
  // timeout, or at once when it was dropped or could not start) the victim is checked again and killed,
  // whatever the hook did, unless it has gone or the kernel killed in its domain meanwhile (one OOM, one
  // victim). That end is logged as a "kill" line (executor_hooks.cpp).
  void kill(const std::string& domain, const policies::VictimCandidate& victim, const config::ActRule& rule,
            const std::string& reason_kind, uint64_t now_us, policies::Outcome& outcome);

  // A warning (an act rule's warn stage): the warn hook (hooks.warn) with `victim`, the victim the rule
  // would choose now (pid 0: none), and `extra` (the warning's reading and forecast) in its event; at most
  // one per domain at a time, under the hooks' caps. Nothing without a warn hook, nor in --dry-run.
  // `policy`: the one the victim was chosen by (an "observe" rule that only warns: kill-worst).
  void runWarnHook(const std::string& domain, const config::ActRule& rule, policies::Action policy,
                   const policies::VictimCandidate& victim, const std::string& reason_kind,
                   nlohmann::ordered_json extra);

  // Crashes the kernel (policy panic); returns only when that failed (or in dry-run).
  io::ActionResult panic() { return actuator_.panic(); }
  // Releases the victims that are gone (pidfd readable; a killed cgroup empty) and those past their wait;
  // each one's post_kill hook then runs (hooks.post_kill), with victim_gone false for those past the wait.
  void releaseVictims(uint64_t now_us);
  // The kernel has a victim in progress: `pid` 0 when only memory.events said so (then `cgroup` is the
  // subtree it happened in); a known pid is pinned until it is gone.
  void recordKernelKill(const std::string& cgroup, pid_t pid, uint64_t now_us);

  // Mode act: the rules' and the pods' protections on every watched cgroup, for the processes of `scan`;
  // a process rule's protection (config::ProcessRule) wins over its cgroup's.
  void applyProtections(const HostScan& scan, const std::vector<std::string>& cgroups);
  // Declared sysctls: applied at start (mode act), compared at every refresh (and enforced if asked).
  void checkSysctls(bool at_start);

  // Mode act: memory.high at the threshold of each domain whose act rule has memory_high_at_threshold
  // (`domains`: the limited cgroups with their memory.max). Written only over "max" or over the value
  // oomguard wrote itself; a memory.high someone else set (kubelet's MemoryQoS, systemd's MemoryHigh=)
  // is left alone and logged once, unless the rule has memory_high_override and theirs lies above the
  // threshold. A domain whose rule no longer asks gets back what was there before ("max" or theirs).
  void applyMemoryHigh(const std::vector<std::pair<std::string, uint64_t>>& domains);
  // At exit: every hook's process group gets SIGKILL (io::HookRunner::stop), and each kill that waited
  // for its pre_kill hook is made now (the hook counted as "cancelled").
  void stopHooks();
  // The config was replaced (a reload): the kill gate takes its victim wait and kill cap.
  void configChanged();
  // At exit and before a reload: every memory.high oomguard set goes back to what was there before
  // ("max", or the value it overrode), where it still holds oomguard's value.
  void restoreMemoryHigh();
  // Whether oomguard's memory.high is in force in `cgroup` (as of the last refresh): crossing its
  // threshold is then an event ("high" in memory.events), not only a level to poll.
  [[nodiscard]] bool memoryHighInForce(const std::string& cgroup) const {
    return !options_.dry_run && memory_high_set_.contains(cgroup);
  }

 private:
  // A kill from its decision to its signal (executor_kill.cpp), and across a pre_kill hook.
  struct KillPlan {
    std::string domain;
    policies::VictimCandidate victim;
    config::ActRule rule;
    std::string reason_kind;
    std::string policy;
    std::string budget;             // empty: the node's kill cap; else the pod's own (kPodPressureReason)
    uint64_t decided_us = 0;
    uint64_t snapshot_boot_ticks = 0;  // the candidates were read then (a later start: a recycled pid)
    uint32_t grace_ms = 0;          // the SIGTERM grace the kill gives
    bool reserved = false;          // the gate holds its domains and counted it (its pre_kill hook ran)
    bool kernel_killed = false;     // the kernel killed in its domain while its hook ran
    std::string kernel_kill;        // what it killed
    bool kernel_killed_victim = false;  // the kernel's victim was this kill's victim
    // A whole cgroup asked for as such (pid 0): its inode at the decision, so that a cgroup removed and
    // made again under the same path during the hook is not killed in its place.
    std::optional<uint64_t> cgroup_inode;
  };
  // A plan for `victim` by `rule` in `domain` (the rest at its defaults).
  static KillPlan planFor(const std::string& domain, const policies::VictimCandidate& victim,
                          const config::ActRule& rule, const std::string& reason_kind);
  // Why `pinned` is no longer the plan's victim (nullopt: it is); `status` gets its /proc status.
  std::optional<std::string> changedSince(const KillPlan& plan, const io::PinnedProcess& pinned,
                                          std::optional<cgroupfs::ProcStatus>& status);
  // `pid`'s oom_score_adj set to `wanted_adj` unless it has it already (a quiet process's read again), through
  // a pin verified against the scan's time (writeAdj). Returns what a write found (the value before it,
  // the process's start), nullopt when none was made or it failed.
  struct AdjWrite {
    int adj_before = 0;          // what the process had before the first write of a process rule
    int adj_written = 0;         // the last value a process rule wrote
    uint64_t started_ticks = 0;  // the process written (a recycled pid is another)
    uint32_t missed_scans = 0;   // refreshes in a row that did not read the process
  };
  std::optional<AdjWrite> protect(const HostScan& scan, pid_t pid, int wanted_adj, nlohmann::ordered_json where,
                                  const char* source);
  // A process rule's protection put back (process_rule_writes_). True when settled: put back, or nothing
  // to put back to (the process is gone, it is another process, or its value was changed since, by its
  // new program or someone else: theirs stands). False: not known now (a read or a pin failed), tried
  // again at the next refresh.
  bool restoreAdj(pid_t pid, const AdjWrite& written);
  // Writes `adj` to the pinned process (in --dry-run, what the model reads back) and logs a "protection"
  // line: `where` (the rule), pid, oom_score_adj, `source`, the result. True when written.
  bool writeAdj(const std::shared_ptr<io::PinnedProcess>& pinned, int adj, nlohmann::ordered_json where,
                const char* source);
  // Sends the signal (or writes cgroup.kill) and records it: gate, victim pins, metrics, the pod's Event,
  // the kill history.
  void signal(KillPlan& plan, const std::shared_ptr<io::PinnedProcess>& pinned,
              const std::optional<cgroupfs::ProcStatus>& status, policies::Outcome& outcome);
  // The pod `victim` belongs to, when the API server has told (an empty Resolved otherwise).
  [[nodiscard]] kube::Workloads::Resolved podOf(const policies::VictimCandidate& victim) const;
  // A kill reserved for its pre_kill hook (plan.reserved) that was not made after all: refunded to the
  // cap, and its reservation no longer holds the gate, unless the kernel's victim is this very process
  // (its entry has the same pid; it is released when the process is gone, in releaseVictims).
  void unreserve(const KillPlan& plan, const std::shared_ptr<io::PinnedProcess>& pinned);
  // executor_hooks.cpp: the pre_kill hook's start and the kill at its end; the post_kill hook.
  void startPreKill(KillPlan plan, const std::shared_ptr<io::PinnedProcess>& pinned, policies::Outcome& outcome);
  void completeKill(const std::shared_ptr<KillPlan>& plan, const std::shared_ptr<io::PinnedProcess>& pinned,
                    const io::HookOutcome& hook);
  void runPostKill(const std::string& key, bool victim_gone);
  // The event a hook gets on stdin (JSON) and in its environment.
  void runHook(const std::string& stage, const config::Hook& hook, const KillPlan& plan, const std::string& key,
               nlohmann::ordered_json extra, std::function<void(const io::HookOutcome&)> then);
  // Logs a hook's end ("hook" line) and counts it.
  void reportHook(const io::HookOutcome& outcome, const KillPlan& plan);

  io::Node& node_;
  io::Actuator& actuator_;
  io::HookRunner& hooks_;
  const config::Config& config_;
  const DaemonOptions& options_;
  io::EventLog& log_;
  exporter::Metrics& metrics_;
  DaemonStats& stats_;
  const Clock& clock_;
  const kube::Workloads* workloads_ = nullptr;
  OnPodKill on_pod_kill_;
  std::function<void(const OomguardKill&)> on_kill_;
  policies::KillGate gate_;
  std::set<pid_t> never_kill_;
  std::unordered_map<pid_t, int> intended_adj_;
  // The processes a process rule's protection was written to, with what they had before the first such
  // write: put back when no process rule matches the process any more (it exec'd another program, a
  // reload changed the rules) and no cgroup rule sets it instead. Forgotten once settled, or after
  // refreshes in a row that did not read the process (applyProtections).
  std::unordered_map<pid_t, AdjWrite> process_rule_writes_;
  uint64_t snapshot_boot_ticks_ = 0;
  // Victims in progress (see policies::KillGate): pinned processes, ours and the kernel's, and the
  // cgroups oomguard killed whole; released once gone.
  std::map<pid_t, std::shared_ptr<io::PinnedProcess>> victim_pins_;
  std::set<std::string> killed_cgroups_;
  // Kills waiting for their pre_kill hook, with their pinned victim (none: a whole cgroup asked for as such).
  std::vector<std::pair<std::shared_ptr<KillPlan>, std::shared_ptr<io::PinnedProcess>>> pending_kills_;
  // Kills whose post_kill hook runs once the victim is gone: "pid:N" or "cgroup:/path" -> its plan.
  std::map<std::string, KillPlan> post_kill_due_;
  std::map<std::string, bool> sysctl_drift_;
  struct MemoryHighWritten {
    uint64_t bytes = 0;                   // what oomguard wrote
    std::optional<uint64_t> previous;     // what it replaced and puts back: nullopt = "max"
  };
  std::map<std::string, MemoryHighWritten> memory_high_set_;  // cgroup -> the memory.high oomguard wrote
  std::set<std::string> memory_high_left_;           // set by someone else: logged once
};

}  // namespace oomguard::guardian::daemon
