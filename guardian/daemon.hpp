// `oomguard run`: one io_context, one thread. Event sources (PSI triggers, inotify on the cgroup tree and
// memory.events, /dev/kmsg, a refresh timer, signals) feed a decision path that re-reads only what an
// event concerns. In observe mode (the only mode so far) a decision is a logged prediction: which task
// the kernel would kill next in the affected OOM domain. Kernel OOM reports are checked against the
// prediction made for their domain before the OOM.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cgroupfs/kmsg.hpp"
#include "guardian/actuator.hpp"
#include "guardian/config.hpp"
#include "policies/act.hpp"
#include "policies/level_watch.hpp"
#include "guardian/event_log.hpp"
#include "guardian/kube_api.hpp"
#include "guardian/workloads.hpp"
#include "guardian/metrics.hpp"
#include "guardian/node.hpp"
#include "guardian/watchers.hpp"

namespace oomguard::guardian {

// Microseconds on the clock the kernel stamps kmsg records with (CLOCK_MONOTONIC).
using MonotonicClock = std::function<uint64_t()>;
uint64_t monotonicNowUs();

struct DaemonOptions {
  std::string proc_root = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string kmsg_path = "/dev/kmsg";
  std::optional<std::string> config_path;  // for SIGHUP reloads
  // --metrics-listen: overrides metrics.listen at start and in every reloaded config.
  std::optional<std::string> metrics_listen;
  bool dry_run = false;
  bool handle_signals = true;
  bool protect_self = true;  // apply config.self (mlockall, oom_score_adj)
};

// What the daemon has done so far; read by tests and, later, the metrics exporter.
struct DaemonStats {
  uint64_t pressure_events = 0;
  uint64_t memory_events = 0;
  uint64_t decisions = 0;
  uint64_t level_reads = 0;  // readings of a level threshold (the adaptive watch)
  uint64_t refreshes = 0;
  uint64_t kernel_oom_kills = 0;
  uint64_t predictions_match = 0;
  uint64_t predictions_mismatch = 0;
  uint64_t predictions_missing = 0;
  uint64_t cgroups_added = 0;
  uint64_t cgroups_removed = 0;
  uint64_t read_errors = 0;
  uint64_t kills = 0;
  uint64_t kills_held = 0;       // a threshold was crossed but the kill gate refused
  uint64_t kills_no_data = 0;    // a decision that could not read what it needed: no kill
  uint64_t protections_applied = 0;
};

class Daemon {
 public:
  Daemon(boost::asio::io_context& io, Config config, DaemonOptions options, EventLog& log, Metrics& metrics,
         Actuator& actuator, std::ostream& summary, MonotonicClock monotonic = monotonicNowUs);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Arms every source, takes the first ranking, and prints the start-up summary.
  void start();
  // Disarms everything; io.run() returns once the pending handlers have drained.
  void stop();
  // Re-reads the config file; a bad one is refused with a logged reason and the old one stays.
  bool reload();

  [[nodiscard]] std::vector<std::string> watchedCgroups() const;
  [[nodiscard]] size_t armedPressureTriggers() const;
  [[nodiscard]] const DaemonStats& stats() const { return stats_; }
  [[nodiscard]] const Config& config() const { return config_; }

 private:
  struct Candidate {
    pid_t pid = 0;
    std::string comm;
    std::string cgroup;
    long points = 0;
    int oom_score_adj = 0;
    long oom_score = 0;  // on the host's scale, as /proc/<pid>/oom_score
    std::optional<long> growth_pages;  // over the trend window
  };
  struct Prediction {
    uint64_t at_us = 0;
    std::optional<Candidate> victim;
  };
  struct DomainState {
    policies::OomDomain domain;
    std::vector<Candidate> top;           // highest first
    std::vector<Candidate> growers;       // the host's fastest growers at the last refresh (kill-allocating)
    // Each change of the predicted victim, newest last, at most kPredictionHistory (a vector: a deque's
    // first block alone is 512 bytes, times hundreds of domains).
    std::vector<Prediction> history;
  };
  struct WatchedCgroup {
    int directory_wd = -1;
    int events_wd = -1;
    int events_local_wd = -1;
    cgroupfs::MemoryEvents events;
    cgroupfs::MemoryEvents events_local;
    uint64_t added_us = 0;
    bool limited = false;  // memory.max is finite: an OOM domain
    std::optional<uint64_t> memory_max_bytes;
    cgroupfs::LimitBytes swap_max_bytes;
    std::shared_ptr<PressureWatch> pressure;
    bool pressure_pending = false;  // a trigger is wanted but not safe to write yet (see armablePressure)
    bool preexisting = false;       // found by the start-up walk: its age is unknown, not young
  };
  enum class WatchKind { kDirectory, kEvents, kEventsLocal };

