#include "guardian/daemon/daemon.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <csignal>
#include <nlohmann/json.hpp>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "oomguard/version.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;

Json eventsJson(const cgroupfs::MemoryEvents& events) {
  return Json{{"low", events.low},   {"high", events.high},         {"max", events.max},
              {"oom", events.oom},   {"oom_kill", events.oom_kill}, {"oom_group_kill", events.oom_group_kill}};
}

}  // namespace

Daemon::Daemon(boost::asio::io_context& io, config::Config config, DaemonOptions options, io::EventLog& log,
               exporter::Metrics& metrics, io::Actuator& actuator, std::ostream& summary, MonotonicClock monotonic,
               BootTicksClock boot_ticks)
    : io_(io),
      config_(std::move(config)),
      options_(std::move(options)),
      log_(log),
      metrics_(metrics),
      summary_(summary),
      clock_{std::move(monotonic), std::move(boot_ticks)},
      node_(options_.proc_root, options_.cgroup_root),
      watch_set_(io, node_, config_, log, stats_, clock_, *this),
      rankings_(node_, config_, stats_, clock_,
                [this](const DomainState& state, bool changed) { publishRanking(state, changed); }),
      hooks_(io, clock_.monotonic_us),
      executor_(node_, actuator, hooks_, config_, options_, log, metrics, stats_, clock_),
      pods_(io, node_, config_, facts_, log, metrics, executor_, stats_, clock_, [this] { requestRefresh(); }),
      decider_(node_, config_, watch_set_, rankings_, executor_, pods_.workloads(), stats_),
      oom_reports_(actuator, clock_, log, metrics, stats_, rankings_),
      history_(clock_, log, [this](const std::string& cgroup) { return pods_.labelsOf(cgroup); }),
      decision_log_(
          log, config_, [this](const std::string& cgroup) { return pods_.labelsOf(cgroup); },
          [this](const std::string& domain) { return oomForecastSeconds(domain); }),
      refresh_timer_(io),
      level_timer_(io),
      notifier_(options_.notify),
      watchdog_timer_(io),
      young_timer_(io) {}

Daemon::~Daemon() {
  try {
    stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; stop() logs on the way
  }
}

void Daemon::start() {
  if (options_.dry_run) {
    node_.useIntendedAdj(&executor_.intendedAdj());
  }
  if (auto facts = node_.readFacts()) {
    facts_ = std::move(facts).value();
    facts_read_us_ = clock_.monotonic_us();
  } else {
    log_.write("read_error", Json{{"what", "node facts"}, {"error", facts.error().describe()}});
  }
  const std::string self_status = options_.protect_self ? executor_.protectSelf() : "";
  executor_.findNeverKill();  // never kill oomguard itself or the processes that started it
  if (options_.handle_signals) {
    signals_.emplace(io_, SIGINT, SIGTERM, SIGHUP);
    signals_->add(SIGUSR1);
    waitForSignal();
  }
  // Descriptors: the soft limit raised to the hard one, and the triggers kept within it (io/fd_budget.hpp).
  const io::OpenFileLimit open_files = io::raiseOpenFileLimit();
  node_.triggerBudget().setMax(io::triggerBudgetFor(open_files.soft));
  watch_set_.open();
  watch_set_.armHost();
  if (node_.cgroupfs().hasFile("/", cgroupfs::files::kProcs)) {
    watch_set_.add("/");
  }
  std::string kmsg_status = "off (read_kmsg: false)";
  if (config_.history) {
    history_.open(*config_.history, readBootId(options_.proc_root));
  }
  executor_.onKill([this](const OomguardKill& kill) { history_.oomguardKill(kill); });
  if (config_.read_kmsg) {
    // With a history, the records still in the ring buffer are replayed into it first (kills made while
    // the daemon was down); they are never acted on or checked against predictions.
    io::KmsgWatch::Callback replay;
    if (history_.enabled()) {
      replay = [this](const std::string& record) { history_.replay(record); };
    }
    auto kmsg = io::KmsgWatch::open(
        io_, options_.kmsg_path, [this](const std::string& record) { onKmsg(record); }, replay);
    history_.replayed();
    if (kmsg) {
      kmsg_ = std::move(kmsg).value();
      kmsg_status = "reading " + options_.kmsg_path;
      oom_reports_.markClock(options_.kmsg_path);
    } else {
      kmsg_status = "unavailable: " + kmsg.error().describe();
    }
  }
  pods_.start();
  executor_.setWorkloads(pods_.workloads());
  executor_.onPodKill([this](const kube::KubePod& pod, const std::string& message) {
    pods_.reportEvent(pod, "OomguardKilled", message, true);
  });
  executor_.checkSysctls(true);
  // Before the first refresh, whose pages the daemon keeps using: the peak RSS (VmHWM) is then the RSS
  // start-up reached or the idle loop's, whichever is more, not start-up's plus the first refresh's.
  // io/startup_pages.hpp must not race a thread that maps or unmaps files: the only other threads now are
  // the metrics and health servers', which do not (the module was dlopen'ed above, synchronously; the
  // resolver thread and the NSS modules getaddrinfo may load start with the loop, after this).
  const std::string released =
      options_.protect_self ? executor_.releaseStartupPages() : "kept (protect_self off)";
  refresh();
  printSummary(kmsg_status, self_status);
  log_.write("started", Json{{"version", kVersion},
                             {"mode", config::toString(config_.mode)},
                             {"dry_run", options_.dry_run},
                             {"watched_cgroups", watch_set_.cgroups().size()},
                             {"pressure_triggers", armedPressureTriggers()},
                             {"pressure_trigger_budget", node_.triggerBudget().max()},
                             {"open_files_limit", open_files.soft},
                             {"open_files_limit_before", open_files.soft_before},
                             {"startup_pages_released", released},
                             {"domains", rankings_.all().size()}});
  scheduleRefresh();
  // Ready: every source armed and every domain ranked once.
  notifyManager("READY=1\nSTATUS=" + std::to_string(rankings_.all().size()) + " OOM domains ranked, " +
                std::to_string(watch_set_.cgroups().size()) + " cgroups watched, mode " +
                config::toString(config_.mode));
  scheduleWatchdog();
}

