// What a domain's act rule decides: the readings its thresholds look at (observe), whether one is
// crossed, the kill gate, and the victim in the guardian's order (the kernel's candidates with the
// operator's protections and preferences and the pods' annotations). The result is a typed Outcome;
// the kill itself is the Executor's. Also the adaptive level watch: when each acting domain's level
// thresholds are next read (policies/level_watch.hpp).
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/daemon/watch_set.hpp"
#include "guardian/io/node.hpp"
#include "guardian/kube/workloads.hpp"
#include "policies/act.hpp"
#include "policies/decision.hpp"
#include "policies/level_watch.hpp"
#include "policies/warn.hpp"

namespace oomguard::guardian::daemon {

class Decider {
 public:
  // `workloads` may be null (no Kubernetes) and may change (Daemon passes the pointer's address).
  Decider(io::Node& node, const config::Config& config, const WatchSet& watch_set, const Rankings& rankings,
          const Executor& executor, const kube::Workloads* const& workloads, DaemonStats& stats);

  // The act rule of a domain ("/" = the host), or nullptr. Only in mode act.
  [[nodiscard]] const config::ActRule* actRuleFor(const std::string& domain) const;

  // Fills what the rule's thresholds look at, read now: memory.current of a memcg (and memory.high when
  // a "high" event is judged), MemAvailable and swap of the host, and PSI when the rule (or its warn
  // stage) has a PSI threshold and the event did not bring a reading. memory.max: read now with `fresh_limit` (a
  // decision: the watch set's copy may be up to a minute old, and a raised limit must not make a
  // kill), else the watch set's (the level watch, whose crossings a decision confirms).
  // Returns what could not be read (a decision on it would rest on missing data), or nullopt.
  std::optional<cgroupfs::Error> observe(const std::string& domain, const config::ActRule& rule,
                                     policies::DomainObservation& observation, bool fresh_limit = false);

  // The kernel's top candidates of a domain with the operator's protections and preferences (and, with
  // growers, the host's fastest growers); memory.oom.group resolved only when asked (a read per level).
  [[nodiscard]] std::vector<policies::VictimCandidate> candidates(const DomainState& state, bool with_growers,
                                                                  bool resolve_groups) const;

  // Ranks the host for a decision (rankings.rerankHost: the same object as the constructor's). One that
  // may kill (an act rule that acts and a gate that would let it, the exited victims released first) reads
  // every process, as the kernel's select_bad_process does; the others re-read the refresh's top and
  // the processes new since it. Except: within kFullHostReadBackoffUs of a full read whose decision
  // found no one to kill (the host held over its threshold by what may not be killed: ten full reads a
  // second were 5% of a core at 500 processes), and while the host has allocated less than
  // kFullHostReadBackoffBytes since (nothing is growing), a decision reads every process only when the
  // short read offers a victim (never the newcomer beside an old process that has grown unread).
  void rankHost(Rankings& rankings, const io::NodeFacts& facts, bool may_act, uint64_t now_us, Executor& executor);
  static constexpr uint64_t kFullHostReadBackoffUs = 1'000'000;
  static constexpr uint64_t kFullHostReadBackoffBytes = 64ULL << 20;

  // Thresholds, kill gate, victim, kill (through `executor`): what the rule did at `now_us`.
  policies::Outcome act(const std::string& domain, const DomainState& state, const config::ActRule& rule,
                        policies::DomainObservation observation, uint64_t now_us, Executor& executor);

  // The level thresholds (headroom, MemAvailable, SwapFree, held PSI) of every acting domain due at
  // `now_us` (`all`: every one), read now, and its warn stage's. A memcg domain with a headroom threshold
  // is due when the host has allocated half its room since its last reading (one read of /proc/vmstat
  // for all of them), else at the refresh; one whose warn level is not crossed is due by its room to the
  // warn level. The next due time is nextLevelDueUs().
  struct Warned {
    std::string domain;
    policies::Crossing crossing;               // the warn level crossed, in words
    policies::DomainObservation observation;   // the reading that crossed it
  };
  struct LevelChecks {
    // The domains that crossed an act level, with their readings: a decision each.
    std::vector<std::pair<std::string, policies::DomainObservation>> crossed;
    // The domains whose warn level makes a warning now (policies::warningDue): once per excursion.
    std::vector<Warned> warned;
  };
  LevelChecks checkLevels(uint64_t now_us, bool all);
  // When the next level reading is due; nullopt when no acting domain has a level threshold.
  [[nodiscard]] std::optional<uint64_t> nextLevelDueUs() const;
  // The domains with a held-pressure state (a pressure threshold read at least once): bounded by the
  // domains that exist, not by every domain there ever was.
  [[nodiscard]] size_t heldPressureStates() const { return threshold_states_.size(); }
  // A PSI trigger fired for `domain` (lmkd's response to pressure): its level thresholds are read now and
  // then every kPressurePollUs until a window (kPressureWindowUs) passes without another trigger.
  // Returns whether the domain has a level watch (then the caller reschedules the level timer).
  bool pressureEvent(const std::string& domain, uint64_t now_us);
  // A victim was taken in `cgroup` (by oomguard or the kernel; with `anywhere_below`, somewhere in that
  // subtree, as memory.events oom_kill says): every acting domain that may hold it starts its held
  // pressure over, since avg10 still carries the stall of before the kill (one OOM, one victim, in the
  // victim's ancestors too).
  void victimTaken(const std::string& cgroup, bool anywhere_below);
  // The config was replaced (a reload), or a domain was found or has gone between two refreshes: the
  // next checkLevels resolves every domain's act rule again (a new domain is watched from its next tick,
  // not from the next refresh).
  void domainsChanged() { rules_current_ = false; }
  // The config was replaced (a reload): besides domainsChanged(), every acting domain is read at the next
  // checkLevels, none is judged by a budget its old rule set (its threshold may have moved).
  void configChanged() {
    rules_current_ = false;
    config_changed_ = true;
  }
  // A memcg domain's memory.current as the level watch last read it, when (monotonic us), and the
  // memory.max it was judged against; nullopt when the level watch has not read it (no act rule, or
  // every read failed so far).
  struct LevelReading {
    uint64_t current_bytes = 0;
    uint64_t at_us = 0;
    std::optional<uint64_t> memory_max_bytes;
  };
  [[nodiscard]] std::optional<LevelReading> levelReading(const std::string& domain) const;
  static constexpr uint64_t kPressurePollUs = 10'000;
  static constexpr uint64_t kPressureWindowUs = 1'000'000;


