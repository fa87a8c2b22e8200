#include "policies/decision.hpp"

namespace oomguard::policies {

const char* toString(DecisionAction action) {
  switch (action) {
    case DecisionAction::kNone:
      return "none";
    case DecisionAction::kKill:
      return "kill";
    case DecisionAction::kKillCgroup:
      return "kill_cgroup";
    case DecisionAction::kPanic:
      return "panic";
  }
  return "none";
}

const char* toString(DecisionResult result) {
  switch (result) {
    case DecisionResult::kObserved:
      return "observed";
    case DecisionResult::kNoCandidate:
      return "no_candidate";
    case DecisionResult::kNoData:
      return "no_data";
    case DecisionResult::kBelowThreshold:
      return "below_threshold";
    case DecisionResult::kHeld:
      return "held";
    case DecisionResult::kNoVictim:
      return "no_victim";
    case DecisionResult::kPanicking:
      return "panicking";
    case DecisionResult::kDryRun:
      return "dry_run";
    case DecisionResult::kKilled:
      return "killed";
    case DecisionResult::kFailed:
      return "failed";
    case DecisionResult::kGone:
      return "gone";
    case DecisionResult::kChanged:
      return "changed";
    case DecisionResult::kPreKillHook:
      return "pre_kill_hook";
  }
  return "observed";
}

const char* toString(Trigger::Kind kind) {
  switch (kind) {
    case Trigger::Kind::kPressure:
      return "pressure";
    case Trigger::Kind::kMemoryEvent:
      return "memory_event";
    case Trigger::Kind::kThreshold:
      return "threshold";
    case Trigger::Kind::kKernelOomKill:
      return "kernel_oom_kill";
  }
  return "threshold";
}

}  // namespace oomguard::policies