void Daemon::waitForSignal() {
  signals_->async_wait([this](const boost::system::error_code& error, int signal) {
    if (error || stopped_) {
      return;
    }
    if (signal == SIGHUP) {
      reload();
      waitForSignal();
      return;
    }
    if (signal == SIGUSR1) {
      logWatchSet("watch_set");
      waitForSignal();
      return;
    }
    log_.write("stopping", Json{{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"}});
    stop();
  });
}

void Daemon::onMemoryEvents(const std::string& path, bool local) {
  auto rise = watch_set_.readEvents(path, local);
  if (!rise) {
    return;
  }
  watch_set_.limitChanged(path);
  if (rise->rose.empty()) {
    return;
  }
  Json rose = Json::object();
  bool pressure_sign = false;  // high/max: reclaim is failing to keep up; worth a fresh decision
  bool kernel_acted = false;   // oom/oom_kill: the kernel has already acted
  uint64_t high = 0;
  uint64_t max = 0;
  for (const auto& [key, delta] : rise->rose) {
    rose[key] = delta;
    if (!local) {
      metrics_.countMemoryEvent(path, key, delta);
    }
    pressure_sign = pressure_sign || key == "high" || key == "max";
    kernel_acted = kernel_acted || key == "oom" || key == "oom_kill";
    high = key == "high" ? delta : high;
    max = key == "max" ? delta : max;
  }
  if (!local && rose.contains("oom_kill")) {
    // The kernel has a victim in progress somewhere in this subtree (its kmsg report names it later).
    executor_.recordKernelKill(path, 0, clock_.monotonic_us());
    decider_.victimTaken(path, true);
  }
  ++stats_.memory_events;
  log_.write("memory_event", Json{{"cgroup", path}, {"file", local ? "memory.events.local" : "memory.events"},
                                  {"rose", rose}, {"counters", eventsJson(rise->now)}});
  // Only the hierarchical file drives decisions, so one event is not decided twice; oom and oom_kill
  // mean the kernel has already acted, and the prediction made before it must stand for the check.
  if (!local && pressure_sign && !kernel_acted) {
    policies::DomainObservation observation;
    observation.events_high = high;
    observation.events_max = max;
    policies::Trigger trigger{policies::Trigger::Kind::kMemoryEvent, path, {}, {}, {}, rise->rose};
    decide(std::move(trigger), observation);
  }
}

void Daemon::onPressure(const std::string& cgroup, bool gone, const std::string& text) {
  event_arrived_us_ = clock_.monotonic_us();
  if (gone) {
    log_.write("pressure_trigger_gone", Json{{"cgroup", cgroup}});
    return;
  }
  ++stats_.pressure_events;
  if (cgroup != "/") {
    watch_set_.limitChanged(cgroup);
  }
  // Pressure in an acting domain: its level thresholds are polled fast for the PSI window (lmkd's way).
  if (decider_.pressureEvent(watch_set_.domainFor(cgroup), event_arrived_us_)) {
    scheduleLevels();
  }
  policies::Trigger trigger{policies::Trigger::Kind::kPressure, cgroup, {}, {}, {}, {}};
  const io::PressureWatch* watch = watch_set_.pressureWatch(cgroup);
  if (watch != nullptr) {
    trigger.pressure_trigger = {watch->trigger().resource, watch->trigger().triggerText()};
  }
  policies::DomainObservation observation;
  if (auto pressure = cgroupfs::parsePressure(text)) {
    const double some = pressure.value().some.avg10 / 100.0;
    const std::optional<double> full =
        pressure.value().full ? std::optional<double>(pressure.value().full->avg10 / 100.0) : std::nullopt;
    if (watch != nullptr && watch->trigger().resource == "memory") {
      metrics_.setPressure(cgroup, pressure.value());
    }
    // The reading stands for the domain only when it is the domain's own (a child's total is not its
    // domain's: Decider::observe reads that one).
    if (watch != nullptr && watch->trigger().resource == "memory" && watch_set_.domainFor(cgroup) == cgroup) {
      observation.pressure_read_us = event_arrived_us_;
      observation.some_avg10 = some;
      observation.full_avg10 = full;
      observation.some_total_us = pressure.value().some.total_us;
      observation.full_total_us = full ? std::optional(pressure.value().full->total_us) : std::nullopt;
    }
    trigger.some_avg10 = some;
    trigger.full_avg10 = full;
  }
  decide(std::move(trigger), observation);
}

void Daemon::onDomainGone(const std::string& cgroup) {
  forecasts_.erase(cgroup);
  decision_log_.forgetDomain(cgroup);
  if (rankings_.forget(cgroup)) {
    metrics_.forgetDomain(cgroup);
    decider_.domainsChanged();
  }
}

void Daemon::onCgroupRemoved(const std::string& cgroup) { metrics_.forgetCgroup(cgroup); }

void Daemon::decide(policies::Trigger trigger, policies::DomainObservation observation, bool may_act) {
  ++stats_.decisions;
  // The candidates below are read now: a victim that started later is not the one chosen.
  executor_.markSnapshot();
  const std::string domain = watch_set_.domainFor(trigger.cgroup);
  policies::Decision decision;
  decision.trigger = std::move(trigger);
  DomainState* state = nullptr;
  if (domain == "/") {
    // Every process when the decision may kill, as the kernel reads (Decider::rankHost).
    decider_.rankHost(rankings_, facts_, may_act, clock_.monotonic_us(), executor_);
    state = rankings_.find("/");
    if (state == nullptr) {
      return;
    }
  } else {
    auto ranked = rankings_.rerankMemcg(facts_, domain);
    if (!ranked) {
      if (!ranked.error().vanished()) {
        ++stats_.read_errors;
      }
      decision.domain = policies::OomDomain{policies::DomainKind::kMemcg, domain, 0};
      decision.outcome.result = policies::DecisionResult::kNoData;
      decision.error = ranked.error().describe();
      decision_log_.decision(decision, clock_.monotonic_us());
      return;
    }
    state = ranked.value();
  }
  const uint64_t decided_us = clock_.monotonic_us();
  decision.domain = state->domain;
  decision.candidates = state->top;
  decision.acting_mode = config_.mode == config::Mode::kAct;
  decision.dry_run = options_.dry_run;
  decision.outcome.result =
      state->top.empty() ? policies::DecisionResult::kNoCandidate : policies::DecisionResult::kObserved;
  if (const config::ActRule* rule = decider_.actRuleFor(domain); may_act && rule != nullptr) {
    decision.outcome = decider_.act(domain, *state, *rule, observation, decided_us, executor_);
  }
  // reaction_us: from the event reaching the loop to the decision made and its action done (the kill
  // signal sent and process_mrelease returned, or cgroup.kill written; a SIGTERM grace runs on after
  // it, and a panic follows the log).
  const uint64_t acted_us = clock_.monotonic_us();
  decision.reaction_us = acted_us >= event_arrived_us_ ? acted_us - event_arrived_us_ : 0;
  if (const auto signalled = decision.outcome.signalled_at_us) {
    decision.signal_us = *signalled >= event_arrived_us_ ? *signalled - event_arrived_us_ : 0;
  }
  metrics_.observeReaction(static_cast<double>(decision.reaction_us) / 1e6);
  // One OOM, one victim: while one is in progress here, it (not a second task) is what comes next.
  if (const auto waiting = executor_.gate().blocking(domain, decided_us)) {
    decision.waiting_on_victim = waiting;
    decision.waiting_ms_ago = (decided_us - std::min(decided_us, waiting->since_us)) / 1000;
  }
  decision_log_.decision(decision, decided_us);
  if (decision.outcome.action == policies::DecisionAction::kPanic) {
    // The decision is on stdout (flushed) before the kernel goes down.
    const auto result = executor_.panic();
    log_.write("panic_failed", Json{{"detail", result.detail}});
  }
}

void Daemon::onKmsg(const std::string& record) {
  std::vector<std::string> reranks;  // domains whose prediction a kernel kill has made stale
  auto reports = oom_reports_.feed(record);
  if (const auto sequence = oom_reports_.lastSequence()) {
    history_.sawRecord(*sequence);
  }
  for (auto& report : reports) {
    if (auto* checked = std::get_if<KernelKillCheck>(&report)) {
      if (checked->domain == "/") {
        checked->domain_limit_bytes = facts_.meminfo.mem_total_kb * 1024;
      } else if (auto limit = node_.cgroupfs().readLimit(checked->domain, cgroupfs::files::kMemoryMax)) {
        checked->domain_limit_bytes = limit.value();
      }
    }
    history_.kernelReport(report, oom_reports_.lastSequence());
    if (const auto* checked = std::get_if<KernelKillCheck>(&report)) {
      // One OOM, one victim: wait on the kernel's victim until it is gone, as the kernel itself does.
      const auto& kill = checked->kill;
      // Attributed to the workload whose cgroup the victim was in: counted and, in a pod, an Event.
      const std::string where = kill.summary.task_memcg.value_or(checked->domain);
      metrics_.countOomKill(pods_.labelsOf(where), "kernel", kill.summary.constraint);
      pods_.reportKernelKill(where, DecisionLog::kernelKillText(*checked));
      if (kill.victim.pid > 0) {
        executor_.recordKernelKill(kill.summary.task_memcg ? *kill.summary.task_memcg : checked->domain,
                                   kill.victim.pid, clock_.monotonic_us());
      }
      decider_.victimTaken(kill.summary.task_memcg.value_or(checked->domain), !kill.summary.task_memcg);
      reranks.push_back(checked->modelled ? checked->domain : "/");
    }
    decision_log_.kernelReport(report);
  }
  // A fresh prediction for each domain the kernel just acted in (logged; never acts: the kernel did).
  for (const auto& domain : reranks) {
    event_arrived_us_ = clock_.monotonic_us();
    decide(policies::Trigger{policies::Trigger::Kind::kKernelOomKill, domain, {}, {}, {}, {}},
           policies::DomainObservation{}, false);
  }
}

void Daemon::scheduleRefresh() {
  if (stopped_) {
    return;
  }
  metrics_.setLoopStallLimit(exporter::loopStallLimit(config_.refresh_interval_s));  // a reload may change it
  refresh_timer_.expires_after(std::chrono::microseconds(static_cast<int64_t>(config_.refresh_interval_s * 1e6)));
  refresh_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) {
      return;
    }
    refresh();
    scheduleRefresh();
  });
}