  void waitForSignal();
  // Logs the watch set and counters (SIGUSR1, and on stop).
  void logWatchSet(const char* event);
  void protectSelf();
  // Kubernetes (daemon_kubernetes.cpp): the pod watch and Events, when config.kubernetes.enabled.
  void startKubernetes();
  void stopKubernetes();
  void onPodChange(const PodChange& change);
  [[nodiscard]] nlohmann::ordered_json workloadPolicyJson(const std::string& uid) const;
  // A Warning Event on the pod, best effort (queued; never waits).
  void reportPodEvent(const KubePod& pod, const std::string& reason, const std::string& message);
  // namespace/pod/container of a cgroup once its pod is known; empty otherwise.
  [[nodiscard]] WorkloadLabels labelsOf(const std::string& cgroup) const;
  void publishKubernetesStatus();
  // Pods' oomguard.io/v1.pressure-limit: a PSI trigger on each such pod's cgroup (re-checked at every
  // refresh and pod change), and what crossing it does.
  void reconcilePodPressure();
  void onPodPressure(const std::string& uid, bool gone, const std::string& text);
  // Writes a record of our own into /dev/kmsg to measure the kmsg clock's offset (see onKmsg).
  void markKmsgClock();
  void printSummary();
  void armHost();
  void addCgroup(const std::string& path);
  void removeCgroup(const std::string& path);
  // Re-reads memory.max (and memory.swap.max); returns whether the cgroup's "limited" changed.
  bool readLimit(const std::string& path, WatchedCgroup& watched);
  // Re-reads one cgroup's limit on an event there, re-applying its rule when it changed.
  void limitChanged(const std::string& path);
  // Arms or disarms the rule's watches and trigger for the cgroup as it is now.
  // Whether a PSI trigger may be written into `path` now: the cgroup is populated (then no rmdir can
  // run: the kernel refuses to remove a cgroup with tasks or children) and has been seen for at least
  // kPressureArmAgeUs (or existed at start). A trigger write racing the cgroup's removal leaks the
  // trigger and corrupts memory on kernels without upstream a5b98009f16d (6.12.117 and bookworm's 6.1
  // included: see tests/e2e/README.md, "Kernel bugs"). A wanted trigger that may not be written yet
  // stays pending and is retried at every refresh.
  bool armablePressure(const std::string& path, const WatchedCgroup& watched);
  void applyRule(const std::string& path, WatchedCgroup& watched);
  // The watched cgroup and all watched cgroups below it.
  [[nodiscard]] std::vector<std::string> subtreeOf(const std::string& path) const;
  void onInotify(int wd, uint32_t mask, const std::string& name);
  void onMemoryEvents(const std::string& path, bool local);
  void onPressure(const std::string& cgroup, bool gone, const std::string& text);
  void onKmsg(const std::string& record);
  void scheduleRefresh();
  void refresh();
  void resync();
  // The OOM domain an event in `cgroup` concerns: the nearest limited cgroup at or above it, else the host.
  std::string domainFor(const std::string& cgroup) const;
  // A fresh ranking of the domain `cgroup` belongs to, logged as a decision; in mode act (and when
  // may_act) the domain's act rule runs on it.
  void decide(const std::string& cgroup, nlohmann::ordered_json trigger, policies::DomainObservation observation,
              bool may_act = true);
  // Mode "act": the act rule of a domain ("/" = host), or nullptr.
  const ActRule* actRuleFor(const std::string& domain) const;
  // Thresholds, kill gate, victim, kill. Returns the decision's action/result fields.
  nlohmann::ordered_json act(const std::string& domain_path, DomainState& state, const ActRule& rule,
                             policies::DomainObservation observation, uint64_t now_us);
  // Fills what a domain's thresholds look at (memory.current, MemAvailable, PSI), read now.
  void observe(const std::string& domain_path, const ActRule& rule, policies::DomainObservation& observation);
  // At each refresh: the level thresholds of every acting domain.
  void checkLevels(uint64_t now_us, bool all);
  void scheduleLevels();
  nlohmann::ordered_json killVictim(const std::string& domain_path, const policies::VictimCandidate& victim,
                                    const ActRule& rule, const std::string& reason_kind, uint64_t now_us);
  void applyProtections(const std::unordered_map<pid_t, size_t>& by_pid,
                        const std::vector<cgroupfs::ProcessSnapshot>& processes);
  void releaseVictims(uint64_t now_us);
  // Declared sysctls: applied at start (mode act), compared at every refresh.
  void checkSysctls(bool at_start);
  bool readOomGroup(const std::string& cgroup);
  void record(DomainState& state, std::vector<Candidate> top, uint64_t at_us, bool log_change);
  // The kernel's top candidates of a domain with the operator's protections and preferences (and, with
  // growers, the host's fastest growers); memory.oom.group resolved only when asked (a read per level).
  std::vector<policies::VictimCandidate> guardianCandidates(const DomainState& state, bool with_growers,
                                                           bool resolve_groups);
  void publishRanking(const DomainState& state);
  static Candidate candidateOf(const cgroupfs::ProcessSnapshot& process, const policies::Candidate& ranked,
                               std::string cgroup);
  std::vector<Candidate> rerankHostTop(const DomainState& state);
  nlohmann::ordered_json candidatesJson(const std::vector<Candidate>& top) const;

