// The Decider's adaptive level watch (decider.hpp: checkLevels and what feeds it): when each acting
// domain's level thresholds, and its warn stage's, are next read, and what the readings crossed.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cgroupfs/paths.hpp"
#include "guardian/daemon/decider.hpp"

namespace oomguard::guardian::daemon {

namespace {

// Whether `thresholds` has a level (not only memory.events conditions) for the level watch to read.
bool hasLevel(const policies::Thresholds& thresholds) {
  return thresholds.headroom_below || thresholds.mem_available_below || thresholds.swap_free_below ||
         thresholds.pressure_avg10;
}

// Whether the rule acts on a level of its own (its warn stage aside).
bool actsOnLevel(const config::ActRule& rule) {
  return rule.action != policies::Action::kObserve && hasLevel(rule.when);
}

}  // namespace

Decider::LevelChecks Decider::checkLevels(uint64_t now_us, bool all) {
  // Level thresholds (headroom, MemAvailable, SwapFree, held PSI) are read at the rate the physics
  // demands (policies/level_watch.hpp): each acting domain's next reading is due when its room to the
  // threshold could be gone at the fastest plausible fill rate, between 5 ms and the refresh interval.
  // A memcg domain is watched through the host's allocations instead: one read of /proc/vmstat tells
  // which domains could have come near their threshold, and only those are read (a node with 500
  // acting pods reads one file at each tick, not 500). A reading is one small file (memory.current, or
  // /proc/meminfo for the host); a decision follows only when the threshold is crossed. A warn stage
  // is read with its act rule's levels, and brings the next reading forward by its own room until its
  // level is crossed; a rule with action "observe" and a warn stage is watched for the warnings alone.
  LevelChecks checks;
  auto& crossed = checks.crossed;
  if (config_.mode != config::Mode::kAct) {
    // Nothing is watched (a reload from act to observe: the old watch's due times, in the past, armed
    // the level timer at 0 again after every tick, a loop spinning at a full core).
    levels_.clear();
    threshold_states_.clear();
    allocation_due_us_.reset();
    budgets_summarised_ = false;
    return checks;
  }
  constexpr uint64_t kMinDelayUs = 5'000;
  constexpr uint64_t kAfterCrossingUs = 100'000;  // re-read a crossed domain after this (no log flood)
  constexpr uint64_t kBudgetedRereadRefreshes = 6;  // a domain watched through the allocations: 30 s
  constexpr uint64_t kWarnMinDelayUs = 500'000;      // a warn level read by its room: at most twice a second
  constexpr double kWarnMinBudgetBytes = 32.0 * 1024 * 1024;  // ... or each 16 MiB the host allocates
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
      if (rule == nullptr || (!actsOnLevel(*rule) && !rule->warn)) {
        continue;
      }
      auto& level = levels_[path];
      level.rule = rule;
      level.seen_in_scan = scans_;
      if (config_changed_) {
        level.budget_room_bytes.reset();  // its room was measured against the old rule's threshold
        level.warn.threshold = {};        // its held warn pressure too (armed or not: as the next reading says)
        level.due_us = 0;
      }
    }
    config_changed_ = false;
    std::erase_if(levels_, [&](const auto& entry) { return entry.second.seen_in_scan != scans_; });
    // A domain that is gone keeps no held-pressure state (pods come and go: the map would only grow),
    // nor one whose rule no longer has a pressure threshold (a reload).
    std::erase_if(threshold_states_, [&](const auto& entry) {
      const config::ActRule* rule = rankings_.all().contains(entry.first) ? actRuleFor(entry.first) : nullptr;
      return rule == nullptr || !rule->when.pressure_avg10;
    });
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
    return checks;
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
    // The warn stage first: a domain that crosses both levels at one reading is warned about before its
    // decision. A reading that could not judge every warn level neither warns nor re-arms.
    const config::WarnStage* warn = rule->warn ? &*rule->warn : nullptr;
    std::optional<double> warn_room;
    if (warn != nullptr && read) {
      warn_room = policies::roomToThresholdBytes(warn->when, observation);
      const auto warned = policies::thresholdCrossed(warn->when, observation, level.warn.threshold, now_us);
      const auto reading = warned ? policies::WarnReading::kCrossed
                           : policies::levelsReadable(warn->when, observation) ? policies::WarnReading::kBelow
                                                                                : policies::WarnReading::kUnknown;
      if (policies::warningDue(level.warn, reading, now_us, static_cast<uint64_t>(warn->interval_s * 1e6))) {
        checks.warned.push_back(Warned{path, *warned, observation});
      }
    }
    const bool acts = actsOnLevel(*rule);
    if (acts && policies::thresholdCrossed(when, observation, thresholdState(path, when), now_us)) {
      crossed.emplace_back(path, observation);
      level.due_us = now_us + kAfterCrossingUs;
      continue;
    }
    const auto room = acts ? policies::roomToThresholdBytes(when, observation) : std::nullopt;
    // The fill rate from one room only (the act level's, else the warn level's: both shrink alike).
    if (room || warn_room) {
      level.rate.sample(now_us, room ? *room : *warn_room);
    }
    // Held PSI has no room in bytes: it is read at the refresh, and its trigger wakes it.
    uint64_t delay_us = policies::nextLevelCheckUs(room, level.rate.bytesPerSecond(), assumed_rate, kMinDelayUs,
                                                   max_delay_us);
    // The warn level, until it is crossed, brings the next reading forward by its own room too, but by
    // time never closer than kWarnMinDelayUs, and by the host's allocations never by less than
    // kWarnMinBudgetBytes: a warning needs no millisecond timing, and a domain may run just below its warn
    // level for hours (the act level is different: a kill ends that).
    const bool warn_ahead = warn_room && *warn_room > 0;
    uint64_t warn_delay_us = UINT64_MAX;
    auto budget_room = room;
    if (warn_ahead) {
      warn_delay_us = policies::nextLevelCheckUs(warn_room, level.rate.bytesPerSecond(), assumed_rate,
                                                 std::min(kWarnMinDelayUs, max_delay_us), max_delay_us);
      delay_us = std::min(delay_us, warn_delay_us);
      const double warn_budget = std::max(*warn_room, kWarnMinBudgetBytes);
      budget_room = budget_room ? std::min(*budget_room, warn_budget) : warn_budget;
    }
    const bool headroom_level = when.headroom_below || (warn != nullptr && warn->when.headroom_below);
    const bool pressure_level = when.pressure_avg10 || (warn != nullptr && warn->when.pressure_avg10);
    if (path != "/" && budget_room && *budget_room > 0 && allocated && headroom_level && !pressure_level) {
      // Watched through the host's allocations from now on, and re-read every kBudgetedRereadRefreshes
      // refreshes whatever they say (the safety net). Not a rule with a pressure threshold: its held
      // pressure is read at every refresh (a stall allocates nothing).
      level.budget_room_bytes = *budget_room;
      level.budget_allocated_bytes = *allocated;
      smallest_left = smallest_left ? std::min(*smallest_left, *budget_room) : *budget_room;
      delay_us = max_delay_us * kBudgetedRereadRefreshes;
    }
    if (rule->memory_high_at_threshold && executor_.memoryHighInForce(path) && room && *room > 0) {
      // Its memory.high sits at the threshold: the kernel says when it is crossed ("high" in
      // memory.events, an inotify wake-up), so the level is only re-read at the refresh (and its warn
      // level, which no memory.high marks, by its own room).
      delay_us = std::min(max_delay_us, warn_delay_us);
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
  return checks;
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
    // Not level.rule: a reload may have replaced the config since the last scan.
    if (const config::ActRule* rule = holds(domain) ? actRuleFor(domain) : nullptr; rule && rule->when.pressure_avg10) {
      policies::restartPressureHold(threshold_states_[domain]);
    }
  }
  for (auto& [domain, state] : threshold_states_) {
    if (holds(domain)) {
      policies::restartPressureHold(state);
    }
  }
}

policies::ThresholdState& Decider::thresholdState(const std::string& domain, const policies::Thresholds& when) {
  if (!when.pressure_avg10) {
    stateless_ = {};
    return stateless_;
  }
  return threshold_states_[domain];
}

void Decider::holdPressureWhileBlocked(const std::string& domain, const config::ActRule& rule, uint64_t now_us) {
  // A victim not yet gone (as far as the gate knows: its release is noted by the next decision, the
  // refresh, or the gate's bounded wait) still stalls the domain: no stall baseline is taken from it.
  if (!rule.when.pressure_avg10) {
    return;  // no held pressure: no state to keep
  }
  auto& state = threshold_states_[domain];
  if (state.after_kill && executor_.gate().blocking(domain, now_us)) {
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
