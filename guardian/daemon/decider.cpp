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
  if (rule.when.pressure_avg10 && !observation.some_avg10) {
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
    if (const config::CgroupRule* rule = c.cgroup.empty() ? nullptr : config::ruleFor(config_, c.cgroup)) {
      c.preference = rule->preference;
    }
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
  outcome.reason = policies::thresholdCrossed(rule.when, observation, threshold_states_[domain], now_us);
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
    policies::restartPressureHold(threshold_states_[domain]);
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
    if (!policies::thresholdCrossed(rule.when, again, threshold_states_[domain], now_us)) {
      outcome.result = policies::DecisionResult::kGone;
      outcome.why = "the chosen victim had gone, and the domain is no longer over its threshold" + gone;
      return outcome;
    }
  }
  return outcome;
}

std::vector<std::pair<std::string, policies::DomainObservation>> Decider::checkLevels(uint64_t now_us, bool all) {
  // Level thresholds (headroom, MemAvailable, SwapFree, held PSI) are read at the rate the physics
  // demands (policies/level_watch.hpp): each acting domain's next reading is due when its room to the
  // threshold could be gone at the fastest plausible fill rate, between 5 ms and the refresh interval.
  // A memcg domain is watched through the host's allocations instead: one read of /proc/vmstat tells
  // which domains could have come near their threshold, and only those are read (a node with 500
  // acting pods reads one file at each tick, not 500). A reading is one small file (memory.current, or
  // /proc/meminfo for the host); a decision follows only when the threshold is crossed.
  std::vector<std::pair<std::string, policies::DomainObservation>> crossed;
  if (config_.mode != config::Mode::kAct) {
    // Nothing is watched (a reload from act to observe: the old watch's due times, in the past, armed
    // the level timer at 0 again after every tick, a loop spinning at a full core).
    levels_.clear();
    allocation_due_us_.reset();
    budgets_summarised_ = false;
    return crossed;
  }
  constexpr uint64_t kMinDelayUs = 5'000;
  constexpr uint64_t kAfterCrossingUs = 100'000;  // re-read a crossed domain after this (no log flood)
  constexpr uint64_t kBudgetedRereadRefreshes = 6;  // a domain watched through the allocations: 30 s
  const auto max_delay_us = static_cast<uint64_t>(config_.refresh_interval_s * 1e6);
  const double assumed_rate = config_.assumed_fill_rate_mib_s * 1024.0 * 1024.0;
  std::optional<uint64_t> allocated;
  if (auto pages = node_.procfs().readAllocatedPages()) {
    ++stats_.allocation_reads;
    allocated = pages.value() * node_.pageBytes();
    allocation_rate_.sample(now_us, -static_cast<double>(*allocated));  // its "room" shrinks as the host allocates
  }
  // Which domains act on a level, and by which rule: resolved at the refresh (`all`) and after a reload,
  // not at each tick (a tick comes up to 200 times a second; matching 500 domains' rules at each cost
  // more than the readings).
  // The size check catches a domain a decision ranked first (Daemon::decide) without a domainsChanged().
  if (all || !rules_current_ || rankings_.all().size() != ranked_domains_) {
    ++scans_;
    ranked_domains_ = rankings_.all().size();
    for (const auto& [path, state] : rankings_.all()) {
      const config::ActRule* rule = actRuleFor(path);
      if (rule == nullptr || rule->action == policies::Action::kObserve) {
        continue;
      }
      const auto& when = rule->when;
      if (!when.headroom_below && !when.mem_available_below && !when.swap_free_below && !when.pressure_avg10) {
        continue;
      }
      auto& level = levels_[path];
      level.rule = rule;
      level.seen_in_scan = scans_;
      if (config_changed_) {
        level.budget_room_bytes.reset();  // its room was measured against the old rule's threshold
        level.due_us = 0;
      }
    }
    config_changed_ = false;
    std::erase_if(levels_, [&](const auto& entry) { return entry.second.seen_in_scan != scans_; });
    rules_current_ = true;
    budgets_summarised_ = false;  // a domain added here is due now
  }
  // The next read of the allocations: before the smallest room left (nullopt: no domain is watched
  // through them) could be gone at the fastest plausible rate (the host's measured allocation rate, or
  // the assumed fill rate).
  auto scheduleAllocations = [&](std::optional<double> smallest_left) {
    allocation_due_us_.reset();
    if (smallest_left) {
      allocation_due_us_ = now_us + policies::nextLevelCheckUs(std::max(*smallest_left, 0.0),
                                                               allocation_rate_.bytesPerSecond(), assumed_rate,
                                                               kMinDelayUs, max_delay_us);
    }
  };
  // Nothing due and no budget spent: the allocations say every domain watched through them is still
  // far enough from its threshold (the same test as the pass below, on its summaries).
  if (!all && budgets_summarised_ && allocated && now_us < earliest_due_us_ && *allocated >= latest_budget_then_bytes_ &&
      static_cast<double>(*allocated) < first_spent_at_bytes_) {
    scheduleAllocations(std::isfinite(first_room_gone_at_bytes_)
                            ? std::optional(first_room_gone_at_bytes_ - static_cast<double>(*allocated))
                            : std::nullopt);
    return crossed;
  }
  std::optional<double> smallest_left;  // of the domains watched through the allocations
  // The refresh makes the safety-net reads due before the next refresh (with a tenth of an interval to
  // spare for the timer's lateness) at once, together: between refreshes the loop then wakes only for a
  // domain near its threshold, and each wake-up costs a read of /proc/vmstat besides its own. (500 pods
  // each on its own 30 s timer woke the loop 17 times a second.) A read made early is never a read missed.
  const uint64_t net_reads_before_us = all ? now_us + max_delay_us + max_delay_us / 10 : now_us;
  for (auto& [path, level] : levels_) {
    const config::ActRule* rule = level.rule;
    const auto& when = rule->when;
    // Watched through the allocations: read when its budget is spent, or on its own timer (every
    // kBudgetedRereadRefreshes refreshes, the safety net), not at every refresh.
    const bool budgeted = allocated && level.budget_room_bytes && now_us >= level.fast_until_us;
    const bool spent = budgeted && policies::allocationBudgetSpent(*level.budget_room_bytes,
                                                                   level.budget_allocated_bytes, *allocated);
    if ((budgeted || !all) && level.due_us > (budgeted ? net_reads_before_us : now_us) && !spent) {
      if (budgeted) {
        const double left = policies::roomLeftBytes(*level.budget_room_bytes, level.budget_allocated_bytes, *allocated);
        smallest_left = smallest_left ? std::min(*smallest_left, left) : left;
      }
      continue;
    }
    ++stats_.level_reads;
    policies::DomainObservation observation;
    const bool read = !observe(path, *rule, observation);
    level.failed_reads = read ? 0 : level.failed_reads + 1;
    if (observation.memory_current_bytes) {
      level.last_reading = LevelReading{*observation.memory_current_bytes, now_us, observation.memory_max_bytes};
    }
    level.budget_room_bytes.reset();
    holdPressureWhileBlocked(path, *rule, now_us);
    if (policies::thresholdCrossed(when, observation, threshold_states_[path], now_us)) {
      crossed.emplace_back(path, observation);
      level.due_us = now_us + kAfterCrossingUs;
      continue;
    }
    const auto room = policies::roomToThresholdBytes(when, observation);
    if (room) {
      level.rate.sample(now_us, *room);
    }
    // Held PSI has no room in bytes: it is read at the refresh, and its trigger wakes it.
    uint64_t delay_us = policies::nextLevelCheckUs(room, level.rate.bytesPerSecond(), assumed_rate, kMinDelayUs,
                                                   max_delay_us);
    if (path != "/" && room && *room > 0 && allocated && when.headroom_below && !when.pressure_avg10) {
      // Watched through the host's allocations from now on, and re-read every kBudgetedRereadRefreshes
      // refreshes whatever they say (the safety net). Not a rule with a pressure threshold: its held
      // pressure is read at every refresh (a stall allocates nothing).
      level.budget_room_bytes = *room;
      level.budget_allocated_bytes = *allocated;
      smallest_left = smallest_left ? std::min(*smallest_left, *room) : *room;
      delay_us = max_delay_us * kBudgetedRereadRefreshes;
    }
    if (rule->memory_high_at_threshold && executor_.memoryHighInForce(path) && room && *room > 0) {
      // Its memory.high sits at the threshold: the kernel says when it is crossed ("high" in
      // memory.events, an inotify wake-up), so the level is only re-read at the refresh.
      delay_us = max_delay_us;
      level.budget_room_bytes.reset();
    }
    if (!read) {
      // The reading failed (a cgroup going away, a transient error): no decision on missing data, and
      // no blind refresh interval either: read again soon, backing off while it keeps failing.
      const uint64_t retry_us = kAfterCrossingUs << std::min<uint32_t>(level.failed_reads - 1, 6);
      delay_us = std::min(delay_us, retry_us);
    }
    if (now_us < level.fast_until_us) {
      delay_us = std::min(delay_us, kPressurePollUs);  // under pressure: poll as lmkd does
      level.budget_room_bytes.reset();
    }
    level.due_us = now_us + delay_us;
  }
  summariseLevels();
  scheduleAllocations(smallest_left);
  return crossed;
}

