#include "policies/act.hpp"

#include "cgroupfs/paths.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace oomguard::policies {

int oomScoreAdjFor(ProtectionClass protection) {
  switch (protection) {
    case ProtectionClass::kCritical:
      return -998;
    case ProtectionClass::kHigh:
      return -500;
    case ProtectionClass::kNormal:
      return 0;
    case ProtectionClass::kLow:
      return 500;
    case ProtectionClass::kSacrificial:
      return 1000;
  }
  return 0;
}

std::optional<ProtectionClass> parseProtectionClass(std::string_view name) {
  if (name == "critical") {
    return ProtectionClass::kCritical;
  }
  if (name == "high") {
    return ProtectionClass::kHigh;
  }
  if (name == "normal") {
    return ProtectionClass::kNormal;
  }
  if (name == "low") {
    return ProtectionClass::kLow;
  }
  if (name == "sacrificial") {
    return ProtectionClass::kSacrificial;
  }
  return std::nullopt;
}

const char* toString(ProtectionClass protection) {
  switch (protection) {
    case ProtectionClass::kCritical:
      return "critical";
    case ProtectionClass::kHigh:
      return "high";
    case ProtectionClass::kNormal:
      return "normal";
    case ProtectionClass::kLow:
      return "low";
    case ProtectionClass::kSacrificial:
      return "sacrificial";
  }
  return "normal";
}

std::optional<Preference> parsePreference(std::string_view name) {
  if (name == "prefer") {
    return Preference::kPrefer;
  }
  if (name == "none") {
    return Preference::kNone;
  }
  if (name == "avoid") {
    return Preference::kAvoid;
  }
  if (name == "omit") {
    return Preference::kOmit;
  }
  return std::nullopt;
}

const char* toString(Preference preference) {
  switch (preference) {
    case Preference::kPrefer:
      return "prefer";
    case Preference::kNone:
      return "none";
    case Preference::kAvoid:
      return "avoid";
    case Preference::kOmit:
      return "omit";
  }
  return "none";
}

std::optional<Action> parseAction(std::string_view name) {
  if (name == "observe") {
    return Action::kObserve;
  }
  if (name == "kill-worst") {
    return Action::kKillWorst;
  }
  if (name == "kill-allocating") {
    return Action::kKillAllocating;
  }
  if (name == "panic") {
    return Action::kPanic;
  }
  return std::nullopt;
}

const char* toString(Action action) {
  switch (action) {
    case Action::kObserve:
      return "observe";
    case Action::kKillWorst:
      return "kill-worst";
    case Action::kKillAllocating:
      return "kill-allocating";
    case Action::kPanic:
      return "panic";
  }
  return "observe";
}

std::optional<std::string> exclusionReason(const VictimCandidate& candidate) {
  if (candidate.pid == 1) {
    return "pid 1";
  }
  if (!candidate.killable) {
    return "unkillable for the kernel (kernel thread, no mm, or oom_score_adj -1000)";
  }
  if (candidate.oom_score_adj == -1000) {
    return "oom_score_adj -1000";
  }
  if (candidate.never_kill) {
    return "protected (oomguard itself, its parents, or a never-kill rule)";
  }
  if (candidate.place_unknown) {
    return "its cgroup could not be read: the rules that may protect it are unknown";
  }
  if (candidate.preference == Preference::kOmit) {
    return "preference omit";
  }
  return std::nullopt;
}

namespace {

// The part of the guardian's order above the points: smaller is chosen first.
std::pair<int, int> orderClass(const VictimCandidate& candidate) {
  return {-static_cast<int>(candidate.protection), static_cast<int>(candidate.preference)};
}

}  // namespace

std::vector<VictimCandidate> guardianOrder(std::vector<VictimCandidate> candidates) {
  std::erase_if(candidates, [](const VictimCandidate& c) { return exclusionReason(c).has_value(); });
  std::stable_sort(candidates.begin(), candidates.end(), [](const VictimCandidate& a, const VictimCandidate& b) {
    if (orderClass(a) != orderClass(b)) {
      return orderClass(a) < orderClass(b);
    }
    return a.points > b.points;
  });
  return candidates;
}

