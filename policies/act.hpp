// The guardian's own decisions: protections, thresholds, victim choice and the kill gate. Pure functions
// of plain values and an injected time (microseconds); nothing here reads a file or a clock.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace oomguard::policies {

// Protection classes and the oom_score_adj each applies. "critical" stays killable (-998, just below
// kubelet's -997 for Guaranteed pods): -1000 would hide the task from the kernel too.
enum class ProtectionClass { kCritical, kHigh, kNormal, kLow, kSacrificial };
int oomScoreAdjFor(ProtectionClass protection);
std::optional<ProtectionClass> parseProtectionClass(std::string_view name);
const char* toString(ProtectionClass protection);

// systemd-oomd's vocabulary: an ordering key above the badness, never blended into it.
// prefer: killed before anything else; avoid: after everything else; omit: never by oomguard.
enum class Preference { kPrefer, kNone, kAvoid, kOmit };
std::optional<Preference> parsePreference(std::string_view name);
const char* toString(Preference preference);

enum class Action { kObserve, kKillWorst, kKillAllocating, kPanic };
std::optional<Action> parseAction(std::string_view name);
const char* toString(Action action);

// One process as the guardian's choice sees it.
struct VictimCandidate {
  pid_t pid = 0;
  std::string comm;
  uid_t uid = 0;                        // real uid (the process rules match it)
  std::string cgroup;
  long points = 0;                      // the kernel's badness in this domain
  int oom_score_adj = 0;
  bool killable = true;                 // by the kernel's rules (not init, not a kthread, adj != -1000)
  Preference preference = Preference::kNone;
  // The workload's class (a pod's oomguard.io/v1.protection): the first ordering key, sacrificial first.
  ProtectionClass protection = ProtectionClass::kNormal;
  bool never_kill = false;              // oomguard itself, its ancestors, or a protected rule
  // Its cgroup could not be read (it vanished meanwhile, or its path is outside the reader's cgroup
  // namespace): the rules, annotations and memory.oom.group that may protect it are unknown.
  bool place_unknown = false;
  long oom_score = 0;                   // on the host's scale, as /proc/<pid>/oom_score
  std::optional<long> growth_pages;     // charge growth over the trend window (kill-allocating)
  std::optional<std::string> group_kill_cgroup;  // memory.oom.group resolution in this domain
};

// Why a candidate may not be chosen, or nullopt when it may.
std::optional<std::string> exclusionReason(const VictimCandidate& candidate);

// The guardian's order: (protection class, preference, points) lexicographically: sacrificial before
// low before normal before high before critical, then prefer before none before avoid, then the highest
// points; excluded candidates are dropped.
std::vector<VictimCandidate> guardianOrder(std::vector<VictimCandidate> candidates);

struct Choice {
  std::optional<VictimCandidate> victim;
  std::string reason;  // why this one, or why none
};
// kill-worst: the first of guardianOrder(). kill-allocating: the candidate (grouped by its oom.group
// cgroup) whose charge grew most over the trend window; none grew: no victim.
Choice chooseVictim(Action action, const std::vector<VictimCandidate>& candidates);

// What a domain looks like at an event, for thresholds.
struct DomainObservation {
  std::optional<double> some_avg10;  // 0..1
  std::optional<double> full_avg10;
  std::optional<uint64_t> some_total_us;  // the stall totals read with them (PSI "total=")
  std::optional<uint64_t> full_total_us;
  std::optional<uint64_t> pressure_read_us;  // when they were read (nullopt: at the decision's now_us)
  std::optional<uint64_t> memory_current_bytes;
  std::optional<uint64_t> memory_max_bytes;
  std::optional<uint64_t> memory_high_bytes;  // read for on_memory_high (nullopt: "max" or not read)
  std::optional<uint64_t> mem_available_kb;  // host
  std::optional<uint64_t> mem_total_kb;
  std::optional<uint64_t> swap_free_kb;
  std::optional<uint64_t> swap_total_kb;
  uint64_t events_high = 0;  // increments seen with this event
  uint64_t events_max = 0;
};

struct Thresholds {
  std::optional<std::string> pressure_kind;  // "some" | "full"
  std::optional<double> pressure_avg10;      // 0..1
  uint64_t pressure_held_us = 0;             // above for at least this long
  std::optional<double> headroom_below;      // (max - current) / max below this (memcg)
  std::optional<double> mem_available_below;  // MemAvailable / MemTotal below this (host)
  std::optional<double> swap_free_below;      // SwapFree / SwapTotal below this (host, with swap)
  // Any memory.events "max" / "high" increment, unless the domain's usage, read at the decision, is
  // already more than kStaleEventMargin of the limit below it: the increments were counted while a task
  // that is gone since (a victim, oomguard's or the kernel's) still allocated, and are stale.
  bool on_memory_max = false;
  bool on_memory_high = false;
};

