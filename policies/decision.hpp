// A decision, typed: what started it, the domain and its candidates as read, and what came of it. The
// daemon builds one per event (guardian/daemon/decider.hpp), the executor fills in the kill's result, and
// the decision log (guardian/daemon/decision_log.hpp) is the one place that turns it into a JSON line
// (DESIGN.md section 4). Nothing here is recovered from a string.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "policies/act.hpp"
#include "policies/ranking.hpp"

namespace oomguard::policies {

// What the guardian did.
enum class DecisionAction { kNone, kKill, kKillCgroup, kPanic };
// none | kill | kill_cgroup | panic
const char* toString(DecisionAction action);

// How it ended.
enum class DecisionResult {
  kObserved,        // no act rule (or mode observe): a logged prediction
  kNoCandidate,     // nothing killable in the domain
  kNoData,          // the domain could not be read: no kill
  kBelowThreshold,  // the rule's thresholds are not crossed
  kHeld,            // crossed, but the kill gate refused (a victim in progress, the per-minute cap)
  kNoVictim,        // crossed, but the rule chooses no one (all protected, nothing grew)
  kPanicking,       // policy panic: the kernel is being crashed
  kDryRun,          // the action was only reported (--dry-run)
  kKilled,
  kFailed,          // the actuator could not act
  kGone,            // the victim exited before the kill
  kChanged,         // the pid no longer names the chosen process (exited, moved, recycled)
  kPreKillHook,     // the operator's pre_kill hook runs; the kill follows when it ends or at its timeout
};
// observed | no_candidate | no_data | below_threshold | held | no_victim | panicking | dry_run | killed |
// failed | gone | changed | pre_kill_hook
const char* toString(DecisionResult result);

// What started a decision.
struct Trigger {
  enum class Kind { kPressure, kMemoryEvent, kThreshold, kKernelOomKill };
  Kind kind = Kind::kThreshold;
  std::string cgroup;  // where it fired ("/" = the host)
  // kPressure: the trigger armed (when still known) and the PSI averages it reported.
  std::optional<std::pair<std::string, std::string>> pressure_trigger;  // resource, trigger text
  std::optional<double> some_avg10;
  std::optional<double> full_avg10;
  // kMemoryEvent: each memory.events key that rose, by how much, in the file's order.
  std::vector<std::pair<std::string, uint64_t>> rose;
};
// pressure | memory_event | threshold | kernel_oom_kill
const char* toString(Trigger::Kind kind);

// The victim an act rule chose, with its pod when the API server has told.
struct Target {
  VictimCandidate victim;
  bool pod_known = false;      // the API server has told which pod it is in: the names below are set
  std::string namespace_name;
  std::string pod;
  std::string container;
};

// What an act rule did in a domain. `policy` is absent when no act rule ran (mode observe, no rule, or a
// decision that may not act); then only action and result are set.
struct Outcome {
  std::optional<Action> policy;
  std::optional<Crossing> reason;             // the threshold crossed
  std::optional<std::string> chosen_because;  // why this victim
  std::optional<Target> target;
  DecisionAction action = DecisionAction::kNone;
  std::optional<std::string> killed_cgroup;      // kKillCgroup: the cgroup killed whole
  std::optional<uint32_t> sigterm_grace_ms;      // a pod's own grace, when it set one
  DecisionResult result = DecisionResult::kObserved;
  std::optional<std::string> held_by;  // kHeld: the gate's reason
  std::optional<std::string> why;      // kNoVictim: the choice's reason
  std::optional<std::string> detail;   // a kill's: what the actuator said, or why it did not act
  std::optional<uint64_t> signalled_at_us;  // a kill's: when the signal was sent (or cgroup.kill written)
};

// One decision about one OOM domain.
struct Decision {
  Trigger trigger;
  OomDomain domain;
  std::vector<VictimCandidate> candidates;  // the kernel's order, highest first
  bool acting_mode = false;                 // config mode "act"
  bool dry_run = false;
  uint64_t reaction_us = 0;  // from the event reaching the loop to the decision and its action done
  std::optional<uint64_t> signal_us;  // a kill's: from the event reaching the loop to the signal sent
  Outcome outcome;
  // One OOM, one victim: the victim in progress in this domain, and how long ago it was taken.
  std::optional<VictimInProgress> waiting_on_victim;
  uint64_t waiting_ms_ago = 0;
  // kNoData: why the domain could not be read.
  std::optional<std::string> error;
};

}  // namespace oomguard::policies