Choice chooseVictim(Action action, const std::vector<VictimCandidate>& candidates) {
  const auto ordered = guardianOrder(candidates);
  if (ordered.empty()) {
    return {std::nullopt, "no candidate may be killed"};
  }
  if (action == Action::kKillWorst) {
    const auto& first = ordered.front();
    return {first, std::string("highest in the guardian's order (protection ") + toString(first.protection) +
                       ", preference " + toString(first.preference) + ", " + std::to_string(first.points) +
                       " points)"};
  }
  if (action == Action::kKillAllocating) {
    // A kill takes the oom.group cgroup whole, so growth counts per kill unit.
    auto unit_of = [](const VictimCandidate& c) {
      return c.group_kill_cgroup.value_or("pid:" + std::to_string(c.pid));
    };
    std::map<std::string, long> unit_growth;
    for (const auto& candidate : ordered) {
      unit_growth[unit_of(candidate)] += candidate.growth_pages.value_or(0);
    }
    // `ordered` is sorted by class and preference: the first (class, preference) with a grower decides, and within it the
    // largest growth.
    const VictimCandidate* best = nullptr;
    long best_growth = 0;
    for (const auto& candidate : ordered) {
      if (best != nullptr && orderClass(candidate) != orderClass(*best)) {
        break;
      }
      const long growth = unit_growth[unit_of(candidate)];
      if (candidate.growth_pages && growth > best_growth) {
        best = &candidate;
        best_growth = growth;
      }
    }
    if (best == nullptr) {
      return {std::nullopt, "no candidate still growing grew over the trend window"};
    }
    return {*best, "fastest growth over the trend window, still growing: " + std::to_string(best_growth) + " pages"};
  }
  return {std::nullopt, std::string("action ") + toString(action) + " chooses no victim"};
}

const char* toString(CrossedBy kind) {
  switch (kind) {
    case CrossedBy::kMemoryMax:
      return "memory_max";
    case CrossedBy::kMemoryHigh:
      return "memory_high";
    case CrossedBy::kHeadroom:
      return "headroom";
    case CrossedBy::kMemAvailable:
      return "mem_available";
    case CrossedBy::kSwapFree:
      return "swap_free";
    case CrossedBy::kPressure:
      return "pressure";
  }
  return "pressure";
}

bool eventStillStands(const std::optional<uint64_t>& current_bytes, const std::optional<uint64_t>& limit_bytes) {
  if (!current_bytes || !limit_bytes) {
    return true;
  }
  return *current_bytes + *limit_bytes / kStaleEventDivisor >= *limit_bytes;
}

