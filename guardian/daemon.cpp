#include "guardian/daemon.hpp"

#include <dirent.h>
#include <sys/inotify.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <ostream>

#include "cgroupfs/parse.hpp"
#include "cgroupfs/paths.hpp"
#include "guardian/features.hpp"
#include "guardian/version.hpp"
#include "policies/badness.hpp"

namespace oomguard::guardian {
namespace {

using Json = nlohmann::ordered_json;

constexpr uint32_t kDirectoryMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR;
constexpr size_t kPredictionHistory = 32;

std::string childOf(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

Json eventsJson(const cgroupfs::MemoryEvents& events) {
  return Json{{"low", events.low},   {"high", events.high},         {"max", events.max},
              {"oom", events.oom},   {"oom_kill", events.oom_kill}, {"oom_group_kill", events.oom_group_kill}};
}

}  // namespace

uint64_t monotonicNowUs() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000U + static_cast<uint64_t>(now.tv_nsec) / 1000U;
}

Daemon::Daemon(boost::asio::io_context& io, Config config, DaemonOptions options, EventLog& log, Metrics& metrics,
               Actuator& actuator, std::ostream& summary, MonotonicClock monotonic)
    : io_(io),
      config_(std::move(config)),
      options_(std::move(options)),
      log_(log),
      metrics_(metrics),
      actuator_(actuator),
      summary_(summary),
      monotonic_(std::move(monotonic)),
      node_(options_.proc_root, options_.cgroup_root),
      refresh_timer_(io),
      level_timer_(io),
      gate_(static_cast<uint64_t>(config_.victim_wait_s * 1e6), config_.max_kills_per_minute),
      growth_(static_cast<uint64_t>(config_.trend_window_s * 1e6)) {}

Daemon::~Daemon() {
  try {
    stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; stop() logs on the way
  }
}

void Daemon::start() {
  if (options_.dry_run) {
    node_.useIntendedAdj(&intended_adj_);
  }
  if (auto facts = node_.readFacts()) {
    facts_ = std::move(facts).value();
  } else {
    log_.write("read_error", Json{{"what", "node facts"}, {"error", facts.error().describe()}});
  }
  if (options_.protect_self) {
    protectSelf();
  }
  // Never kill oomguard itself or the processes that started it.
  for (pid_t pid = ::getpid(); pid > 1 && never_kill_.insert(pid).second;) {
    auto process = node_.procfs().readProcess(pid, false);
    if (!process) {
      break;
    }
    pid = process.value().status.ppid;
  }
  if (options_.handle_signals) {
    signals_.emplace(io_, SIGINT, SIGTERM, SIGHUP);
    signals_->add(SIGUSR1);
    waitForSignal();
  }

  auto inotify = InotifyWatch::open(io_, [this](int wd, uint32_t mask, const std::string& name) {
    onInotify(wd, mask, name);
  });
  if (inotify) {
    inotify_ = std::move(inotify).value();
  } else {
    log_.write("read_error", Json{{"what", "inotify"}, {"error", inotify.error().describe()}});
  }
  armHost();
  if (node_.cgroupfs().hasFile("/", "cgroup.procs")) {
    addCgroup("/");
  }
  if (config_.read_kmsg) {
    auto kmsg = KmsgWatch::open(io_, options_.kmsg_path, [this](const std::string& record) { onKmsg(record); });
    if (kmsg) {
      kmsg_ = std::move(kmsg).value();
      kmsg_status_ = "reading " + options_.kmsg_path;
      markKmsgClock();
    } else {
      kmsg_status_ = "unavailable: " + kmsg.error().describe();
    }
  } else {
    kmsg_status_ = "off (read_kmsg: false)";
  }
  startKubernetes();
  checkSysctls(true);
  refresh();
  printSummary();
  log_.write("started", Json{{"version", kVersion},
                             {"mode", config_.mode},
                             {"dry_run", options_.dry_run},
                             {"watched_cgroups", cgroups_.size()},
                             {"pressure_triggers", armedPressureTriggers()},
                             {"domains", domains_.size()}});
  scheduleRefresh();
}

void Daemon::markKmsgClock() {
  // A record of our own, stamped between two CLOCK_MONOTONIC readings, pins the kmsg clock's offset to
  // the write's duration; read back, it sets the estimate onKmsg keeps. Only into a real /dev/kmsg
  // (a character device: never a fixture file), and best effort: without it the offset is learned from
  // the kernel's own records.
  struct stat info {};
  if (::stat(options_.kmsg_path.c_str(), &info) != 0 || !S_ISCHR(info.st_mode)) {
    return;
  }
  const int fd = ::open(options_.kmsg_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  kmsg_mark_ = "oomguard[" + std::to_string(::getpid()) + "]: started, kmsg clock mark";
  const std::string line = "<6>" + kmsg_mark_ + "\n";
  kmsg_mark_before_us_ = monotonic_();
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  kmsg_mark_after_us_ = monotonic_();
  ::close(fd);
  if (!written) {
    kmsg_mark_.clear();
  }
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

void Daemon::protectSelf() {
  std::string status;
  if (config_.self.mlock) {
    // MCL_ONFAULT (Linux 4.4): lock each page as it is first touched instead of faulting in every
    // mapping at once, so the untouched parts of the TLS, HTTP and C++ libraries (and of each thread's
    // stack) cost no locked memory. What the daemon uses stays resident under the pressure it watches.
    // Without MCL_ONFAULT (EINVAL), the whole mappings as before.
    int locked = ::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT);
    if (locked != 0 && errno == EINVAL) {
      locked = ::mlockall(MCL_CURRENT | MCL_FUTURE);
    }
    status += locked == 0 ? "mlockall ok (on fault)" : std::string("mlockall failed (") + std::strerror(errno) + ")";
  } else {
    status += "mlockall off";
  }
  if (config_.self.oom_score_adj) {
    const std::string path = options_.proc_root + "/self/oom_score_adj";
    std::ofstream adj(path);
    adj << *config_.self.oom_score_adj << "\n";
    adj.flush();
    const bool ok = static_cast<bool>(adj);
    status += ", oom_score_adj " + std::to_string(*config_.self.oom_score_adj) +
              (ok ? " set" : " not set (needs CAP_SYS_RESOURCE to lower it)");
  }
  self_status_ = status;
}

void Daemon::printSummary() {
  const auto features = probeKernelFeatures();
  auto controllers = node_.cgroupfs().readControllers("/");
  std::string controller_list;
  if (controllers) {
    for (const auto& name : controllers.value()) {
      controller_list += (controller_list.empty() ? "" : " ") + name;
    }
  }
  const bool memory = controller_list.find("memory") != std::string::npos;
  size_t events_watches = 0;
  for (const auto& [path, watched] : cgroups_) {
    events_watches += watched.events_wd >= 0 ? 1 : 0;
  }
  summary_ << "oomguard " << kVersion << " run: mode " << config_.mode
           << (config_.mode == "observe" ? " (never kills; writes nothing but its own settings, its PSI triggers and one start-up line to the kernel log)" : "")
           << (options_.dry_run ? ", dry-run" : "") << "\n"
           << "  kernel " << facts_.kernel.release << ": PSI "
           << (node_.procfs().readPressure("memory") ? "yes" : "no") << ", pidfd "
           << (features.pidfd_open && features.pidfd_send_signal ? "yes" : "no") << ", process_mrelease "
           << (features.process_mrelease ? "yes" : "no") << ", cgroup.kill "
           << (facts_.kernel.atLeast(5, 14) ? "yes" : "no") << ", memory.oom.group "
           << (memory && facts_.kernel.atLeast(4, 19) ? "yes" : "no") << "\n"
           << "  cgroup v2 at " << options_.cgroup_root << ": "
           << (controllers ? "controllers [" + controller_list + "]" : "not found") << (memory ? "" : ", no memory controller")
           << "\n"
           << "  watching " << cgroups_.size() << " cgroups (" << events_watches << " memory.events, "
           << armedPressureTriggers() << " PSI triggers), " << domains_.size() << " OOM domains\n"
           << "  host PSI trigger: " << host_pressure_status_ << "\n"
           << "  kernel OOM reports: " << kmsg_status_ << "\n"
           << "  kubernetes: " << kubernetes_status_ << "\n"
           << "  self: " << (self_status_.empty() ? "unprotected (protect_self off)" : self_status_) << "\n";
  summary_.flush();
}

void Daemon::armHost() {
  if (host_pressure_) {
    host_pressure_->close();
    host_pressure_.reset();
  }
  if (!config_.host_pressure) {
    host_pressure_status_ = "off";
    return;
  }
  const auto& trigger = *config_.host_pressure;
  const std::string file = options_.proc_root + "/pressure/" + trigger.resource;
  auto watch = PressureWatch::arm(io_, file, trigger, [this](bool gone, const std::string& text) {
    onPressure("/", gone, text);
  });
  if (watch) {
    host_pressure_ = std::move(watch).value();
    host_pressure_status_ = host_pressure_->adjustment().empty()
                                ? "\"" + trigger.triggerText() + "\" on " + file
                                : host_pressure_->adjustment() + " on " + file;
  } else {
    host_pressure_status_ = "not armed: " + watch.error().describe();
  }
}

void Daemon::addCgroup(const std::string& path) {
  if (stopped_ || cgroups_.contains(path)) {
    return;
  }
  auto& watched = cgroups_[path];
  watched.added_us = monotonic_();
  watched.preexisting = stats_.refreshes == 0;
  const std::string directory = node_.cgroupfs().directoryOf(path);
  if (inotify_) {
    if (auto wd = inotify_->add(directory, kDirectoryMask)) {
      watched.directory_wd = wd.value();
      watches_[wd.value()] = {path, WatchKind::kDirectory};
    } else if (!wd.error().vanished()) {
      ++stats_.read_errors;
      log_.write("read_error", Json{{"what", "watch cgroup"}, {"error", wd.error().describe()}});
    }
  }
  readLimit(path, watched);
  applyRule(path, watched);
  ++stats_.cgroups_added;
  if (stats_.refreshes > 0) {
    log_.write("cgroup_added", Json{{"cgroup", path}, {"limited", watched.limited}});
  }
  // Children created before our directory watch existed.
  if (auto children = node_.cgroupfs().listChildren(path)) {
    for (const auto& child : children.value()) {
      addCgroup(child);
    }
  }
}

bool Daemon::readLimit(const std::string& path, WatchedCgroup& watched) {
  const bool was_limited = watched.limited;
  watched.limited = false;
  watched.memory_max_bytes.reset();
  watched.swap_max_bytes.reset();
  if (path == "/") {
    return was_limited;
  }
  if (auto max = node_.cgroupfs().readText(path, "memory.max")) {
    if (auto limit = cgroupfs::parseLimit(max.value()); limit.ok() && limit.value()) {
      watched.limited = true;
      watched.memory_max_bytes = limit.value();
      if (auto swap = node_.cgroupfs().readText(path, "memory.swap.max")) {
        if (auto swap_limit = cgroupfs::parseLimit(swap.value())) {
          watched.swap_max_bytes = swap_limit.value();
        }
      }
    }
  }
  return was_limited != watched.limited;
}

void Daemon::limitChanged(const std::string& path) {
  auto found = cgroups_.find(path);
  if (found != cgroups_.end() && readLimit(path, found->second)) {
    applyRule(path, found->second);
    if (!found->second.limited) {
      domains_.erase(path);
    }
  }
}

bool Daemon::armablePressure(const std::string& path, const WatchedCgroup& watched) {
  constexpr uint64_t kPressureArmAgeUs = 2'000'000;
  if (!watched.preexisting && monotonic_() - watched.added_us < kPressureArmAgeUs) {
    return false;
  }
  auto events = node_.cgroupfs().readText(path, "cgroup.events");
  if (!events) {
    return false;
  }
  auto keyed = cgroupfs::parseFlatKeyed(events.value());
  if (!keyed) {
    return false;
  }
  const auto& pairs = keyed.value();
  return std::any_of(pairs.begin(), pairs.end(), [](const auto& pair) { return pair.first == "populated" && pair.second == 1; });
}

void Daemon::applyRule(const std::string& path, WatchedCgroup& watched) {
  const CgroupRule* rule = ruleFor(config_, path);
  const std::string directory = node_.cgroupfs().directoryOf(path);
  // memory.events (hierarchical) and memory.events.local.
  const bool want_events = rule != nullptr && rule->watch_events && path != "/";
  auto set_events_watch = [&](int& wd, const char* file, WatchKind kind, cgroupfs::MemoryEvents& last) {
    if (want_events && wd < 0 && inotify_ && node_.cgroupfs().hasFile(path, file)) {
      if (auto added = inotify_->add(directory + "/" + file, IN_MODIFY)) {
        wd = added.value();
        watches_[wd] = {path, kind};
        if (auto events = node_.cgroupfs().readMemoryEvents(path, kind == WatchKind::kEventsLocal)) {
          last = events.value();
        }
      }
    } else if (!want_events && wd >= 0) {
      inotify_->remove(wd);
      watches_.erase(wd);
      wd = -1;
    }
  };
  set_events_watch(watched.events_wd, "memory.events", WatchKind::kEvents, watched.events);
  set_events_watch(watched.events_local_wd, "memory.events.local", WatchKind::kEventsLocal, watched.events_local);

  // The PSI trigger.
  std::optional<PressureTrigger> trigger;
  if (rule != nullptr && rule->pressure && (!rule->pressure_only_if_limited || watched.limited) && path != "/") {
    trigger = rule->pressure;
  }
  const bool same = watched.pressure && trigger && watched.pressure->requested().triggerText() == trigger->triggerText() &&
                    watched.pressure->requested().resource == trigger->resource;
  if (same) {
    return;
  }
  if (watched.pressure) {
    watched.pressure->close();
    watched.pressure.reset();
  }
  watched.pressure_pending = false;
  if (trigger && !armablePressure(path, watched)) {
    watched.pressure_pending = true;
    return;
  }
  if (trigger) {
    const std::string file = directory + "/" + trigger->resource + ".pressure";
    auto watch = PressureWatch::arm(io_, file, *trigger, [this, path](bool gone, const std::string& text) {
      onPressure(path, gone, text);
    });
    if (watch) {
      watched.pressure = std::move(watch).value();
      if (!watched.pressure->adjustment().empty()) {
        log_.write("pressure_trigger_adjusted", Json{{"cgroup", path}, {"reason", watched.pressure->adjustment()}});
      }
    } else if (!watch.error().vanished()) {
      ++stats_.read_errors;
      log_.write("read_error", Json{{"what", "PSI trigger"}, {"cgroup", path}, {"error", watch.error().describe()}});
    }
  }
}

std::vector<std::string> Daemon::subtreeOf(const std::string& path) const {
  // The cgroup itself, then everything in the key range [path + "/", path + "0"): exactly its
  // descendants, since '0' follows '/'. (Stopping at the first non-descendant after lower_bound(path)
  // would be wrong: "/a-x" sorts between "/a" and "/a/b".)
  std::vector<std::string> paths;
  if (cgroups_.contains(path)) {
    paths.push_back(path);
  }
  const std::string prefix = path == "/" ? "/" : path + "/";
  const std::string end = prefix.substr(0, prefix.size() - 1) + "0";
  for (auto it = cgroups_.lower_bound(prefix); it != cgroups_.end() && it->first < end; ++it) {
    if (it->first != path) {
      paths.push_back(it->first);
    }
  }
  return paths;
}

void Daemon::removeCgroup(const std::string& path) {
  const std::vector<std::string> gone = subtreeOf(path);
  for (const auto& cgroup : gone) {
    auto& watched = cgroups_[cgroup];
    if (watched.pressure) {
      watched.pressure->close();
    }
    for (const int wd : {watched.directory_wd, watched.events_wd, watched.events_local_wd}) {
      if (wd >= 0) {
        if (inotify_) {
          inotify_->remove(wd);  // already gone with the directory: harmless EINVAL
        }
        watches_.erase(wd);
      }
    }
    cgroups_.erase(cgroup);
    if (domains_.erase(cgroup) > 0) {
      metrics_.forgetDomain(cgroup);
    }
    metrics_.forgetCgroup(cgroup);
    ++stats_.cgroups_removed;
    log_.write("cgroup_removed", Json{{"cgroup", cgroup}});
  }
}

void Daemon::onInotify(int wd, uint32_t mask, const std::string& name) {
  event_arrived_us_ = monotonic_();
  if ((mask & IN_Q_OVERFLOW) != 0) {
    log_.write("inotify_overflow", Json::object());
    resync();
    return;
  }
  const auto found = watches_.find(wd);
  if (found == watches_.end()) {
    return;
  }
  const auto [path, kind] = found->second;
  if ((mask & IN_IGNORED) != 0) {
    watches_.erase(wd);
    return;
  }
  if (kind == WatchKind::kDirectory && (mask & IN_ISDIR) != 0) {
    if ((mask & (IN_CREATE | IN_MOVED_TO)) != 0) {
      addCgroup(childOf(path, name));
    } else if ((mask & (IN_DELETE | IN_MOVED_FROM)) != 0) {
      removeCgroup(childOf(path, name));
    }
    return;
  }
  if ((mask & IN_MODIFY) != 0 && kind != WatchKind::kDirectory) {
    onMemoryEvents(path, kind == WatchKind::kEventsLocal);
  }
}

void Daemon::onMemoryEvents(const std::string& path, bool local) {
  auto found = cgroups_.find(path);
  if (found == cgroups_.end()) {
    return;
  }
  auto events = node_.cgroupfs().readMemoryEvents(path, local);
  if (!events) {
    if (!events.error().vanished()) {
      ++stats_.read_errors;
    }
    return;
  }
  auto& last = local ? found->second.events_local : found->second.events;
  const auto& now = events.value();
  limitChanged(path);
  const std::pair<const char*, std::pair<uint64_t, uint64_t>> keys[] = {
      {"low", {last.low, now.low}},       {"high", {last.high, now.high}},         {"max", {last.max, now.max}},
      {"oom", {last.oom, now.oom}},       {"oom_kill", {last.oom_kill, now.oom_kill}},
      {"oom_group_kill", {last.oom_group_kill, now.oom_group_kill}}};
  Json rose = Json::object();
  bool pressure_sign = false;  // high/max: reclaim is failing to keep up; worth a fresh decision
  for (const auto& [key, values] : keys) {
    if (values.second > values.first) {
      rose[key] = values.second - values.first;
      if (!local) {
        metrics_.countMemoryEvent(path, key, values.second - values.first);
      }
      pressure_sign = pressure_sign || std::string_view(key) == "high" || std::string_view(key) == "max";
    }
  }
  last = now;
  if (rose.empty()) {
    return;
  }
  if (!local && rose.contains("oom_kill")) {
    // The kernel has a victim in progress somewhere in this subtree (its kmsg report names it later).
    gate_.recordKernelKill(path, 0, monotonic_());
  }
  ++stats_.memory_events;
  log_.write("memory_event",
             Json{{"cgroup", path}, {"file", local ? "memory.events.local" : "memory.events"}, {"rose", rose},
                  {"counters", eventsJson(now)}});
  // Only the hierarchical file drives decisions, so one event is not decided twice; oom and oom_kill
  // mean the kernel has already acted, and the prediction made before it must stand for the check.
  if (!local && pressure_sign && !rose.contains("oom") && !rose.contains("oom_kill")) {
    policies::DomainObservation observation;
    observation.events_high = rose.value("high", uint64_t{0});
    observation.events_max = rose.value("max", uint64_t{0});
    decide(path, Json{{"kind", "memory_event"}, {"cgroup", path}, {"rose", rose}}, observation);
  }
}

void Daemon::onPressure(const std::string& cgroup, bool gone, const std::string& text) {
  event_arrived_us_ = monotonic_();
  if (gone) {
    if (cgroup != "/") {
      auto found = cgroups_.find(cgroup);
      if (found != cgroups_.end()) {
        found->second.pressure.reset();
      }
    }
    log_.write("pressure_trigger_gone", Json{{"cgroup", cgroup}});
    return;
  }
  ++stats_.pressure_events;
  if (cgroup != "/") {
    limitChanged(cgroup);
  }
  Json trigger{{"kind", "pressure"}, {"cgroup", cgroup}};
  const auto* watch = cgroup == "/" ? host_pressure_.get()
                                    : (cgroups_.contains(cgroup) ? cgroups_.at(cgroup).pressure.get() : nullptr);
  if (watch != nullptr) {
    trigger["resource"] = watch->trigger().resource;
    trigger["trigger"] = watch->trigger().triggerText();
  }
  policies::DomainObservation observation;
  if (auto pressure = cgroupfs::parsePressure(text)) {
    if (watch != nullptr && watch->trigger().resource == "memory") {
      metrics_.setPressure(cgroup, pressure.value());
      observation.some_avg10 = pressure.value().some.avg10 / 100.0;
      if (pressure.value().full) {
        observation.full_avg10 = pressure.value().full->avg10 / 100.0;
      }
    }
    trigger["some_avg10"] = pressure.value().some.avg10 / 100.0;
    if (pressure.value().full) {
      trigger["full_avg10"] = pressure.value().full->avg10 / 100.0;
    }
  }
  decide(cgroup, std::move(trigger), observation);
}

std::string Daemon::domainFor(const std::string& cgroup) const {
  for (std::string path = cgroup; !path.empty() && path != "/"; path = cgroupfs::parentCgroup(path)) {
    const auto found = cgroups_.find(path);
    if (found != cgroups_.end() && found->second.limited) {
      return path;
    }
  }
  return "/";
}

std::vector<Daemon::Candidate> Daemon::rerankHostTop(const DomainState& state) {
  // The host decision re-reads the candidates the background ranking found on top, and every process
  // that appeared since that ranking (the typical fast leaker started after it): a /proc listing and
  // a few reads, never a whole-host scan on the reaction path.
  std::vector<cgroupfs::ProcessSnapshot> processes;
  const size_t count = std::min(config_.rescan_candidates, state.top.size());
  cgroupfs::ReadCounters counters;
  std::vector<pid_t> pids;
  for (size_t i = 0; i < count; ++i) {
    pids.push_back(state.top[i].pid);
  }
  std::vector<pid_t> newcomers;
  if (auto listed = node_.procfs().listPids()) {
    for (const pid_t pid : listed.value()) {
      if (!std::binary_search(refreshed_pids_.begin(), refreshed_pids_.end(), pid)) {
        newcomers.push_back(pid);
      }
    }
  }
  // Bounded, so that a fork storm cannot stall the reaction: the highest pids (the newest, but for a
  // wrap of pid_max) first.
  constexpr size_t kMaxNewcomers = 2000;
  const size_t skip = newcomers.size() > kMaxNewcomers ? newcomers.size() - kMaxNewcomers : 0;
  pids.insert(pids.end(), newcomers.begin() + static_cast<std::ptrdiff_t>(skip), newcomers.end());
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  processes = node_.procfs().readProcesses(pids, false, counters);
  node_.overlayIntendedAdj(processes);
  stats_.read_errors += counters.malformed + counters.failed;
  const auto ranked = policies::rankDomain(
      {processes, state.domain.totalpages, facts_.host_totalpages, facts_.kernel, facts_.page_size_bytes});
  std::vector<Candidate> top;
  for (const auto& candidate : ranked) {
    if (!candidate.killable) {
      break;
    }
    const auto& process = processes[candidate.scan_index];
    const auto previous = std::find_if(state.top.begin(), state.top.end(),
                                       [&](const Candidate& c) { return c.pid == process.pid; });
    std::string cgroup = previous != state.top.end() ? previous->cgroup : "";
    if (previous == state.top.end() && top.size() < config_.rescan_candidates) {
      // A newcomer near the top: where it is matters for protections and logs.
      if (auto path = node_.procfs().readCgroupPath(process.pid)) {
        cgroup = std::move(path).value();
      }
    }
    top.push_back(candidateOf(process, candidate, std::move(cgroup)));
    if (top.size() >= std::max({config_.rescan_candidates, config_.log_candidates, config_.metrics_top_k})) {
      break;
    }
  }
  return top;
}

namespace {

// Clock ticks since boot now, on the clock /proc/<pid>/stat's starttime uses (boot time, suspend
// included): a kernel timestamp to compare with another, not the daemon's scheduling clock.
uint64_t bootTicksNow() {
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  return static_cast<uint64_t>(now.tv_sec) * static_cast<uint64_t>(ticks_per_second) +
         static_cast<uint64_t>(now.tv_nsec) * static_cast<uint64_t>(ticks_per_second) / 1'000'000'000U;
}

}  // namespace

void Daemon::decide(const std::string& cgroup, Json trigger, policies::DomainObservation observation, bool may_act) {
  ++stats_.decisions;
  // The candidates below are read now: a victim that started later is not the one chosen.
  snapshot_boot_ticks_ = bootTicksNow();
  const std::string domain_path = domainFor(cgroup);
  auto found = domains_.find(domain_path);
  std::vector<Candidate> top;
  Json domain_json;
  if (domain_path == "/") {
    if (found == domains_.end()) {
      return;
    }
    top = rerankHostTop(found->second);
  } else {
    auto ranking = node_.rankMemcg(facts_, domain_path);
    if (!ranking) {
      if (!ranking.error().vanished()) {
        ++stats_.read_errors;
      }
      log_.write("decision", Json{{"trigger", trigger}, {"domain", Json{{"kind", "memcg"}, {"cgroup", domain_path}}},
                                 {"action", "none"}, {"result", "no_data"}, {"error", ranking.error().describe()}});
      return;
    }
    auto& state = domains_[domain_path];
    state.domain = ranking.value().domain;
    for (const auto& candidate : ranking.value().candidates) {
      if (!candidate.killable) {
        break;
      }
      const auto& process = ranking.value().processOf(candidate);
      top.push_back(candidateOf(process, candidate, process.cgroup.value_or("")));
    }
    found = domains_.find(domain_path);
  }
  auto& state = found->second;
  const uint64_t decided_us = monotonic_();
  const uint64_t reaction_us = decided_us >= event_arrived_us_ ? decided_us - event_arrived_us_ : 0;
  metrics_.observeReaction(static_cast<double>(reaction_us) / 1e6);
  record(state, top, decided_us, true);
  const auto& domain = state.domain;
  domain_json = Json{{"kind", policies::toString(domain.kind)}, {"cgroup", domain.cgroup}, {"totalpages", domain.totalpages}};
  Json victim = top.empty() ? Json(nullptr) : candidatesJson({top.front()}).front();
  Json outcome{{"action", "none"}, {"result", top.empty() ? "no_candidate" : "observed"}};
  if (const ActRule* rule = actRuleFor(domain_path); may_act && rule != nullptr && config_.mode == "act") {
    outcome = act(domain_path, state, *rule, observation, decided_us);
  }
  Json line{{"trigger", std::move(trigger)},
            {"domain", std::move(domain_json)},
            {"candidates", candidatesJson(top)},
            {"victim", std::move(victim)},
            {"mode", config_.mode},
            {"dry_run", options_.dry_run},
            {"reaction_us", reaction_us}};
  for (const auto& [key, value] : outcome.items()) {
    line[key] = value;
  }
  // One OOM, one victim: while one is in progress here, it (not a second task) is what comes next.
  if (const auto waiting = gate_.blocking(domain_path, decided_us)) {
    line["waiting_on_victim"] = Json{{"pid", waiting->pid == 0 ? Json(nullptr) : Json(waiting->pid)},
                                     {"cgroup", waiting->cgroup},
                                     {"killed_by", waiting->by_kernel ? "kernel" : "oomguard"},
                                     {"ms_ago", (decided_us - std::min(decided_us, waiting->since_us)) / 1000}};
  }
  const bool panicking = outcome.value("action", "") == "panic";
  log_.write("decision", line);
  if (panicking) {
    // The decision is on stdout (flushed) before the kernel goes down.
    const auto result = actuator_.panic();
    log_.write("panic_failed", Json{{"detail", result.detail}});
  }
}

const ActRule* Daemon::actRuleFor(const std::string& domain) const {
  if (domain == "/") {
    return config_.host_act ? &*config_.host_act : nullptr;
  }
  const CgroupRule* rule = ruleFor(config_, domain);
  return rule != nullptr && rule->act ? &*rule->act : nullptr;
}

namespace {

// A short, bounded name for what crossed a threshold (a metric label).
std::string reasonKind(const std::string& reason) {
  if (reason.starts_with("memory.events max")) {
    return "memory_max";
  }
  if (reason.starts_with("memory.events high")) {
    return "memory_high";
  }
  if (reason.starts_with("headroom")) {
    return "headroom";
  }
  if (reason.starts_with("MemAvailable")) {
    return "mem_available";
  }
  if (reason.starts_with("SwapFree")) {
    return "swap_free";
  }
  if (reason.starts_with("PSI")) {
    return "pressure";
  }
  return "other";
}

}  // namespace

bool Daemon::readOomGroup(const std::string& cgroup) {
  auto text = node_.cgroupfs().readText(cgroup, "memory.oom.group");
  return text && text.value().starts_with('1');
}

void Daemon::observe(const std::string& domain_path, const ActRule& rule, policies::DomainObservation& observation) {
  // What the thresholds look at, read now.
  if (domain_path == "/") {
    observation.mem_total_kb = facts_.meminfo.mem_total_kb;
    if (auto meminfo = node_.procfs().readMemInfo()) {
      observation.mem_available_kb = meminfo.value().mem_available_kb;
      observation.swap_free_kb = meminfo.value().swap_free_kb;
      observation.swap_total_kb = meminfo.value().swap_total_kb;
    }
  } else {
    if (const auto watched = cgroups_.find(domain_path); watched != cgroups_.end()) {
      observation.memory_max_bytes = watched->second.memory_max_bytes;
    }
    if (auto current = node_.cgroupfs().readText(domain_path, "memory.current")) {
      if (auto bytes = cgroupfs::parseInteger(current.value()); bytes && bytes.value() >= 0) {
        observation.memory_current_bytes = static_cast<uint64_t>(bytes.value());
      }
    }
  }
  if (rule.when.pressure_avg10 && !observation.some_avg10) {
    auto pressure = domain_path == "/" ? node_.procfs().readPressure("memory")
                                       : node_.cgroupfs().readPressure(domain_path, "memory");
    if (pressure) {
      observation.some_avg10 = pressure.value().some.avg10 / 100.0;
      if (pressure.value().full) {
        observation.full_avg10 = pressure.value().full->avg10 / 100.0;
      }
    }
  }
}

void Daemon::checkLevels(uint64_t now_us, bool all) {
  // Level thresholds (headroom, MemAvailable, SwapFree, held PSI) are read at the rate the physics
  // demands (policies/level_watch.hpp): each acting domain's next reading is due when its room to the
  // threshold could be gone at the fastest plausible fill rate, between 5 ms and the refresh interval.
  // A reading is one small file (memory.current, or /proc/meminfo for the host); a decision follows
  // only when the threshold is crossed. `all`: read every domain now (the refresh).
  if (config_.mode != "act") {
    return;
  }
  constexpr uint64_t kMinDelayUs = 5'000;
  constexpr uint64_t kAfterCrossingUs = 100'000;  // re-read a crossed domain after this (no log flood)
  const auto max_delay_us = static_cast<uint64_t>(config_.refresh_interval_s * 1e6);
  const double assumed_rate = config_.assumed_fill_rate_mib_s * 1024.0 * 1024.0;
  std::vector<std::pair<std::string, policies::DomainObservation>> crossed;
  std::set<std::string> acting;
  for (const auto& [path, state] : domains_) {
    const ActRule* rule = actRuleFor(path);
    if (rule == nullptr || rule->action == policies::Action::kObserve) {
      continue;
    }
    const auto& when = rule->when;
    if (!when.headroom_below && !when.mem_available_below && !when.swap_free_below && !when.pressure_avg10) {
      continue;
    }
    acting.insert(path);
    auto& level = levels_[path];
    if (!all && level.due_us > now_us) {
      continue;
    }
    ++stats_.level_reads;
    policies::DomainObservation observation;
    observe(path, *rule, observation);
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
    level.due_us = now_us + policies::nextLevelCheckUs(room, level.rate.bytesPerSecond(), assumed_rate, kMinDelayUs,
                                                       max_delay_us);
  }
  std::erase_if(levels_, [&](const auto& entry) { return !acting.contains(entry.first); });
  for (auto& [path, observation] : crossed) {
    event_arrived_us_ = monotonic_();
    decide(path, Json{{"kind", "threshold"}, {"cgroup", path}}, observation);
  }
  scheduleLevels();
}

void Daemon::scheduleLevels() {
  if (stopped_ || levels_.empty()) {
    return;
  }
  uint64_t due = UINT64_MAX;
  for (const auto& [path, level] : levels_) {
    due = std::min(due, level.due_us);
  }
  const uint64_t now = monotonic_();
  level_timer_.expires_after(std::chrono::microseconds(due > now ? due - now : 0));
  level_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) {
      return;
    }
    checkLevels(monotonic_(), false);
  });
}

