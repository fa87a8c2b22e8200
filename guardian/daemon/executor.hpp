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
  Executor(io::Node& node, io::Actuator& actuator, const config::Config& config, const DaemonOptions& options,
           io::EventLog& log, exporter::Metrics& metrics, DaemonStats& stats, const Clock& clock);

  // mlockall and the configured oom_score_adj of the daemon itself; returns the status for the summary.
  std::string protectSelf();
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
  void kill(const std::string& domain, const policies::VictimCandidate& victim, const config::ActRule& rule,
            const std::string& reason_kind, uint64_t now_us, policies::Outcome& outcome);

  // Crashes the kernel (policy panic); returns only when that failed (or in dry-run).
  io::ActionResult panic() { return actuator_.panic(); }
  // Releases the victims that are gone (pidfd readable; a killed cgroup empty) and those past their wait.
  void releaseVictims(uint64_t now_us);
  // The kernel has a victim in progress: `pid` 0 when only memory.events said so (then `cgroup` is the
  // subtree it happened in); a known pid is pinned until it is gone.
  void recordKernelKill(const std::string& cgroup, pid_t pid, uint64_t now_us);

  // Mode act: the rules' and the pods' protections on every watched cgroup, for the processes of `scan`.
  void applyProtections(const HostScan& scan, const std::vector<std::string>& cgroups);
  // Declared sysctls: applied at start (mode act), compared at every refresh (and enforced if asked).
  void checkSysctls(bool at_start);

  // Mode act: memory.high at the threshold of each domain whose act rule has memory_high_at_threshold
  // (`domains`: the limited cgroups with their memory.max). Written only over "max" or over the value
  // oomguard wrote itself; a memory.high someone else set (kubelet's MemoryQoS, systemd's MemoryHigh=)
  // is left alone and logged once, unless the rule has memory_high_override and theirs lies above the
  // threshold. A domain whose rule no longer asks gets back what was there before ("max" or theirs).
  void applyMemoryHigh(const std::vector<std::pair<std::string, uint64_t>>& domains);
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
  // A victim in progress: a pinned process (ours or the kernel's) or a cgroup oomguard killed whole.
  void holdVictim(const std::string& cgroup, std::shared_ptr<io::PinnedProcess> pinned, uint64_t now_us);

  io::Node& node_;
  io::Actuator& actuator_;
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
  uint64_t snapshot_boot_ticks_ = 0;
  // Victims in progress (see policies::KillGate): pinned processes, ours and the kernel's, and the
  // cgroups oomguard killed whole; released once gone.
  std::map<pid_t, std::shared_ptr<io::PinnedProcess>> victim_pins_;
  std::set<std::string> killed_cgroups_;
  std::map<std::string, bool> sysctl_drift_;
  struct MemoryHighWritten {
    uint64_t bytes = 0;                   // what oomguard wrote
    std::optional<uint64_t> previous;     // what it replaced and puts back: nullopt = "max"
  };
  std::map<std::string, MemoryHighWritten> memory_high_set_;  // cgroup -> the memory.high oomguard wrote
  std::set<std::string> memory_high_left_;           // set by someone else: logged once
};

}  // namespace oomguard::guardian::daemon