std::optional<Crossing> thresholdCrossed(const Thresholds& thresholds, const DomainObservation& observation,
                                         ThresholdState& state, uint64_t now_us) {
  char text[160];
  // Seen in the lab (beat-the-kernel): the increments of a leaker's last allocations, read after it was
  // killed and gone, chose the innocent neighbour next although the domain was far below its limit.
  if (thresholds.on_memory_max && observation.events_max > 0 &&
      eventStillStands(observation.memory_current_bytes, observation.memory_max_bytes)) {
    return Crossing{CrossedBy::kMemoryMax, "memory.events max rose by " + std::to_string(observation.events_max)};
  }
  if (thresholds.on_memory_high && observation.events_high > 0 &&
      eventStillStands(observation.memory_current_bytes, observation.memory_high_bytes)) {
    return Crossing{CrossedBy::kMemoryHigh, "memory.events high rose by " + std::to_string(observation.events_high)};
  }
  if (thresholds.headroom_below && observation.memory_current_bytes && observation.memory_max_bytes &&
      *observation.memory_max_bytes > 0) {
    const double max = static_cast<double>(*observation.memory_max_bytes);
    const double current = static_cast<double>(*observation.memory_current_bytes);
    const double headroom = current >= max ? 0.0 : (max - current) / max;
    if (headroom < *thresholds.headroom_below) {
      std::snprintf(text, sizeof text, "headroom %.3f below %.3f of memory.max", headroom, *thresholds.headroom_below);
      return Crossing{CrossedBy::kHeadroom, std::string(text)};
    }
  }
  if (thresholds.mem_available_below && observation.mem_available_kb && observation.mem_total_kb &&
      *observation.mem_total_kb > 0) {
    const double ratio = static_cast<double>(*observation.mem_available_kb) / static_cast<double>(*observation.mem_total_kb);
    if (ratio < *thresholds.mem_available_below) {
      std::snprintf(text, sizeof text, "MemAvailable %.3f of MemTotal, below %.3f", ratio, *thresholds.mem_available_below);
      return Crossing{CrossedBy::kMemAvailable, std::string(text)};
    }
  }
  if (thresholds.swap_free_below && observation.swap_free_kb && observation.swap_total_kb &&
      *observation.swap_total_kb > 0) {
    const double ratio = static_cast<double>(*observation.swap_free_kb) / static_cast<double>(*observation.swap_total_kb);
    if (ratio < *thresholds.swap_free_below) {
      std::snprintf(text, sizeof text, "SwapFree %.3f of SwapTotal, below %.3f", ratio, *thresholds.swap_free_below);
      return Crossing{CrossedBy::kSwapFree, std::string(text)};
    }
  }
  if (thresholds.pressure_avg10 && thresholds.pressure_kind) {
    const bool full = *thresholds.pressure_kind == "full";
    const auto& value = full ? observation.full_avg10 : observation.some_avg10;
    if (!value) {
      return std::nullopt;  // no reading: neither above nor below
    }
    if (state.after_kill && *value >= *thresholds.pressure_avg10) {
      // avg10 still carries the stall of before the kill: the stall since the first reading after it.
      const auto& total = full ? observation.full_total_us : observation.some_total_us;
      if (!total) {
        return std::nullopt;  // no total read: not crossed
      }
      const uint64_t read_us = observation.pressure_read_us.value_or(now_us);
      if (!state.stall_base_us || *total < *state.stall_base_total_us || read_us < *state.stall_base_us) {
        state.stall_base_us = read_us;
        state.stall_base_total_us = *total;
        return std::nullopt;
      }
      const uint64_t elapsed_us = read_us - *state.stall_base_us;
      if (elapsed_us < std::max(thresholds.pressure_held_us, kStallWindowAfterKillUs)) {
        return std::nullopt;
      }
      const double share =
          static_cast<double>(*total - *state.stall_base_total_us) / static_cast<double>(elapsed_us);
      if (share >= *thresholds.pressure_avg10) {
        std::snprintf(text, sizeof text, "PSI %s stall %.3f of the last %.1f s (after a kill) >= %.3f",
                      thresholds.pressure_kind->c_str(), share, static_cast<double>(elapsed_us) / 1e6,
                      *thresholds.pressure_avg10);
        return Crossing{CrossedBy::kPressure, std::string(text)};
      }
      state.stall_base_us = read_us;  // a window under the threshold: the next one starts here
      state.stall_base_total_us = *total;
      return std::nullopt;
    }
    state.after_kill = false;  // avg10 below the threshold: it no longer carries the old stall
    if (*value >= *thresholds.pressure_avg10) {
      if (!state.pressure_above_since_us) {
        state.pressure_above_since_us = now_us;
      }
      const uint64_t held = now_us - *state.pressure_above_since_us;
      if (held >= thresholds.pressure_held_us) {
        std::snprintf(text, sizeof text, "PSI %s avg10 %.3f >= %.3f for %.1f s", thresholds.pressure_kind->c_str(),
                      *value, *thresholds.pressure_avg10, static_cast<double>(held) / 1e6);
        return Crossing{CrossedBy::kPressure, std::string(text)};
      }
    } else {
      state.pressure_above_since_us.reset();
    }
  }
  return std::nullopt;
}

void restartPressureHold(ThresholdState& state) {
  state.after_kill = true;
  state.pressure_above_since_us.reset();
  state.stall_base_us.reset();
  state.stall_base_total_us.reset();
}

namespace {

// Whether a victim in progress lies in `domain`'s OOM scope.
bool blocks(const VictimInProgress& victim, const std::string& domain) {
  if (cgroupfs::isSameOrBelow(victim.cgroup, domain)) {
    return true;  // the victim is in the domain
  }
  // Known only as "somewhere below victim.cgroup": a domain inside that subtree may hold it.
  return victim.pid == 0 && cgroupfs::isSameOrBelow(domain, victim.cgroup);
}

}  // namespace

std::optional<VictimInProgress> KillGate::blocking(const std::string& domain, uint64_t now_us) const {
  for (const auto& victim : victims_) {
    if (waitedOn(victim, now_us) && blocks(victim, domain)) {
      return victim;
    }
  }
  return std::nullopt;
}

std::optional<std::string> KillGate::refusal(const std::string& domain, uint64_t now_us,
                                             const std::string& budget) const {
  if (const auto victim = blocking(domain, now_us)) {
    const uint64_t waited_ms = (now_us - std::min(now_us, victim->since_us)) / 1000;
    const std::string who = victim->pid != 0 ? "victim " + std::to_string(victim->pid) : "the kernel's victim";
    return "waiting on " + who + " in " + victim->cgroup + (victim->by_kernel ? " (killed by the kernel " : " (killed by oomguard ") +
           std::to_string(waited_ms) + " ms ago) to release its memory: one OOM, one victim";
  }
  constexpr uint64_t kMinuteUs = 60'000'000;
  const auto found = budget.empty() ? tenant_kills_us_.end() : tenant_kills_us_.find(budget);
  if (!budget.empty() && found == tenant_kills_us_.end()) {
    return std::nullopt;
  }
  const std::deque<uint64_t>& kills = budget.empty() ? recent_kills_us_ : found->second;
  size_t in_last_minute = 0;
  for (const uint64_t at : kills) {
    in_last_minute += now_us - at < kMinuteUs ? 1 : 0;
  }
  if (in_last_minute >= max_per_minute_) {
    return (budget.empty() ? "kill cap reached: " : "the pod's own kill cap reached: ") +
           std::to_string(in_last_minute) + " kills in the last minute";
  }
  return std::nullopt;
}