std::vector<policies::VictimCandidate> Daemon::guardianCandidates(const DomainState& state, bool with_growers,
                                                                 bool resolve_groups) {
  const policies::OomDomain& domain = state.domain;
  std::vector<policies::VictimCandidate> candidates;
  auto add = [&](const Candidate& candidate) {
    policies::VictimCandidate c;
    c.pid = candidate.pid;
    c.comm = candidate.comm;
    c.cgroup = candidate.cgroup;
    c.points = candidate.points;
    c.oom_score_adj = candidate.oom_score_adj;
    c.never_kill = never_kill_.contains(candidate.pid);
    if (const CgroupRule* cgroup_rule = candidate.cgroup.empty() ? nullptr : ruleFor(config_, candidate.cgroup)) {
      c.preference = cgroup_rule->preference;
    }
    // A pod's annotations, where the operator's rule says nothing.
    if (workloads_ && config_.kubernetes.annotations && candidate.cgroup.find("kubepods") != std::string::npos) {
      const auto resolved = workloads_->resolve(candidate.cgroup);
      if (c.preference == policies::Preference::kNone) {
        c.preference = Workloads::preference(resolved);
      }
      c.protection = Workloads::protection(resolved);
    }
    c.growth_pages = growth_.growth(candidate.pid);
    if (resolve_groups && !candidate.cgroup.empty()) {
      c.group_kill_cgroup = policies::oomGroupCgroup(candidate.cgroup, domain,
                                                     [this](std::string_view cgroup) { return readOomGroup(std::string(cgroup)); });
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

Json Daemon::act(const std::string& domain_path, DomainState& state, const ActRule& rule,
                 policies::DomainObservation observation, uint64_t now_us) {
  Json outcome{{"policy", policies::toString(rule.action)}};
  observe(domain_path, rule, observation);
  const auto crossed = policies::thresholdCrossed(rule.when, observation, threshold_states_[domain_path], now_us);
  if (!crossed) {
    outcome["action"] = "none";
    outcome["result"] = "below_threshold";
    return outcome;
  }
  outcome["reason"] = *crossed;
  releaseVictims(now_us);
  if (auto refusal = gate_.refusal(domain_path, now_us)) {
    ++stats_.kills_held;
    outcome["action"] = "none";
    outcome["result"] = "held";
    outcome["held_by"] = *refusal;
    return outcome;
  }
  if (rule.action == policies::Action::kPanic) {
    outcome["action"] = "panic";
    outcome["result"] = options_.dry_run ? "dry_run" : "panicking";
    return outcome;
  }
  // The candidates in the guardian's view: the kernel's ranking plus the operator's protections.
  const auto candidates =
      guardianCandidates(state, rule.action == policies::Action::kKillAllocating, /*resolve_groups=*/true);
  const auto choice = policies::chooseVictim(rule.action, candidates);
  if (!choice.victim) {
    outcome["action"] = "none";
    outcome["result"] = "no_victim";
    outcome["why"] = choice.reason;
    return outcome;
  }
  outcome["chosen_because"] = choice.reason;
  auto kill = killVictim(domain_path, *choice.victim, rule, reasonKind(*crossed), now_us);
  for (const auto& [key, value] : kill.items()) {
    outcome[key] = value;
  }
  return outcome;
}

Json Daemon::killVictim(const std::string& domain_path, const policies::VictimCandidate& victim, const ActRule& rule,
                        const std::string& reason_kind, uint64_t now_us) {
  Json outcome{{"target", Json{{"pid", victim.pid}, {"comm", victim.comm}, {"cgroup", victim.cgroup},
                               {"points", victim.points}}}};
  const std::string policy = policies::toString(rule.action);
  // What every kill does once the actuator has answered.
  // The pod the victim belongs to, when the API server has told.
  const Workloads::Resolved resolved =
      workloads_ && !victim.cgroup.empty() ? workloads_->resolve(victim.cgroup) : Workloads::Resolved{};
  if (resolved.pod != nullptr) {
    outcome["target"]["namespace"] = resolved.labels.namespace_name;
    outcome["target"]["pod"] = resolved.labels.pod;
    outcome["target"]["container"] = resolved.labels.container;
  }
  auto finish = [&](const ActionResult& result, Cooling cooling) {
    outcome["result"] = result.ok ? (options_.dry_run ? "dry_run" : "killed") : "failed";
    outcome["detail"] = result.detail;
    if (result.ok && !options_.dry_run && resolved.pod != nullptr) {
      // After the kill, never before it: the Event is queued and sent later on the loop.
      std::string message = "oomguard killed ";
      message += victim.group_kill_cgroup ? "cgroup " + *victim.group_kill_cgroup + " (memory.oom.group)"
                                          : "pid " + std::to_string(victim.pid) + " (" + victim.comm + ")";
      if (!resolved.labels.container.empty()) {
        message += " in container " + resolved.labels.container;
      }
      message += ": OOM domain " + (domain_path == "/" ? std::string("host") : domain_path) + ", " +
                 std::to_string(victim.points) + " points, policy " + policy + ", trigger " + reason_kind;
      reportPodEvent(*resolved.pod, "OomguardKilled", message);
    }
    metrics_.countKill(policy, reason_kind, result.ok ? "success" : "failed");
    if (result.ok) {
      ++stats_.kills;
      // One OOM, one victim: the domains that hold it wait until its memory is back.
      if (cooling.victim) {
        gate_.recordKill(victim.cgroup.empty() ? domain_path : victim.cgroup, cooling.victim->pid(), now_us);
        victim_pins_[cooling.victim->pid()] = std::move(cooling.victim);
      } else {
        gate_.recordKill(cooling.killed_cgroup, 0, now_us);
        killed_cgroups_.insert(cooling.killed_cgroup);
      }
    }
    return outcome;
  };
  if (victim.group_kill_cgroup) {
    // memory.oom.group: the kernel would take the whole cgroup, and so does oomguard.
    outcome["action"] = "kill_cgroup";
    outcome["cgroup"] = *victim.group_kill_cgroup;
    return finish(actuator_.killCgroup(*victim.group_kill_cgroup), Cooling{nullptr, *victim.group_kill_cgroup});
  }
  outcome["action"] = "kill";
  auto pinned = actuator_.pin(victim.pid);
  if (!pinned) {
    outcome["result"] = "gone";
    outcome["detail"] = pinned.error().describe();
    metrics_.countKill(policy, reason_kind, "gone");
    return outcome;
  }
  // Now that the pid is pinned, what /proc and the tree show belong to the pinned process: check it is
  // the one chosen. Membership is checked in the tree (cgroup.procs), where it was found: paths in
  // /proc/<pid>/cgroup are relative to the reader's cgroup namespace.
  auto now = node_.procfs().readProcess(victim.pid, false);
  bool member = victim.cgroup.empty();
  if (!member) {
    if (auto procs = node_.cgroupfs().readText(victim.cgroup, "cgroup.procs")) {
      if (auto pids = cgroupfs::parsePidList(procs.value())) {
        member = std::find(pids.value().begin(), pids.value().end(), victim.pid) != pids.value().end();
      }
    }
  }
  // And it started before the candidates were read: a process that started later holds a recycled pid
  // (same comm and cgroup are no proof: a pool respawning its workers).
  const auto started = node_.procfs().readStartTimeTicks(victim.pid);
  const bool older = started && started.value() <= snapshot_boot_ticks_;
  const bool same = now && !pinned.value()->exited() && now.value().status.comm == victim.comm && member && older;
  if (!same) {
    ++stats_.kills_no_data;
    outcome["result"] = "changed";
    outcome["detail"] = !now           ? now.error().describe()
                        : !started     ? started.error().describe()
                        : !older       ? "pid " + std::to_string(victim.pid) +
                                       " started after the candidates were read: a new process under a recycled pid"
                                       : "pid " + std::to_string(victim.pid) + " is no longer the chosen process";
    metrics_.countKill(policy, reason_kind, "gone");
    return outcome;
  }
  uint32_t grace_ms = rule.sigterm_grace_ms;
  if (const auto pod_grace = Workloads::sigtermGraceSeconds(resolved); pod_grace && config_.kubernetes.annotations) {
    grace_ms = *pod_grace * 1000;
    outcome["sigterm_grace_ms"] = grace_ms;
  }
  return finish(actuator_.kill(pinned.value(), grace_ms), Cooling{pinned.value(), {}});
}

void Daemon::checkSysctls(bool at_start) {
  for (const auto& [name, wanted] : config_.sysctls) {
    std::string relative = name;
    std::replace(relative.begin(), relative.end(), '.', '/');
    auto current = node_.procfs().readSysctl(relative);
    if (!current) {
      log_.write("sysctl", Json{{"name", name}, {"result", "unreadable"}, {"error", current.error().describe()}});
      continue;
    }
    const bool drifted = current.value() != wanted;
    const bool may_write = config_.mode == "act" && (at_start || config_.enforce_sysctls);
    if (drifted && may_write) {
      const auto result = actuator_.writeSysctl(name, wanted);
      log_.write("sysctl", Json{{"name", name}, {"from", current.value()}, {"to", wanted},
                                {"result", result.ok ? (at_start ? "applied" : "enforced") : "failed"},
                                {"detail", result.detail}});
      if (result.ok && !options_.dry_run) {
        metrics_.setSysctlDrift(name, false);
        sysctl_drift_[name] = false;
        continue;
      }
    }
    metrics_.setSysctlDrift(name, drifted);
    const auto previous = sysctl_drift_.find(name);
    if (previous == sysctl_drift_.end() || previous->second != drifted) {
      if (drifted) {
        log_.write("sysctl_drift", Json{{"name", name}, {"wanted", wanted}, {"current", current.value()},
                                        {"enforce", config_.enforce_sysctls}});
      } else if (previous != sysctl_drift_.end()) {
        log_.write("sysctl_drift_cleared", Json{{"name", name}, {"value", current.value()}});
      }
      sysctl_drift_[name] = drifted;
    }
  }
}

void Daemon::releaseVictims(uint64_t now_us) {
  // A victim is released once it is gone (its pidfd polls readable: it has exited, its address space
  // torn down); a cgroup kill once the cgroup is empty. Past the wait the gate forgets it anyway.
  for (auto it = victim_pins_.begin(); it != victim_pins_.end();) {
    if (it->second->exited()) {
      gate_.release(it->first);
      log_.write("victim_released", Json{{"pid", it->first}, {"reason", "gone"}});
      it = victim_pins_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = killed_cgroups_.begin(); it != killed_cgroups_.end();) {
    auto procs = node_.cgroupfs().readText(*it, "cgroup.procs");
    if (!procs || procs.value().empty()) {
      gate_.releaseCgroup(*it);
      log_.write("victim_released", Json{{"cgroup", *it}, {"reason", "empty"}});
      it = killed_cgroups_.erase(it);
    } else {
      ++it;
    }
  }
  gate_.expire(now_us);
  // Pins and cgroups the gate no longer waits on (their wait ran out) are dropped too.
  const auto& waiting = gate_.inProgress();
  std::erase_if(victim_pins_, [&](const auto& pin) {
    return std::none_of(waiting.begin(), waiting.end(), [&](const auto& v) { return v.pid == pin.first; });
  });
  std::erase_if(killed_cgroups_, [&](const std::string& cgroup) {
    return std::none_of(waiting.begin(), waiting.end(), [&](const auto& v) { return v.pid == 0 && v.cgroup == cgroup; });
  });
}

void Daemon::applyProtections(const std::unordered_map<pid_t, size_t>& by_pid,
                              const std::vector<cgroupfs::ProcessSnapshot>& processes) {
  if (config_.mode != "act") {
    return;  // observe: never writes
  }
  std::erase_if(intended_adj_, [&](const auto& entry) { return !by_pid.contains(entry.first); });
  // The operator's config rule wins over a pod's annotations for the same setting.
  const bool pods_known = workloads_ && workloads_->podCount() > 0 && config_.kubernetes.annotations;
  for (const auto& [path, watched] : cgroups_) {
    const CgroupRule* rule = ruleFor(config_, path);
    bool has_group = rule != nullptr && rule->oom_group.has_value();
    bool wanted_group = has_group && rule->oom_group.value();
    // (an int and a flag, not an optional: GCC 12 warns maybe-uninitialized through the JSON below)
    bool has_adj = rule != nullptr && rule->oom_score_adj.has_value();
    int wanted_adj = has_adj ? rule->oom_score_adj.value() : 0;
    const char* group_source = "config";
    const char* adj_source = "config";
    if (pods_known && (!has_group || !has_adj) && path.find("kubepods") != std::string::npos) {
      const auto resolved = workloads_->resolve(path);
      if (const auto group = Workloads::oomGroup(resolved); !has_group && group) {
        has_group = true;
        wanted_group = *group;
        group_source = "annotation";
      }
      if (const auto adj = workloads_->oomScoreAdj(resolved); !has_adj && adj) {
        has_adj = true;
        wanted_adj = *adj;
        adj_source = "annotation";
      }
    }
    if (has_group && path != "/" && readOomGroup(path) != wanted_group) {
      const auto result = actuator_.setOomGroup(path, wanted_group);
      ++stats_.protections_applied;
      log_.write("protection", Json{{"cgroup", path}, {"memory.oom.group", wanted_group}, {"source", group_source},
                                    {"ok", result.ok}, {"detail", result.detail}});
    }
    if (!has_adj) {
      continue;
    }
    auto text = node_.cgroupfs().readText(path, "cgroup.procs");
    if (!text) {
      continue;
    }
    auto pids = cgroupfs::parsePidList(text.value());
    if (!pids) {
      continue;
    }
    for (const pid_t pid : pids.value()) {
      const auto found = by_pid.find(pid);
      if (found == by_pid.end() || never_kill_.contains(pid) || processes[found->second].oom_score_adj == wanted_adj) {
        continue;
      }
      const auto result = actuator_.setOomScoreAdj(pid, wanted_adj);
      if (options_.dry_run && result.ok) {
        intended_adj_[pid] = wanted_adj;  // what act mode's model would read back from /proc
      }
      ++stats_.protections_applied;
      log_.write("protection", Json{{"cgroup", path}, {"pid", pid}, {"oom_score_adj", wanted_adj},
                                    {"source", adj_source}, {"ok", result.ok}, {"detail", result.detail}});
    }
  }
}

Daemon::Candidate Daemon::candidateOf(const cgroupfs::ProcessSnapshot& process, const policies::Candidate& ranked,
                                      std::string cgroup) {
  return Candidate{process.pid, process.status.comm, std::move(cgroup), ranked.points, process.oom_score_adj,
                   ranked.oom_score, std::nullopt};
}

void Daemon::record(DomainState& state, std::vector<Candidate> top, uint64_t at_us, bool log_change) {
  const std::optional<Candidate> victim = top.empty() ? std::nullopt : std::optional<Candidate>(top.front());
  const bool changed = state.history.empty() || state.history.back().victim.has_value() != victim.has_value() ||
                       (victim && state.history.back().victim->pid != victim->pid);
  state.top = std::move(top);
  publishRanking(state);
  if (!changed) {
    return;  // the prediction in force stays the newest entry: steady state allocates nothing here
  }
  if (state.history.size() >= kPredictionHistory) {
    state.history.erase(state.history.begin());
  }
  state.history.push_back(Prediction{at_us, victim});
  if (log_change) {
    log_.write("next_victim",
               Json{{"domain", Json{{"kind", policies::toString(state.domain.kind)}, {"cgroup", state.domain.cgroup},
                                    {"totalpages", state.domain.totalpages}}},
                    {"victim", victim ? candidatesJson({*victim}).front() : Json(nullptr)}});
  }
}

void Daemon::publishRanking(const DomainState& state) {
  std::vector<RankedVictim> top;
  const std::string domain = state.domain.kind == policies::DomainKind::kHost ? "host" : state.domain.cgroup;
  for (size_t i = 0; i < state.top.size() && i < config_.metrics_top_k; ++i) {
    const auto& candidate = state.top[i];
    top.push_back(RankedVictim{i + 1, candidate.cgroup, candidate.comm, candidate.points, candidate.oom_score,
                               labelsOf(candidate.cgroup)});
  }
  metrics_.setVictimRanking(domain, "kernel", top);
  // The guardian's own order: protection class, preference, then points; what it will never take
  // (itself, "omit", unkillable) is left out. Of the kernel's top candidates, as the decision sees them.
  std::vector<RankedVictim> ours;
  for (const auto& candidate : policies::guardianOrder(guardianCandidates(state, false, false))) {
    if (ours.size() >= config_.metrics_top_k) {
      break;
    }
    const auto kernel = std::find_if(state.top.begin(), state.top.end(), [&](const Candidate& c) { return c.pid == candidate.pid; });
    const long oom_score = kernel != state.top.end() ? kernel->oom_score : 0;
    ours.push_back(RankedVictim{ours.size() + 1, candidate.cgroup, candidate.comm, candidate.points, oom_score,
                                labelsOf(candidate.cgroup)});
  }
  metrics_.setVictimRanking(domain, "oomguard", ours);
}

Json Daemon::candidatesJson(const std::vector<Candidate>& top) const {
  Json list = Json::array();
  for (size_t i = 0; i < top.size() && i < config_.log_candidates; ++i) {
    const auto& candidate = top[i];
    Json item{{"pid", candidate.pid},
              {"comm", candidate.comm},
              {"cgroup", candidate.cgroup.empty() ? Json(nullptr) : Json(candidate.cgroup)},
              {"points", candidate.points},
              {"oom_score_adj", candidate.oom_score_adj}};
    if (const auto labels = labelsOf(candidate.cgroup); !labels.pod.empty()) {
      item["namespace"] = labels.namespace_name;
      item["pod"] = labels.pod;
      item["container"] = labels.container;
    }
    list.push_back(std::move(item));
  }
  return list;
}

void Daemon::onKmsg(const std::string& text) {
  auto record = cgroupfs::parseKmsgRecord(text);
  if (!record) {
    return;
  }
  // kmsg stamps records with the kernel's printk clock (local_clock()), not CLOCK_MONOTONIC; the two
  // differ by a varying offset (tens of milliseconds in a VM). A record is read after it is written, so
  // the smallest (read time - record time) seen bounds the offset from above, tightly whenever we read
  // promptly; predictions (stamped on CLOCK_MONOTONIC) are compared through it.
  const auto read_us = static_cast<int64_t>(monotonic_());
  const int64_t lag = read_us - static_cast<int64_t>(record.value().timestamp_us);
  if (!kmsg_offset_us_ || lag < *kmsg_offset_us_) {
    kmsg_offset_us_ = lag;
  }
  if (!kmsg_mark_.empty() && record.value().message == kmsg_mark_) {
    // Our own mark: the offset lies between (before - stamp) and (after - stamp).
    const auto stamp = static_cast<int64_t>(record.value().timestamp_us);
    const int64_t upper = static_cast<int64_t>(kmsg_mark_after_us_) - stamp;
    kmsg_offset_us_ = std::min(*kmsg_offset_us_, upper);
    log_.write("kmsg_clock", Json{{"offset_us", *kmsg_offset_us_},
                                  {"uncertainty_us", kmsg_mark_after_us_ - kmsg_mark_before_us_}});
    kmsg_mark_.clear();
    return;
  }
  std::vector<std::string> reranks;  // domains whose prediction a kernel kill has made stale
  for (auto& event : oom_reports_.feed(record.value().message, record.value().timestamp_us)) {
    if (const auto* kill = std::get_if<cgroupfs::KernelOomKill>(&event)) {
      ++stats_.kernel_oom_kills;
      metrics_.countKernelOomKill(kill->summary.constraint);
      const std::string domain = kill->summary.oom_memcg && !kill->summary.global_oom ? *kill->summary.oom_memcg : "/";
      // cpuset and mempolicy OOMs scan only the tasks allowed on those nodes: not modelled here.
      const bool modelled = kill->summary.constraint == "CONSTRAINT_NONE" || kill->summary.constraint == "CONSTRAINT_MEMCG";
      // The prediction in force when the OOM began: the newest one recorded before the report's first line.
      std::optional<Candidate> predicted;
      bool have_prediction = false;
      if (const auto found = domains_.find(domain); modelled && found != domains_.end()) {
        for (auto it = found->second.history.rbegin(); it != found->second.history.rend(); ++it) {
          if (kill->started_us == 0 ||
              static_cast<int64_t>(it->at_us) <= static_cast<int64_t>(kill->started_us) + kmsg_offset_us_.value_or(0)) {
            predicted = it->victim;
            have_prediction = true;
            break;
          }
        }
      }
      std::string result = "none";
      if (!modelled) {
        result = "unmodelled";
        ++stats_.predictions_missing;
      } else if (kill->rate_limited && !kill->summary.oom_memcg && kill->summary.constraint == "CONSTRAINT_MEMCG") {
        result = "none";  // the report that names the memcg was rate-limited away
        ++stats_.predictions_missing;
      } else if (have_prediction && predicted && kernel_killed_.contains(predicted->pid) &&
                 predicted->pid != kill->victim.pid) {
        // The prediction still names an earlier victim: a second OOM came before a fresh ranking.
        result = "stale";
        ++stats_.predictions_missing;
      } else if (have_prediction && predicted) {
        result = predicted->pid == kill->victim.pid ? "match" : "mismatch";
        ++(result == "match" ? stats_.predictions_match : stats_.predictions_mismatch);
        metrics_.countPrediction(result);
      } else {
        ++stats_.predictions_missing;
      }
      // One OOM, one victim: wait on the kernel's victim until it is gone, as the kernel itself does.
      if (kill->victim.pid > 0) {
        const std::string where = kill->summary.task_memcg ? *kill->summary.task_memcg : domain;
        gate_.recordKernelKill(where, kill->victim.pid, monotonic_());
        if (auto pinned = actuator_.pin(kill->victim.pid); pinned && !pinned.value()->exited()) {
          victim_pins_[kill->victim.pid] = std::move(pinned).value();
        } else {
          gate_.release(kill->victim.pid);  // already gone: its memory is back
        }
      }
      kernel_killed_.insert(kill->victim.pid);
      if (kernel_killed_.size() > 4096) {
        kernel_killed_.erase(kernel_killed_.begin());
      }
      reranks.push_back(modelled ? domain : "/");
      log_.write("kernel_oom_kill",
                 Json{{"constraint", kill->summary.constraint},
                      {"domain", domain},
                      {"oom_memcg", kill->summary.oom_memcg ? Json(*kill->summary.oom_memcg) : Json(nullptr)},
                      {"task_memcg", kill->summary.task_memcg ? Json(*kill->summary.task_memcg) : Json(nullptr)},
                      {"victim", Json{{"pid", kill->victim.pid},
                                      {"comm", kill->victim.comm},
                                      {"anon_rss_kb", kill->victim.anon_rss_kb.value_or(0)},
                                      {"file_rss_kb", kill->victim.file_rss_kb.value_or(0)},
                                      {"shmem_rss_kb", kill->victim.shmem_rss_kb.value_or(0)},
                                      {"oom_score_adj", kill->victim.oom_score_adj ? Json(*kill->victim.oom_score_adj)
                                                                                   : Json(nullptr)}}},
                      {"allocating_task", kill->victim.allocating_task},
                      {"report_rate_limited", kill->rate_limited},
                      {"invoked_by", kill->invocation.comm},
                      {"predicted", predicted ? candidatesJson({*predicted}).front() : Json(nullptr)},
                      {"prediction", result}});
    } else if (const auto* group = std::get_if<cgroupfs::KernelOomGroupKill>(&event)) {
      log_.write("kernel_oom_group_kill", Json{{"cgroup", group->cgroup}});
    } else if (const auto* member = std::get_if<cgroupfs::KernelGroupMemberKilled>(&event)) {
      kernel_killed_.insert(member->process.pid);
      log_.write("kernel_oom_group_member_killed",
                 Json{{"cgroup", member->cgroup}, {"pid", member->process.pid}, {"comm", member->process.comm}});
    }
  }
  // A fresh prediction for each domain the kernel just acted in (logged; never acts: the kernel did).
  for (const auto& domain : reranks) {
    event_arrived_us_ = monotonic_();
    decide(domain, Json{{"kind", "kernel_oom_kill"}, {"cgroup", domain}}, policies::DomainObservation{}, false);
  }
}

void Daemon::scheduleRefresh() {
  if (stopped_) {
    return;
  }
  refresh_timer_.expires_after(std::chrono::microseconds(static_cast<int64_t>(config_.refresh_interval_s * 1e6)));
  refresh_timer_.async_wait([this](const boost::system::error_code& error) {
    if (error || stopped_) {
      return;
    }
    refresh();
    scheduleRefresh();
  });
}

void Daemon::refresh() {
  ++stats_.refreshes;
  const uint64_t scan_started_us = monotonic_();
  // Level thresholds first: a few small reads per acting domain, before the /proc scan delays them.
  if (stats_.refreshes > 1) {
    checkLevels(scan_started_us, true);
  }
  if (auto facts = node_.readFacts()) {
    facts_ = std::move(facts).value();
  }
  const uint64_t now_us = monotonic_();
  const size_t keep = std::max({config_.rescan_candidates, config_.log_candidates, config_.metrics_top_k});
  // Limits appear and go without any inotify event: re-read memory.max of every watched cgroup, and
  // re-apply the rule (trigger, watches) only where that changed something.
  // Limits are written right after a cgroup is made (runc, systemd) and seldom after: young cgroups are
  // re-read every refresh, the rest every kFullLimitScanEvery-th one. An event in a cgroup re-reads its
  // limit on the spot (see limitChanged()).
  constexpr uint64_t kYoungCgroupUs = 30'000'000;
  constexpr uint64_t kFullLimitScanEvery = 6;
  const bool full_scan = stats_.refreshes % kFullLimitScanEvery == 1;
  std::vector<std::string> limited;
  for (auto& [path, watched] : cgroups_) {
    const bool young = now_us - watched.added_us < kYoungCgroupUs;
    if ((full_scan || young) && readLimit(path, watched)) {
      applyRule(path, watched);
      if (!watched.limited) {
        domains_.erase(path);
      }
    } else if (watched.pressure_pending) {
      applyRule(path, watched);  // a trigger waiting for its cgroup to be old enough and populated
    }
    if (watched.limited) {
      limited.push_back(path);
    }
  }
  // Every process read once; the host ranked from that.
  auto host = node_.rankHost(facts_, false);
  stats_.read_errors += host.counters.malformed + host.counters.failed;
  refreshed_pids_.clear();
  for (const auto& process : host.processes) {
    refreshed_pids_.push_back(process.pid);  // sorted: rankHost reads the host in pid order
  }
  {
    std::vector<Candidate> top;
    for (const auto& candidate : host.candidates) {
      if (!candidate.killable || top.size() >= keep) {
        break;
      }
      auto& process = host.processes[candidate.scan_index];
      node_.ensureCgroup(process);
      top.push_back(candidateOf(process, candidate, process.cgroup.value_or("")));
    }
    auto& state = domains_["/"];
    state.domain = host.domain;
    record(state, std::move(top), monotonic_(), true);  // stamped once its data is read
  }
  // Each limited cgroup ranked from the same process reads, its members from cgroup.procs of its
  // subtree (read once per refresh, however many domains nest). The tree is the watch set, kept by
  // inotify; tasks are taken in pid order here (the decision path re-reads in the kernel's scan order).
  std::unordered_map<pid_t, size_t> by_pid;
  by_pid.reserve(host.processes.size());
  for (size_t i = 0; i < host.processes.size(); ++i) {
    by_pid[host.processes[i].pid] = i;
  }
  applyProtections(by_pid, host.processes);
  reconcilePodPressure();
  publishKubernetesStatus();
  releaseVictims(monotonic_());
  checkSysctls(false);
  // Growth over the trend window (kill-allocating), only where a rule could use it.
  const bool tracks_growth =
      (config_.host_act && config_.host_act->action == policies::Action::kKillAllocating) ||
      std::any_of(config_.cgroups.begin(), config_.cgroups.end(), [](const CgroupRule& rule) {
        return rule.act && rule.act->action == policies::Action::kKillAllocating;
      });
  if (tracks_growth) {
    const long page_kb = static_cast<long>(facts_.page_size_bytes / 1024);
    std::vector<Candidate> growers;
    for (const auto& process : host.processes) {
      const auto& st = process.status;
      growth_.sample(process.pid, now_us,
                     static_cast<long>(st.rss_anon_kb + st.rss_file_kb + st.rss_shmem_kb + st.swap_kb) / page_kb);
      if (const auto grew = growth_.growth(process.pid); grew && *grew > 0 && st.has_mm) {
        growers.push_back(Candidate{process.pid, process.status.comm, "", 0, process.oom_score_adj, 0, *grew});
      }
    }
    growth_.forgetOlderThan(now_us - std::min(now_us, static_cast<uint64_t>(2 * config_.trend_window_s * 1e6)));
    std::sort(growers.begin(), growers.end(), [](const auto& a, const auto& b) { return *a.growth_pages > *b.growth_pages; });
    growers.resize(std::min(growers.size(), keep));
    for (auto& grower : growers) {
      auto& process = host.processes[by_pid[grower.pid]];
      node_.ensureCgroup(process);
      grower.cgroup = process.cgroup.value_or("");
      grower.points = policies::oomBadness(process, facts_.host_totalpages, facts_.page_size_bytes);
    }
    domains_["/"].growers = std::move(growers);
  }
  std::unordered_map<std::string, std::vector<pid_t>> procs;
  for (const auto& path : limited) {
    const auto& watched = cgroups_.at(path);
    std::vector<cgroupfs::ProcessSnapshot> members;
    for (const auto& member : subtreeOf(path)) {
      auto cached = procs.find(member);
      if (cached == procs.end()) {
        std::vector<pid_t> pids;
        if (auto text = node_.cgroupfs().readText(member, "cgroup.procs")) {
          if (auto parsed = cgroupfs::parsePidList(text.value())) {
            pids = std::move(parsed).value();
          }
        }
        cached = procs.emplace(member, std::move(pids)).first;
      }
      for (const pid_t pid : cached->second) {
        if (const auto found = by_pid.find(pid); found != by_pid.end()) {
          members.push_back(host.processes[found->second]);
          members.back().cgroup = member;
        }
      }
    }
    std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
    const policies::OomDomain domain{
        policies::DomainKind::kMemcg, path,
        policies::memcgTotalPages(*watched.memory_max_bytes, watched.swap_max_bytes, facts_.meminfo.swap_total_kb * 1024,
                                  facts_.vm_swappiness, facts_.page_size_bytes)};
    const auto ranked =
        policies::rankDomain({members, domain.totalpages, facts_.host_totalpages, facts_.kernel, facts_.page_size_bytes});
    std::vector<Candidate> top;
    for (const auto& candidate : ranked) {
      if (!candidate.killable || top.size() >= keep) {
        break;
      }
      const auto& process = members[candidate.scan_index];
      top.push_back(candidateOf(process, candidate, process.cgroup.value_or("")));
    }
    auto& state = domains_[path];
    state.domain = domain;
    record(state, std::move(top), monotonic_(), true);  // stamped once its data is read
  }
  // Memory PSI for the metrics: the host every refresh, the OOM domains with the full limit scans
  // (and whenever their trigger fires). Likewise each domain's limit and use (its headroom), in bytes:
  // the host's RAM + swap from /proc/meminfo, a memcg's memory.max and memory.current.
  if (auto pressure = node_.procfs().readPressure("memory")) {
    metrics_.setPressure("/", pressure.value());
  }
  if (const auto& meminfo = facts_.meminfo; meminfo.mem_available_kb) {
    const uint64_t ram_used_kb =
        meminfo.mem_total_kb - std::min(*meminfo.mem_available_kb, meminfo.mem_total_kb);
    const uint64_t swap_used_kb =
        meminfo.swap_total_kb - std::min(meminfo.swap_free_kb, meminfo.swap_total_kb);
    metrics_.setDomainMemory("host", (meminfo.mem_total_kb + meminfo.swap_total_kb) * 1024,
                             (ram_used_kb + swap_used_kb) * 1024);
  }
  if (full_scan) {
    for (const auto& path : limited) {
      if (auto pressure = node_.cgroupfs().readPressure(path, "memory")) {
        metrics_.setPressure(path, pressure.value());
      }
      if (auto text = node_.cgroupfs().readText(path, "memory.current")) {
        if (auto current = cgroupfs::parseInteger(text.value()); current && current.value() >= 0) {
          metrics_.setDomainMemory(path, *cgroups_.at(path).memory_max_bytes,
                                   static_cast<uint64_t>(current.value()));
        }
      }
    }
  }
  metrics_.observeScanDuration(static_cast<double>(monotonic_() - scan_started_us) / 1e6);
  if (stats_.refreshes == 1) {
    checkLevels(monotonic_(), true);  // the first time, once the domains are known
  }
}

void Daemon::resync() {
  // After an inotify overflow: drop what is gone, add what is new.
  std::vector<std::string> gone;
  for (const auto& [path, watched] : cgroups_) {
    if (path != "/" && !node_.cgroupfs().hasFile(path, "cgroup.procs")) {
      gone.push_back(path);
    }
  }
  for (const auto& path : gone) {
    if (cgroups_.contains(path)) {
      removeCgroup(path);
    }
  }
  cgroupfs::ReadCounters counters;
  for (const auto& cgroup : node_.cgroupfs().readSubtree("/", counters)) {
    addCgroup(cgroup.path);
  }
}

bool Daemon::reload() {
  if (!options_.config_path) {
    log_.write("config_reload", Json{{"result", "ignored"}, {"reason", "started without --config"}});
    return false;
  }
  try {
    Config fresh = loadConfigFile(*options_.config_path);
    if (options_.metrics_listen) {
      fresh.metrics_listen = *options_.metrics_listen;
    }
    // What is bound or connected at start cannot change under a running daemon: refuse, and say so,
    // rather than log "applied" for a setting that is not.
    std::string restart;  // the paths that changed, comma-separated
    const auto& old_k8s = config_.kubernetes;
    const auto& new_k8s = fresh.kubernetes;
    const std::pair<bool, const char*> fixed[] = {
        {fresh.metrics_listen != config_.metrics_listen, "/metrics/listen"},
        {fresh.metrics_top_k != config_.metrics_top_k, "/metrics/top_k"},
        {new_k8s.enabled != old_k8s.enabled, "/kubernetes/enabled"},
        {new_k8s.api_server != old_k8s.api_server, "/kubernetes/api_server"},
        {new_k8s.node_name != old_k8s.node_name, "/kubernetes/node_name"},
        {new_k8s.service_account_dir != old_k8s.service_account_dir, "/kubernetes/service_account_dir"},
    };
    for (const auto& [changed, path] : fixed) {
      if (changed) {
        restart += (restart.empty() ? "" : ", ") + std::string(path);
      }
    }
    if (!restart.empty()) {
      throw ConfigError(*options_.config_path + ": " + restart +
                        " changed; these take effect only at a restart (the old config stays in force)");
    }
    config_ = std::move(fresh);
  } catch (const ConfigError& error) {
    log_.write("config_reload", Json{{"result", "refused"}, {"reason", error.what()}});
    return false;
  }
  armHost();
  for (auto& [path, watched] : cgroups_) {
    applyRule(path, watched);
  }
  // The tenant policy applies at once; turning the API watch on or off, or moving it, needs a restart.
  if (workloads_) {
    const auto changed = workloads_->setTenant(config_.kubernetes.tenant);
    for (const auto& uid : changed) {
      if (const KubePod* pod = workloads_->pod(uid)) {
        log_.write("pod_policy", Json{{"namespace", pod->namespace_name}, {"pod", pod->name}, {"uid", uid},
                                      {"policy", workloadPolicyJson(uid)}, {"why", "config reload"}});
      }
    }
  }
  refresh_timer_.cancel();
  scheduleRefresh();
  log_.write("config_reload", Json{{"result", "applied"}, {"file", *options_.config_path},
                                   {"pressure_triggers", armedPressureTriggers()}});
  return true;
}

void Daemon::stop() {
  if (stopped_) {
    return;
  }
  logWatchSet("stopping_state");
  stopped_ = true;
  refresh_timer_.cancel();
  level_timer_.cancel();
  if (signals_) {
    boost::system::error_code ignored;
    signals_->cancel(ignored);
  }
  if (host_pressure_) {
    host_pressure_->close();
  }
  for (auto& [path, watched] : cgroups_) {
    if (watched.pressure) {
      watched.pressure->close();
    }
  }
  if (inotify_) {
    inotify_->close();
  }
  if (kmsg_) {
    kmsg_->close();
  }
  for (auto& [uid, entry] : pod_pressure_) {
    if (entry.watch) {
      entry.watch->close();
    }
  }
  stopKubernetes();
}

size_t openFileDescriptors() {
  size_t count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* entry = ::readdir(dir)) {
      count += entry->d_name[0] != '.' ? 1 : 0;
    }
    ::closedir(dir);
    count = count > 0 ? count - 1 : 0;  // the directory stream's own fd
  }
  return count;
}

void Daemon::logWatchSet(const char* event) {
  log_.write(event, Json{{"cgroups", watchedCgroups()},
                         {"watched_cgroups", cgroups_.size()},
                         {"inotify_watches", watches_.size()},
                         {"pressure_triggers", armedPressureTriggers()},
                         {"domains", domains_.size()},
                         {"open_fds", openFileDescriptors()},
                         {"stats", Json{{"pressure_events", stats_.pressure_events},
                                        {"memory_events", stats_.memory_events},
                                        {"decisions", stats_.decisions},
                                        {"level_reads", stats_.level_reads},
                                        {"kernel_oom_kills", stats_.kernel_oom_kills},
                                        {"predictions_match", stats_.predictions_match},
                                        {"predictions_mismatch", stats_.predictions_mismatch},
                                        {"predictions_missing", stats_.predictions_missing},
                                        {"cgroups_added", stats_.cgroups_added},
                                        {"cgroups_removed", stats_.cgroups_removed},
                                        {"read_errors", stats_.read_errors}}}});
}

std::vector<std::string> Daemon::watchedCgroups() const {
  std::vector<std::string> paths;
  paths.reserve(cgroups_.size());
  for (const auto& [path, watched] : cgroups_) {
    paths.push_back(path);
  }
  return paths;
}

size_t Daemon::armedPressureTriggers() const {
  size_t count = 0;
  for (const auto& [path, watched] : cgroups_) {
    count += watched.pressure ? 1 : 0;
  }
  return count;
}

}  // namespace oomguard::guardian