// An event is stale when usage is more than limit / kStaleEventDivisor (about 3%) under the limit: the
// kernel's reclaim keeps a leaking domain within a few pages of it, a released victim leaves it far below.
inline constexpr uint64_t kStaleEventDivisor = 32;
// Whether a "max" or "high" increment still stands: usage at most limit / kStaleEventDivisor below the
// limit, or either unknown (no reading: the event is taken as it is).
bool eventStillStands(const std::optional<uint64_t>& current_bytes, const std::optional<uint64_t>& limit_bytes);

// Per-domain memory of when pressure went above its threshold.
struct ThresholdState {
  std::optional<uint64_t> pressure_above_since_us;
  // After a kill (or while a victim is waited on), avg10, a 10 s average, stays above the threshold for
  // seconds after the victim's memory is back: held pressure would then choose a second victim, an
  // innocent, for the same stall. Until avg10 falls below the threshold again, the pressure is judged by
  // the stall accumulated since the first reading after the victim has gone (the PSI total's rise over
  // the time passed), in windows of max(held_s, kStallWindowAfterKillUs): a window under the threshold
  // starts the next one. The caller restarts the hold while a victim still blocks the domain.
  bool after_kill = false;
  std::optional<uint64_t> stall_base_us;        // when that first reading was made
  std::optional<uint64_t> stall_base_total_us;  // and the stall total it read
};
inline constexpr uint64_t kStallWindowAfterKillUs = 1'000'000;
// A victim was killed or is waited on in the domain: held pressure starts over, judged as above from the
// next reading.
void restartPressureHold(ThresholdState& state);

// Which threshold a domain crossed: a bounded kind (a metric label) and the reading, in words.
enum class CrossedBy { kMemoryMax, kMemoryHigh, kHeadroom, kMemAvailable, kSwapFree, kPressure };
// memory_max | memory_high | headroom | mem_available | swap_free | pressure
const char* toString(CrossedBy kind);
struct Crossing {
  CrossedBy kind = CrossedBy::kMemoryMax;
  std::string text;  // e.g. "headroom 0.041 below 0.050 of memory.max"
};

// Whether the domain has crossed a threshold at `now_us`, and which. Missing data never crosses a
// threshold (when data is missing the guardian does not kill).
std::optional<Crossing> thresholdCrossed(const Thresholds& thresholds, const DomainObservation& observation,
                                         ThresholdState& state, uint64_t now_us);

// A victim whose memory is still being released, killed by oomguard or by the kernel.
struct VictimInProgress {
  // Where it is. With pid 0 (the kernel's kill seen in a hierarchical memory.events before its kmsg
  // report named the task) only "somewhere in this subtree" is known.
  std::string cgroup;
  pid_t pid = 0;
  bool by_kernel = false;
  uint64_t since_us = 0;
  // A SIGTERM grace: the victim keeps its memory until it exits or the grace ends in SIGKILL, so the
  // bounded wait starts only after it.
  uint64_t grace_us = 0;
};