std::optional<Decider::LevelReading> Decider::levelReading(const std::string& domain) const {
  const auto found = levels_.find(domain);
  return found == levels_.end() ? std::nullopt : found->second.last_reading;
}

bool Decider::pressureEvent(const std::string& domain, uint64_t now_us) {
  const auto found = levels_.find(domain);
  if (found == levels_.end()) {
    return false;
  }
  found->second.fast_until_us = now_us + kPressureWindowUs;
  found->second.due_us = std::min(found->second.due_us, now_us);
  earliest_due_us_ = std::min(earliest_due_us_, found->second.due_us);
  return true;
}

void Decider::victimTaken(const std::string& cgroup, bool anywhere_below) {
  const auto holds = [&](const std::string& domain) {
    return cgroupfs::isSameOrBelow(cgroup, domain) || (anywhere_below && cgroupfs::isSameOrBelow(domain, cgroup));
  };
  for (const auto& [domain, level] : levels_) {
    if (holds(domain)) {
      policies::restartPressureHold(threshold_states_[domain]);
    }
  }
  for (auto& [domain, state] : threshold_states_) {
    if (holds(domain)) {
      policies::restartPressureHold(state);
    }
  }
}

void Decider::holdPressureWhileBlocked(const std::string& domain, const config::ActRule& rule, uint64_t now_us) {
  // A victim not yet gone (as far as the gate knows: its release is noted by the next decision, the
  // refresh, or the gate's bounded wait) still stalls the domain: no stall baseline is taken from it.
  auto& state = threshold_states_[domain];
  if (rule.when.pressure_avg10 && state.after_kill && executor_.gate().blocking(domain, now_us)) {
    policies::restartPressureHold(state);
  }
}