void KillGate::recordKill(const std::string& cgroup, pid_t pid, uint64_t now_us, const std::string& budget,
                          uint64_t grace_us, bool counts) {
  victims_.push_back(VictimInProgress{cgroup, pid, false, now_us, grace_us});
  if (!counts) {
    return;
  }
  std::deque<uint64_t>& kills = budget.empty() ? recent_kills_us_ : tenant_kills_us_[budget];
  kills.push_back(now_us);
  constexpr uint64_t kMinuteUs = 60'000'000;
  while (!kills.empty() && now_us - kills.front() >= kMinuteUs) {
    kills.pop_front();
  }
}

void KillGate::recordKernelKill(const std::string& cgroup, pid_t pid, uint64_t now_us) {
  if (pid != 0) {
    // The report explains the unknown entries whose subtree holds the victim.
    std::erase_if(victims_, [&](const VictimInProgress& v) {
      return v.pid == 0 && v.by_kernel && cgroupfs::isSameOrBelow(cgroup, v.cgroup);
    });
    if (std::any_of(victims_.begin(), victims_.end(), [&](const auto& v) { return v.pid == pid; })) {
      return;
    }
  } else if (std::any_of(victims_.begin(), victims_.end(), [&](const auto& v) {
               return v.pid == 0 && v.cgroup == cgroup && waitedOn(v, now_us);
             })) {
    return;  // the same subtree is already waited on
  }
  victims_.push_back(VictimInProgress{cgroup, pid, true, now_us});
}

void KillGate::refund(const std::string& budget, uint64_t at_us) {
  std::deque<uint64_t>& kills = budget.empty() ? recent_kills_us_ : tenant_kills_us_[budget];
  if (const auto found = std::find(kills.begin(), kills.end(), at_us); found != kills.end()) {
    kills.erase(found);
  }
}

void KillGate::release(pid_t pid) {
  std::erase_if(victims_, [pid](const VictimInProgress& v) { return v.pid == pid && pid != 0; });
}

void KillGate::releaseCgroup(const std::string& cgroup) {
  std::erase_if(victims_, [&](const VictimInProgress& v) { return v.pid == 0 && !v.by_kernel && v.cgroup == cgroup; });
}

void KillGate::expire(uint64_t now_us) {
  std::erase_if(victims_, [&](const VictimInProgress& v) { return !waitedOn(v, now_us); });
  constexpr uint64_t kMinuteUs = 60'000'000;
  std::erase_if(tenant_kills_us_, [&](const auto& entry) {
    return entry.second.empty() || now_us - std::min(now_us, entry.second.back()) >= kMinuteUs;
  });
}

void GrowthTracker::sample(pid_t pid, uint64_t now_us, long pages) {
  auto& samples = samples_[pid];
  samples.emplace_back(now_us, pages);
  // Keep one sample at or before the window's start, so growth covers the whole window.
  size_t drop = 0;
  while (samples.size() - drop > 2 && now_us - samples[drop + 1].first >= window_us_) {
    ++drop;
  }
  samples.erase(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(drop));
}

std::optional<uint64_t> GrowthTracker::lastSampleUs(pid_t pid) const {
  const auto found = samples_.find(pid);
  return found == samples_.end() || found->second.empty() ? std::nullopt
                                                          : std::optional<uint64_t>(found->second.back().first);
}

std::optional<long> GrowthTracker::growth(pid_t pid) const {
  const auto found = samples_.find(pid);
  if (found == samples_.end() || found->second.size() < 2) {
    return std::nullopt;
  }
  return found->second.back().second - found->second.front().second;
}

bool GrowthTracker::growingNow(pid_t pid) const {
  const auto found = samples_.find(pid);
  if (found == samples_.end() || found->second.size() < 2) {
    return false;
  }
  const auto& samples = found->second;
  const uint64_t latest_us = samples.back().first;
  long before = samples.front().second;
  for (const auto& [at_us, pages] : samples) {
    if (at_us + kRecentUs <= latest_us) {
      before = pages;
    }
  }
  return samples.back().second > before;
}

void GrowthTracker::forgetOlderThan(uint64_t before_us) {
  std::erase_if(samples_, [before_us](const auto& entry) {
    return entry.second.empty() || entry.second.back().first < before_us;
  });
}

}  // namespace oomguard::policies