// One OOM, one victim, as the kernel does it (oom_evaluate_task aborts the selection while a task of
// the domain is an OOM victim whose memory is not yet released): while a victim is in progress, no
// domain that holds it gets a second kill. A victim with a known cgroup blocks the domains at or above
// it; one known only as "somewhere in this subtree" blocks every domain that overlaps the subtree. A
// victim ends when the caller releases it (it saw the process gone, its address space torn down), or
// after `victim_wait_us` (the kernel's oom_reaper likewise gives up on a stuck victim after about a
// second and lets the next selection run). The storm guard stays: at most `max_per_minute` kills in
// any 60 s over all domains. Kills a tenant asked for (a pod's own pressure limit) have budgets of their
// own, one per `budget` key (the pod's cgroup), `max_per_minute` each: a tenant that keeps tripping its
// own limit never holds back the node's kills, nor another tenant's.
class KillGate {
 public:
  KillGate(uint64_t victim_wait_us, size_t max_per_minute)
      : victim_wait_us_(victim_wait_us), max_per_minute_(max_per_minute) {}
  // nullopt when a kill in `domain` may happen now, else why not ("waiting on victim 123 ...", "kill
  // cap reached ..."). Victims past their wait are treated as ended.
  // `budget`: empty for the node's cap, else the tenant budget the kill would spend.
  [[nodiscard]] std::optional<std::string> refusal(const std::string& domain, uint64_t now_us,
                                                   const std::string& budget = "") const;
  // The victim in progress that blocks `domain` now, if any (the oldest).
  [[nodiscard]] std::optional<VictimInProgress> blocking(const std::string& domain, uint64_t now_us) const;
  // oomguard killed `pid` (0 for a cgroup kill) in `cgroup`, with a SIGTERM grace of `grace_us` (0: at
  // once); counts toward the per-minute cap unless `counts` is false (the kill was counted when its
  // pre_kill hook started). It is waited on for the grace plus the bounded wait.
  void recordKill(const std::string& cgroup, pid_t pid, uint64_t now_us, const std::string& budget = "",
                  uint64_t grace_us = 0, bool counts = true);
  // The kernel killed in `cgroup`: `pid` 0 when only memory.events said so (then `cgroup` is the
  // subtree it happened in). A report that names the task replaces the unknown entries it explains
  // (those whose subtree holds `cgroup`).
  void recordKernelKill(const std::string& cgroup, pid_t pid, uint64_t now_us);
  // A kill counted at `at_us` (recordKill) was not made after all: it no longer counts toward the cap
  // of `budget` (its victim entry is released separately).
  void refund(const std::string& budget, uint64_t at_us);
  // The victim `pid` is gone (a cgroup kill: `cgroup` is empty).
  void release(pid_t pid);
  void releaseCgroup(const std::string& cgroup);
  // Forgets victims past their wait.
  void expire(uint64_t now_us);
  // A reload's bounds: they apply to the victims in progress and the kills already counted too.
  void setLimits(uint64_t victim_wait_us, size_t max_per_minute) {
    victim_wait_us_ = victim_wait_us;
    max_per_minute_ = max_per_minute;
  }
  [[nodiscard]] const std::vector<VictimInProgress>& inProgress() const { return victims_; }

 private:
  // Whether `victim` is still waited on at `now_us`.
  [[nodiscard]] bool waitedOn(const VictimInProgress& victim, uint64_t now_us) const {
    return now_us - std::min(now_us, victim.since_us) < victim_wait_us_ + victim.grace_us;
  }
  uint64_t victim_wait_us_;
  size_t max_per_minute_;
  std::vector<VictimInProgress> victims_;
  std::deque<uint64_t> recent_kills_us_;
  std::map<std::string, std::deque<uint64_t>> tenant_kills_us_;  // by budget key; pruned by expire()
};

// Charge growth per process over a trend window, from successive samples.
class GrowthTracker {
 public:
  explicit GrowthTracker(uint64_t window_us) : window_us_(window_us) {}
  void sample(pid_t pid, uint64_t now_us, long pages);
  // The time over which a process must still be growing to count as allocating now (growingNow).
  static constexpr uint64_t kRecentUs = 1'000'000;
  // pages now minus pages at the oldest sample inside the window; nullopt with fewer than two samples.
  [[nodiscard]] std::optional<long> growth(pid_t pid) const;
  // Whether the latest sample is above the newest one at least kRecentUs older (or, when every sample
  // is more recent than that, the oldest): a process that grew at start-up and then stood still for
  // kRecentUs still has its start-up in growth(), but is not growing now.
  [[nodiscard]] bool growingNow(pid_t pid) const;
  // When `pid` was last sampled.
  [[nodiscard]] std::optional<uint64_t> lastSampleUs(pid_t pid) const;
  // Drops pids not sampled since `before_us`.
  void forgetOlderThan(uint64_t before_us);
  // Drops `pid`'s samples: it names another process now (a recycled pid), whose growth starts afresh.
  void forget(pid_t pid) { samples_.erase(pid); }
  [[nodiscard]] size_t size() const { return samples_.size(); }

 private:
  uint64_t window_us_;
  // Per pid, oldest first: a few samples (one per refresh and per decision, 100 ms apart at most, for
  // the window). A vector, not a deque: a deque's first block alone is 512 bytes, and every process on
  // the node has an entry (0.9 MiB of the idle daemon with 500 pods).
  std::map<pid_t, std::vector<std::pair<uint64_t, long>>> samples_;
};

}  // namespace oomguard::policies