void Decider::summariseLevels() {
  earliest_due_us_ = UINT64_MAX;
  first_spent_at_bytes_ = std::numeric_limits<double>::infinity();
  first_room_gone_at_bytes_ = std::numeric_limits<double>::infinity();
  latest_budget_then_bytes_ = 0;
  for (const auto& [path, level] : levels_) {
    earliest_due_us_ = std::min(earliest_due_us_, level.due_us);
    if (level.budget_room_bytes) {
      // allocationBudgetSpent: spent once the host has allocated room / 2 since `then`.
      const double then = static_cast<double>(level.budget_allocated_bytes);
      first_spent_at_bytes_ = std::min(first_spent_at_bytes_, then + *level.budget_room_bytes / 2);
      first_room_gone_at_bytes_ = std::min(first_room_gone_at_bytes_, then + *level.budget_room_bytes);
      latest_budget_then_bytes_ = std::max(latest_budget_then_bytes_, level.budget_allocated_bytes);
    }
  }
  budgets_summarised_ = true;
}

std::optional<uint64_t> Decider::nextLevelDueUs() const {
  if (levels_.empty()) {
    return std::nullopt;
  }
  return std::min(allocation_due_us_.value_or(UINT64_MAX), earliest_due_us_);
}

}  // namespace oomguard::guardian::daemon
