// `oomguard run`: one io_context, one thread. The Daemon owns the lifecycle (start, signals, reload,
// stop) and routes each event to its parts; it decides nothing itself:
//   WatchSet     the cgroups, their inotify watches and PSI triggers, and the host's trigger
//   Rankings     every OOM domain ranked as the kernel would, and each domain's predictions
//   Decider      an act rule's thresholds, the kill gate and the victim: a typed Outcome
//   Executor     kills, victims in progress, protections, sysctls: every write through the Actuator
//   OomReports   the kernel's OOM reports on kmsg, checked against the predictions
//   Pods         the Kubernetes side: pod watch, annotations, Events, pods' pressure limits
//   DecisionLog  Decisions, candidates and kernel reports as JSON lines
// An event (PSI trigger, memory.events, a level threshold, a kernel kill) becomes a fresh ranking of
// its domain, then a decision (mode act: the domain's act rule), then a log line.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/decider.hpp"
#include "guardian/daemon/decision_log.hpp"
#include "guardian/daemon/executor.hpp"
#include "guardian/daemon/kill_history.hpp"
#include "guardian/daemon/oom_reports.hpp"
#include "guardian/daemon/pods.hpp"
#include "guardian/daemon/rankings.hpp"
#include "guardian/daemon/watch_set.hpp"
#include "guardian/exporter/metrics.hpp"
#include "guardian/io/actuator.hpp"
#include "guardian/io/event_log.hpp"
#include "guardian/io/node.hpp"
#include "guardian/io/watchers.hpp"
#include "policies/decision.hpp"
#include "policies/forecast.hpp"

namespace oomguard::guardian::daemon {

class Daemon final : private WatchSet::Listener {
 public:
  Daemon(boost::asio::io_context& io, config::Config config, DaemonOptions options, io::EventLog& log,
         exporter::Metrics& metrics, io::Actuator& actuator, std::ostream& summary,
         MonotonicClock monotonic = monotonicNowUs, BootTicksClock boot_ticks = bootTicksNow);
  ~Daemon() override;
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Arms every source, takes the first ranking, and prints the start-up summary.
  void start();
  // Disarms everything; io.run() returns once the pending handlers have drained.
  void stop();
  // Re-reads the config file; a bad one is refused with a logged reason and the old one stays.
  bool reload();

  [[nodiscard]] std::vector<std::string> watchedCgroups() const { return watch_set_.paths(); }
  [[nodiscard]] size_t armedPressureTriggers() const { return watch_set_.armedPressureTriggers(); }
  [[nodiscard]] const DaemonStats& stats() const { return stats_; }
  [[nodiscard]] const config::Config& config() const { return config_; }

 private:
  // WatchSet::Listener
  void onMemoryEvents(const std::string& cgroup, bool local) override;
  void onPressure(const std::string& cgroup, bool gone, const std::string& text) override;
  void onDomainGone(const std::string& cgroup) override;
  void onCgroupRemoved(const std::string& cgroup) override;
  void onEventArrived() override { event_arrived_us_ = clock_.monotonic_us(); }
  void onYoungCgroup() override;
  void onDomainFound(const std::string& cgroup) override;
  // The next limit probe of the young cgroups (WatchSet::probeYoungLimits): a cgroup found limited
  // becomes an OOM domain at once (onDomainFound: ranked, its level read).
  void scheduleYoungProbe();

  void waitForSignal();
  void onKmsg(const std::string& record);
  // A fresh ranking of the domain `cgroup` belongs to, logged as a decision; in mode act (and when
  // `may_act`) the domain's act rule runs on it.
  void decide(policies::Trigger trigger, policies::DomainObservation observation, bool may_act = true);
  // The level thresholds due now (`all`: every one), a decision for each crossed; then the next reading.
  void checkLevels(uint64_t now_us, bool all);
  // A domain crossed its act rule's warn level (daemon_warn.cpp): the domain ranked again, the victim
  // the rule would choose now, a "warning" line, the counter, a Warning Event on the victim's pod and the
  // warn hook. No kill.
  void warn(const Decider::Warned& warned);
  void scheduleLevels();
  void scheduleRefresh();
  // The background pass: limits, every domain's ranking, protections, pods, victims, sysctls, metrics.
  void refresh();
  // One refresh soon (a pod policy changed); a burst of requests is one refresh.
  void requestRefresh();
  // A domain's ranking changed: its metrics, and a next_victim line when the prediction changed.
  void publishRanking(const DomainState& state, bool changed);
  void publishDomainMemory(const std::vector<std::string>& limited, bool full_scan);
  // One reading of a domain's use ("/" = the host) taken at `at_us` (a reading seen before, same time, is
  // published again but not fitted twice): to its time-to-OOM forecast and, with the forecast, to the
  // exporter.
  void recordDomainMemory(const std::string& domain, uint64_t limit_bytes, uint64_t usage_bytes, uint64_t at_us);
  // The host's: its limit RAM + swap, its use RAM not available + swap used, from /proc/meminfo's figures.
  void recordHostMemory(uint64_t mem_total_kb, uint64_t mem_available_kb, uint64_t swap_total_kb,
                        uint64_t swap_free_kb, uint64_t at_us);
  // The domain's time-to-OOM forecast in seconds, counted down from its last reading to now; nullopt
  // while it is not growing (or never read).
  [[nodiscard]] std::optional<double> oomForecastSeconds(const std::string& domain) const;
  void printSummary(const std::string& kmsg_status, const std::string& self_status);
  // Logs the watch set and counters (SIGUSR1, and on stop).
  void logWatchSet(const char* event);
  // The service manager: `state` sent, a failure logged once.
  void notifyManager(const std::string& state);
  void scheduleWatchdog();

  boost::asio::io_context& io_;
  config::Config config_;
  DaemonOptions options_;
  io::EventLog& log_;
  exporter::Metrics& metrics_;
  std::ostream& summary_;
  Clock clock_;
  io::Node node_;
  io::NodeFacts facts_;
  uint64_t facts_read_us_ = 0;  // when facts_ was last read whole (monotonic)
  DaemonStats stats_;
  WatchSet watch_set_;
  Rankings rankings_;
  io::HookRunner hooks_;  // the operator's hooks; stopped (their processes killed) in stop()
  Executor executor_;
  Pods pods_;
  Decider decider_;
  OomReports oom_reports_;
  KillHistory history_;
  // Each domain's time-to-OOM forecast ("/" = the host), fed by publishDomainMemory's readings: the host's
  // every refresh, an acting memcg's level watch readings, the others' at the full scans.
  std::map<std::string, policies::OomForecast> forecasts_;
  DecisionLog decision_log_;
  boost::asio::steady_timer refresh_timer_;
  boost::asio::steady_timer level_timer_;  // the next due level reading (checkLevels)
  io::ServiceNotifier notifier_;
  bool notify_failed_ = false;
  boost::asio::steady_timer watchdog_timer_;  // WATCHDOG=1 at half the manager's timeout
  boost::asio::steady_timer young_timer_;     // the next young cgroup's limit probe
  std::optional<uint64_t> young_due_us_;      // when young_timer_ fires, while it is set
  std::optional<boost::asio::signal_set> signals_;
  std::unique_ptr<io::KmsgWatch> kmsg_;
  uint64_t event_arrived_us_ = 0;  // when the event being handled reached the loop
  bool refresh_pending_ = false;   // a refresh is posted (requestRefresh)
  bool stopped_ = false;
};

}  // namespace oomguard::guardian::daemon