  boost::asio::io_context& io_;
  Config config_;
  DaemonOptions options_;
  EventLog& log_;
  Metrics& metrics_;
  Actuator& actuator_;
  std::ostream& summary_;
  MonotonicClock monotonic_;
  Node node_;
  // The pids the last refresh read, sorted: a host decision also reads every pid not among them.
  std::vector<pid_t> refreshed_pids_;
  // When the current decision read its candidates, in clock ticks since boot (see killVictim).
  uint64_t snapshot_boot_ticks_ = 0;
  // --dry-run: the oom_score_adj each pid would have been given (see Node::useIntendedAdj).
  std::unordered_map<pid_t, int> intended_adj_;
  NodeFacts facts_;
  boost::asio::steady_timer refresh_timer_;
  boost::asio::steady_timer level_timer_;  // the next due level reading (checkLevels)
  struct LevelWatch {
    policies::FillRate rate;
    uint64_t due_us = 0;
  };
  std::map<std::string, LevelWatch> levels_;  // acting domains with level thresholds
  std::optional<boost::asio::signal_set> signals_;
  std::unique_ptr<InotifyWatch> inotify_;
  std::unique_ptr<KmsgWatch> kmsg_;
  std::shared_ptr<PressureWatch> host_pressure_;
  std::string host_pressure_status_;
  std::string kmsg_status_;
  std::string self_status_;
  std::map<std::string, WatchedCgroup> cgroups_;
  std::unordered_map<int, std::pair<std::string, WatchKind>> watches_;
  std::map<std::string, DomainState> domains_;  // "/" is the host
  cgroupfs::OomReportAssembler oom_reports_;
  policies::KillGate gate_;
  policies::GrowthTracker growth_;
  std::map<std::string, policies::ThresholdState> threshold_states_;
  std::set<pid_t> never_kill_;  // oomguard and its parent chain
  struct Cooling {
    std::shared_ptr<PinnedProcess> victim;  // null for a cgroup kill
    std::string killed_cgroup;
  };
  // Victims in progress (see policies::KillGate): pinned processes, ours and the kernel's, and the
  // cgroups oomguard killed whole; released once gone.
  std::map<pid_t, std::shared_ptr<PinnedProcess>> victim_pins_;
  std::set<std::string> killed_cgroups_;
  std::map<std::string, bool> sysctl_drift_;
  std::set<pid_t> kernel_killed_;  // victims of kernel OOM kills seen on kmsg (bounded)
  std::optional<int64_t> kmsg_offset_us_;  // CLOCK_MONOTONIC minus the kmsg clock, bounded from above
  std::string kmsg_mark_;                  // the text of our clock mark until it is read back
  uint64_t kmsg_mark_before_us_ = 0;
  uint64_t kmsg_mark_after_us_ = 0;
  std::unique_ptr<Workloads> workloads_;
  std::unique_ptr<PodWatch> pod_watch_;
  std::unique_ptr<EventRecorder> pod_events_;
  std::string kubernetes_status_ = "off (kubernetes.enabled: false)";
  EventRecorderStatus events_counted_;  // what publishKubernetesStatus has counted into the metrics
  bool protections_pending_ = false;    // a refresh is posted to apply changed pod policies
  struct PodPressure {
    std::string cgroup;  // the pod-level cgroup
    PressureLimit limit;
    std::shared_ptr<PressureWatch> watch;  // null when arming failed (tried once per limit)
    uint64_t first_fire_us = 0;            // the current streak of fires (limits longer than a window)
    uint64_t last_fire_us = 0;
  };
  std::map<std::string, PodPressure> pod_pressure_;  // by pod uid
  DaemonStats stats_;
  uint64_t event_arrived_us_ = 0;  // when the event being handled reached the loop
  bool stopped_ = false;
};

}  // namespace oomguard::guardian