void Daemon::requestRefresh() {
  if (refresh_pending_) {
    return;
  }
  refresh_pending_ = true;
  boost::asio::post(io_, [this] {
    refresh_pending_ = false;
    if (!stopped_) {
      refresh();
    }
  });
}

void Daemon::refresh() {
  ++stats_.refreshes;
  metrics_.loopTurned();  // the health check's proof that the loop turns
  metrics_.expireSeries(clock_.monotonic_us());
  const uint64_t scan_started_us = clock_.monotonic_us();
  // Level thresholds first: a few small reads per acting domain, before the /proc scan delays them.
  if (stats_.refreshes > 1) {
    checkLevels(scan_started_us, true);
  }
  if (auto facts = node_.readFacts()) {
    facts_ = std::move(facts).value();
    facts_read_us_ = clock_.monotonic_us();
  }
  // Limits: young cgroups every refresh, all of them every kFullLimitScanEvery-th.
  constexpr uint64_t kFullLimitScanEvery = 6;
  const bool full_scan = stats_.refreshes % kFullLimitScanEvery == 1;
  const auto limited = watch_set_.refreshLimits(clock_.monotonic_us(), full_scan, facts_.meminfo.swap_total_kb);
  const HostScan& scan = rankings_.refresh(facts_, watch_set_, limited);
  executor_.applyProtections(scan, watch_set_.paths());
  std::vector<std::pair<std::string, uint64_t>> domains;
  for (const auto& path : limited) {
    if (const WatchedCgroup* watched = watch_set_.find(path); watched != nullptr && watched->memory_max_bytes) {
      domains.emplace_back(path, *watched->memory_max_bytes);
    }
  }
  executor_.applyMemoryHigh(domains);
  pods_.reconcilePressure(watch_set_);
  pods_.publishStatus();
  executor_.releaseVictims(clock_.monotonic_us());
  executor_.checkSysctls(false);
  history_.sync();
  publishDomainMemory(limited, full_scan);
  metrics_.observeScanDuration(static_cast<double>(clock_.monotonic_us() - scan_started_us) / 1e6);
  if (stats_.refreshes == 1) {
    checkLevels(clock_.monotonic_us(), true);  // the first time, once the domains are known
  }
}