 private:
  struct LevelWatch {
    policies::FillRate rate;
    uint64_t due_us = 0;
    uint64_t fast_until_us = 0;  // polled every kPressurePollUs until then (a PSI trigger fired)
    uint32_t failed_reads = 0;   // in a row: the retry backs off from 100 ms to the refresh interval
    // A memcg domain watched through the host's allocations: its room at its last reading, and what the
    // host had allocated then (policies::allocationBudgetSpent).
    std::optional<double> budget_room_bytes;
    uint64_t budget_allocated_bytes = 0;
    // The domain's act rule, resolved (glob matching) when the domains are scanned (`all`, or after a
    // reload), not at every tick; points into config_, which a reload replaces (domainsChanged()).
    const config::ActRule* rule = nullptr;
    uint64_t seen_in_scan = 0;
    std::optional<LevelReading> last_reading;  // memcg: its last successful memory.current reading
    policies::WarnState warn;                  // the rule's warn stage, when it has one
  };

  // act() itself; act() notes what a host decision that read every process found.
  policies::Outcome actOn(const std::string& domain, const DomainState& state, const config::ActRule& rule,
                          policies::DomainObservation observation, uint64_t now_us, Executor& executor);
  // The domain's held-pressure state when `when` has a pressure threshold; else an empty scratch one.
  policies::ThresholdState& thresholdState(const std::string& domain, const policies::Thresholds& when);
  // Held pressure after a kill starts over while a victim still blocks `domain` (policies::ThresholdState).
  void holdPressureWhileBlocked(const std::string& domain, const config::ActRule& rule, uint64_t now_us);
  // Fills the summaries below from levels_ (after each pass that reads or re-schedules a domain).
  void summariseLevels();

  io::Node& node_;
  const config::Config& config_;
  const WatchSet& watch_set_;
  const Rankings& rankings_;
  const Executor& executor_;
  const kube::Workloads* const& workloads_;
  DaemonStats& stats_;
  // Held pressure's state, by domain: only for a rule with a pressure threshold (no other field of a
  // ThresholdState is read), and only for a domain that exists (pruned at each scan of checkLevels).
  std::map<std::string, policies::ThresholdState> threshold_states_;
  policies::ThresholdState stateless_;  // what thresholdState() lends a rule without one: reset at each use
  std::map<std::string, LevelWatch> levels_;  // acting domains with level thresholds
  bool rules_current_ = false;                 // levels_ holds every acting domain with its rule
  bool config_changed_ = false;                // configChanged() since the last scan of the domains
  size_t ranked_domains_ = 0;                  // rankings_.all().size() when levels_ was built
  uint64_t scans_ = 0;
  // The host's allocations (/proc/vmstat), read once per level check: the fastest fill seen, and when
  // they must be read next (nullopt: no domain is watched through them).
  policies::FillRate allocation_rate_;
  std::optional<uint64_t> allocation_due_us_;
  // rankHost(): the host's allocations its last decision read (whether it read every process is
  // rankings_.lastHostRead()); when the last one that read every process found no victim, and the
  // allocations then.
  std::optional<uint64_t> host_read_allocated_bytes_;
  std::optional<uint64_t> host_found_no_victim_us_;
  std::optional<uint64_t> host_no_victim_allocated_bytes_;
  // Summaries of levels_ made by the last pass over it, so that a tick that only reads the allocations
  // and finds no budget spent touches no domain (500 acting pods: 5 ticks a second, each a walk of 500
  // map entries before): the earliest due_us; of the domains watched through the allocations, the
  // allocation total at which the first budget is spent (then + room / 2), the one at which the first
  // room is gone (then + room), and the latest `then` (the shortcut holds only past it).
  uint64_t earliest_due_us_ = UINT64_MAX;
  double first_spent_at_bytes_ = 0;
  double first_room_gone_at_bytes_ = 0;
  uint64_t latest_budget_then_bytes_ = 0;
  bool budgets_summarised_ = false;
};

}  // namespace oomguard::guardian::daemon
