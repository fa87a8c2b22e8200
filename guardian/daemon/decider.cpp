#include "guardian/daemon/decider.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"

namespace oomguard::guardian::daemon {

Decider::Decider(io::Node& node, const config::Config& config, const WatchSet& watch_set, const Rankings& rankings,
                 const Executor& executor, const kube::Workloads* const& workloads, DaemonStats& stats)
    : node_(node),
      config_(config),
      watch_set_(watch_set),
      rankings_(rankings),
      executor_(executor),
      workloads_(workloads),
      stats_(stats) {}

const config::ActRule* Decider::actRuleFor(const std::string& domain) const {
  if (config_.mode != config::Mode::kAct) {
    return nullptr;
  }
  if (domain == "/") {
    return config_.host_act ? &*config_.host_act : nullptr;
  }
  const config::CgroupRule* rule = config::ruleFor(config_, domain);
  return rule != nullptr && rule->act ? &*rule->act : nullptr;
}

std::optional<cgroupfs::Error> Decider::observe(const std::string& domain, const config::ActRule& rule,
                                                policies::DomainObservation& observation, bool fresh_limit) {
  std::optional<cgroupfs::Error> missing;
  if (domain == "/") {
    if (auto meminfo = node_.procfs().readMemInfo()) {
      observation.mem_total_kb = meminfo.value().mem_total_kb;
      observation.mem_available_kb = meminfo.value().mem_available_kb;
      observation.swap_free_kb = meminfo.value().swap_free_kb;
      observation.swap_total_kb = meminfo.value().swap_total_kb;
    } else {
      missing = meminfo.error();
    }
  } else {
    if (fresh_limit) {
      if (auto max = node_.cgroupfs().readLimit(domain, cgroupfs::files::kMemoryMax)) {
        observation.memory_max_bytes = max.value();
      } else {
        missing = max.error();
      }
    } else if (const WatchedCgroup* watched = watch_set_.find(domain)) {
      observation.memory_max_bytes = watched->memory_max_bytes;
    }
    if (auto current = node_.cgroupfs().readMemoryCurrent(domain)) {
      observation.memory_current_bytes = current.value();
    } else {
      missing = current.error();
    }
    if (rule.when.on_memory_high && observation.events_high > 0) {
      // Whether the rise still stands (policies::eventStillStands): usage against memory.high now.
      if (auto high = node_.cgroupfs().readLimit(domain, cgroupfs::files::kMemoryHigh)) {
        observation.memory_high_bytes = high.value();
      } else {
        missing = high.error();
      }
    }
  }
  if ((rule.when.pressure_avg10 || (rule.warn && rule.warn->when.pressure_avg10)) && !observation.some_avg10) {
    auto pressure = watch_set_.readMemoryPressure(domain);
    if (pressure) {
      observation.some_avg10 = pressure.value().some.avg10 / 100.0;
      observation.some_total_us = pressure.value().some.total_us;
      if (pressure.value().full) {
        observation.full_avg10 = pressure.value().full->avg10 / 100.0;
        observation.full_total_us = pressure.value().full->total_us;
      }
    }
    // An unread pressure is no crossing (thresholdCrossed needs a reading): missing, it makes no kill.
  }
  return missing;
}

std::vector<policies::VictimCandidate> Decider::candidates(const DomainState& state, bool with_growers,
                                                           bool resolve_groups) const {
  const policies::OomDomain& domain = state.domain;
  std::vector<policies::VictimCandidate> candidates;
  auto add = [&](const policies::VictimCandidate& candidate) {
    policies::VictimCandidate c = candidate;
    c.never_kill = executor_.neverKill().contains(candidate.pid);
    c.place_unknown = c.cgroup.empty();
    // The operator's rules: a process rule over the cgroup rule. The command line as a refresh kept it, never
    // read here (io::Node::cmdline): a process newer than the last refresh matches by comm and uid alone.
    c.preference = config::rulesApplied(
                       config::processRuleFor(config_.processes, c.comm, c.uid,
                                              [&] { return node_.cmdline(c.pid, c.comm, /*may_read=*/false); }),
                       c.cgroup.empty() ? nullptr : config::ruleFor(config_, c.cgroup))
                       .preference;
    // A pod's annotations, where the operator's rule says nothing.
    if (workloads_ != nullptr && config_.kubernetes.annotations && c.cgroup.find("kubepods") != std::string::npos) {
      const auto resolved = workloads_->resolve(c.cgroup);
      if (c.preference == policies::Preference::kNone) {
        c.preference = kube::Workloads::preference(resolved);
      }
      c.protection = kube::Workloads::protection(resolved);
    }
    // kill-allocating's growth: over the trend window, and only for a process still growing (a
    // neighbour's start-up allocation inside the window is not an allocation now).
    c.growth_pages = rankings_.growth().growth(c.pid);
    if (c.growth_pages && !rankings_.growth().growingNow(c.pid)) {
      c.growth_pages = 0;
    }
    if (resolve_groups && !c.cgroup.empty()) {
      c.group_kill_cgroup = policies::oomGroupCgroup(
          c.cgroup, domain, [this](std::string_view cgroup) { return node_.readOomGroup(cgroup); });
    }
    candidates.push_back(std::move(c));
  };
  for (const auto& candidate : state.top) {
    add(candidate);
  }
  if (with_growers) {
    for (const auto& candidate : state.growers) {
      if (std::none_of(candidates.begin(), candidates.end(), [&](const auto& c) { return c.pid == candidate.pid; })) {
        add(candidate);
      }
    }
  }
  return candidates;
}

void Decider::rankHost(Rankings& rankings, const io::NodeFacts& facts, bool may_act, uint64_t now_us,
                       Executor& executor) {
  const config::ActRule* rule = may_act ? actRuleFor("/") : nullptr;
  executor.releaseVictims(now_us);
  const bool may_kill = rule != nullptr && rule->action != policies::Action::kObserve &&
                        !executor.gate().refusal("/", now_us);
  // The host's allocations now (one read of /proc/vmstat): what the backoff compares, and its baseline.
  host_read_allocated_bytes_.reset();
  if (may_kill) {
    if (auto pages = node_.procfs().readAllocatedPages()) {
      host_read_allocated_bytes_ = pages.value() * node_.pageBytes();
    }
  }
  const bool backing_off = host_found_no_victim_us_ && now_us < *host_found_no_victim_us_ + kFullHostReadBackoffUs &&
                           host_read_allocated_bytes_ && host_no_victim_allocated_bytes_ &&
                           *host_read_allocated_bytes_ < *host_no_victim_allocated_bytes_ + kFullHostReadBackoffBytes;
  rankings.rerankHost(facts, may_kill && !backing_off ? Rankings::HostReread::kEveryProcess
                                                      : Rankings::HostReread::kTopAndNewcomers);
  if (may_kill && backing_off) {
    const DomainState* state = rankings.find("/");
    if (state != nullptr &&
        policies::chooseVictim(rule->action, candidates(*state, rule->action == policies::Action::kKillAllocating,
                                                        /*resolve_groups=*/false))
            .victim) {
      rankings.rerankHost(facts, Rankings::HostReread::kEveryProcess);
    }
  }
}

policies::Outcome Decider::act(const std::string& domain, const DomainState& state, const config::ActRule& rule,
                               policies::DomainObservation observation, uint64_t now_us, Executor& executor) {
  policies::Outcome outcome = actOn(domain, state, rule, observation, now_us, executor);
  if (domain == "/") {
    if (outcome.result == policies::DecisionResult::kNoVictim) {
      if (rankings_.lastHostRead() == Rankings::HostReread::kEveryProcess) {
        host_found_no_victim_us_ = now_us;
        host_no_victim_allocated_bytes_ = host_read_allocated_bytes_;  // none read: no backoff
      }
    } else if (outcome.result != policies::DecisionResult::kBelowThreshold) {
      host_found_no_victim_us_.reset();
    }
  }
  return outcome;
}

policies::Outcome Decider::actOn(const std::string& domain, const DomainState& state, const config::ActRule& rule,
                                 policies::DomainObservation observation, uint64_t now_us, Executor& executor) {
  policies::Outcome outcome;
  outcome.policy = rule.action;
  if (auto missing = observe(domain, rule, observation, /*fresh_limit=*/true)) {
    // When data is missing, no kill: the threshold cannot be judged on it. (A cgroup that has gone is no
    // failure: its domain goes with it.)
    if (!missing->vanished()) {
      ++stats_.kills_no_data;
    }
    outcome.result = policies::DecisionResult::kNoData;
    outcome.why = "the domain's level could not be read (" + missing->describe() + "): no decision on missing data";
    return outcome;
  }
  executor.releaseVictims(now_us);
  holdPressureWhileBlocked(domain, rule, now_us);
  outcome.reason = policies::thresholdCrossed(rule.when, observation, thresholdState(domain, rule.when), now_us);
  if (!outcome.reason) {
    outcome.result = policies::DecisionResult::kBelowThreshold;
    if ((rule.when.on_memory_high && observation.events_high > 0) || (rule.when.on_memory_max && observation.events_max > 0)) {
      // policies::eventStillStands said no.
      outcome.why = "memory.events rose, but usage is now more than 3% below the limit: the increments predate "
                    "the release of a victim's memory";
    }
    return outcome;
  }
  if (auto refusal = executor.gate().refusal(domain, now_us)) {
    // Held pressure starts over once the victim has gone (policies::ThresholdState).
    policies::restartPressureHold(thresholdState(domain, rule.when));
    ++stats_.kills_held;
    outcome.result = policies::DecisionResult::kHeld;
    outcome.held_by = std::move(refusal);
    return outcome;
  }
  if (rule.action == policies::Action::kPanic) {
    outcome.action = policies::DecisionAction::kPanic;
    outcome.result = executor.dryRun() ? policies::DecisionResult::kDryRun : policies::DecisionResult::kPanicking;
    return outcome;
  }
  if (state.unread) {
    // The ranking may miss a candidate (even the kernel's first): a kill from it could take an innocent.
    ++stats_.kills_no_data;
    outcome.result = policies::DecisionResult::kNoData;
    outcome.why = "a read of the domain's ranking failed (" + state.unread->describe() +
                  "): it may miss a candidate, so no kill rests on it";
    return outcome;
  }
  // The candidates in the guardian's view: the kernel's ranking plus the operator's protections.
  auto pool = candidates(state, rule.action == policies::Action::kKillAllocating, /*resolve_groups=*/true);
  // A candidate gone since it was ranked (a victim that has just exited; a grower measured at the last
  // refresh, seen in the race lab: the last trial's killed leaker chosen twice while the kernel killed
  // the new one) is dropped and the choice made again from the rest, by the same policy, a few times.
  constexpr int kChoices = 3;
  std::string gone;
  for (int attempt = 0; attempt < kChoices; ++attempt) {
    const auto choice = policies::chooseVictim(rule.action, pool);
    if (!choice.victim) {
      outcome.result = policies::DecisionResult::kNoVictim;
      outcome.why = choice.reason + gone;
      return outcome;
    }
    if (domain == "/" && rankings_.lastHostRead() != Rankings::HostReread::kEveryProcess) {
      // rankHost found the host held (by the gate, when it ranked) and read only the refresh's top and
      // the newcomers; the gate has let go since. A kill from that read could miss an old process that
      // has grown: the level watch's next decision (kAfterCrossingUs) reads every process.
      ++stats_.kills_held;
      outcome.result = policies::DecisionResult::kHeld;
      outcome.held_by = "the host was ranked while a victim held it (the refresh's top and the newcomers only): "
                        "the next decision reads every process";
      return outcome;
    }
    outcome.chosen_because = choice.reason + gone;
    executor.kill(domain, *choice.victim, rule, policies::toString(outcome.reason->kind), now_us, outcome);
    if (outcome.result != policies::DecisionResult::kGone) {
      if (outcome.result == policies::DecisionResult::kKilled ||
          outcome.result == policies::DecisionResult::kPreKillHook) {
        const auto& victim = *choice.victim;
        if (victim.group_kill_cgroup) {
          victimTaken(*victim.group_kill_cgroup, true);
        } else {
          victimTaken(victim.cgroup.empty() ? domain : victim.cgroup, victim.cgroup.empty());
        }
      }
      return outcome;
    }
    const pid_t pid = choice.victim->pid;
    gone += "; pid " + std::to_string(pid) + " was chosen first but had gone";
    std::erase_if(pool, [pid](const policies::VictimCandidate& c) { return c.pid == pid; });
    // Its exit may have given the memory back: the next choice only if the domain is still over its
    // threshold, read again now (never the neighbour of a leaker that has just died).
    policies::DomainObservation again;  // the trigger's event counts, every reading fresh
    again.events_high = observation.events_high;
    again.events_max = observation.events_max;
    if (auto missing = observe(domain, rule, again, /*fresh_limit=*/true)) {
      outcome.result = policies::DecisionResult::kGone;
      outcome.why = "the chosen victim had gone, and the domain could not be read again (" + missing->describe() +
                    "): no second choice on missing data" + gone;
      return outcome;
    }
    if (!policies::thresholdCrossed(rule.when, again, thresholdState(domain, rule.when), now_us)) {
      outcome.result = policies::DecisionResult::kGone;
      outcome.why = "the chosen victim had gone, and the domain is no longer over its threshold" + gone;
      return outcome;
    }
  }
  return outcome;
}

}  // namespace oomguard::guardian::daemon