bool Daemon::reload() {
  if (!options_.config_path) {
    log_.write("config_reload", Json{{"result", "ignored"}, {"reason", "started without --config"}});
    return false;
  }
  notifyManager("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(clock_.monotonic_us()));
  // The manager waits for READY=1 after RELOADING=1, whatever the reload's result.
  struct Ready {
    Daemon& daemon;
    ~Ready() { daemon.notifyManager("READY=1"); }
  } ready{*this};
  try {
    config::Config fresh = config::loadConfigFile(*options_.config_path);
    if (options_.metrics_listen) {
      fresh.metrics_listen = *options_.metrics_listen;
    }
    // What is bound or connected at start cannot change under a running daemon: refuse, and say so,
    // rather than log "applied" for a setting that is not.
    if (const auto restart = config::restartOnlyChanges(config_, fresh); !restart.empty()) {
      throw config::ConfigError(*options_.config_path + ": " + restart +
                                " changed; these take effect only at a restart (the old config stays in force)");
    }
    executor_.restoreMemoryHigh();  // the fresh config's rules set theirs at the refresh below
    config_ = std::move(fresh);
    decider_.configChanged();  // the level watch's rules point into the old config, its budgets too
    executor_.configChanged();  // the kill gate's victim wait and kill cap
  } catch (const config::ConfigError& error) {
    log_.write("config_reload", Json{{"result", "refused"}, {"reason", error.what()}});
    return false;
  }
  watch_set_.reapply();
  pods_.tenantChanged();  // the tenant policy applies at once; the API watch itself needs a restart
  refresh_timer_.cancel();
  metrics_.loopTurned();  // the loop is alive; the stall limit of the new interval counts from here
  scheduleRefresh();
  log_.write("config_reload", Json{{"result", "applied"}, {"file", *options_.config_path},
                                   {"pressure_triggers", armedPressureTriggers()},
                                   {"health_stall_limit_ms", exporter::loopStallLimit(config_.refresh_interval_s).count()}});
  if (config_.mode == config::Mode::kAct) {
    requestRefresh();  // the fresh rules' protections and memory.high, on the loop's next turn
  }
  return true;
}

void Daemon::stop() {
  if (stopped_) {
    return;
  }
  logWatchSet("stopping_state");
  notifyManager("STOPPING=1");
  stopped_ = true;
  refresh_timer_.cancel();
  level_timer_.cancel();
  watchdog_timer_.cancel();
  young_timer_.cancel();
  if (signals_) {
    boost::system::error_code ignored;
    signals_->cancel(ignored);
  }
  executor_.stopHooks();
  executor_.restoreMemoryHigh();
  watch_set_.close();
  if (kmsg_) {
    kmsg_->close();
  }
  history_.savePosition(true);
  pods_.stop();
}

}  // namespace oomguard::guardian::daemon
