#include "guardian/daemon/watch_set.hpp"

#include <sys/inotify.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;
namespace files = cgroupfs::files;

constexpr uint32_t kDirectoryMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR;

std::string childOf(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

}  // namespace

WatchSet::WatchSet(boost::asio::io_context& io, io::Node& node, const config::Config& config, io::EventLog& log,
                   DaemonStats& stats, const Clock& clock, Listener& listener)
    : io_(io), node_(node), config_(config), log_(log), stats_(stats), clock_(clock), listener_(listener) {}

void WatchSet::open() {
  auto inotify = io::InotifyWatch::open(io_, [this](int wd, uint32_t mask, const std::string& name) {
    onInotify(wd, mask, name);
  });
  if (inotify) {
    inotify_ = std::move(inotify).value();
  } else {
    log_.write("read_error", Json{{"what", "inotify"}, {"error", inotify.error().describe()}});
  }
}

void WatchSet::armHost() {
  if (host_pressure_) {
    host_pressure_->close();
    host_pressure_.reset();
  }
  if (!config_.host_pressure) {
    host_pressure_status_ = "off";
    return;
  }
  const auto& trigger = *config_.host_pressure;
  const std::string file = node_.procfs().root() + "/pressure/" + trigger.resource;
  // The host's trigger, armed first, counts against the budget; it is armed whatever the budget says.
  auto watch = io::PressureWatch::arm(
      io_, file, trigger, [this](bool gone, const std::string& text) { listener_.onPressure("/", gone, text); },
      node_.triggerBudget().take());
  if (watch) {
    host_pressure_ = std::move(watch).value();
    host_pressure_status_ = host_pressure_->adjustment().empty()
                                ? "\"" + trigger.triggerText() + "\" on " + file
                                : host_pressure_->adjustment() + " on " + file;
  } else {
    host_pressure_status_ = "not armed: " + watch.error().describe();
  }
}

void WatchSet::add(const std::string& path) {
  if (closed_ || cgroups_.contains(path)) {
    return;
  }
  auto& watched = cgroups_[path];
  watched.added_us = clock_.monotonic_us();
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
  if (!watched.preexisting) {
    if (watched.limited) {
      listener_.onDomainFound(path);
    } else {
      young_.push_back(path);
      listener_.onYoungCgroup();
    }
  }
  if (stats_.refreshes > 0) {
    log_.write("cgroup_added", Json{{"cgroup", path}, {"limited", watched.limited}});
  }
  // Children created before our directory watch existed.
  if (auto children = node_.cgroupfs().listChildren(path)) {
    for (const auto& child : children.value()) {
      add(child);
    }
  }
}

bool WatchSet::readLimit(const std::string& path, WatchedCgroup& watched) {
  const bool was_limited = watched.limited;
  watched.limited = false;
  watched.memory_max_bytes.reset();
  watched.swap_max_bytes.reset();
  if (path == "/") {
    return was_limited;
  }
  if (auto limit = node_.cgroupfs().readLimit(path, files::kMemoryMax); limit && limit.value()) {
    watched.limited = true;
    watched.memory_max_bytes = limit.value();
    if (swap_in_use_) {
      if (auto swap_limit = node_.cgroupfs().readLimit(path, files::kMemorySwapMax)) {
        watched.swap_max_bytes = swap_limit.value();
      }
    }
  }
  return was_limited != watched.limited;
}

void WatchSet::limitChanged(const std::string& path) {
  auto found = cgroups_.find(path);
  if (found != cgroups_.end() && readLimit(path, found->second)) {
    applyRule(path, found->second);
    if (!found->second.limited) {
      listener_.onDomainGone(path);
    } else {
      listener_.onDomainFound(path);
    }
  }
}

std::vector<std::string> WatchSet::refreshLimits(uint64_t now_us, bool full_scan, uint64_t swap_total_kb) {
  // Limits appear and go without any inotify event: re-read memory.max of every watched cgroup, and
  // re-apply the rule (trigger, watches) only where that changed something.
  // Limits are written right after a cgroup is made (runc, systemd) and seldom after: young cgroups are
  // re-read every refresh, the rest on full scans. An event in a cgroup re-reads its limit on the spot
  // (see limitChanged()).
  constexpr uint64_t kYoungCgroupUs = 30'000'000;
  // Swap switched on since the last refresh: every domain's memory.swap.max counts from now on, in
  // this refresh's ranking already.
  full_scan = full_scan || (swap_total_kb > 0 && !swap_in_use_);
  swap_in_use_ = swap_total_kb > 0;
  std::vector<std::string> limited;
  capped_in_pass_ = false;
  for (auto& [path, watched] : cgroups_) {
    const bool young = now_us - watched.added_us < kYoungCgroupUs;
    if ((full_scan || young) && readLimit(path, watched)) {
      applyRule(path, watched);
      if (!watched.limited) {
        listener_.onDomainGone(path);
      }
    } else if (watched.pressure_pending && node_.triggerBudget().available()) {
      applyRule(path, watched);  // a trigger waiting for its cgroup to be old enough and populated
    } else if (watched.pressure_waits_for_fd) {
      noteCapped(path);
    }
    if (watched.limited) {
      limited.push_back(path);
    }
  }
  if (!capped_in_pass_) {
    trigger_budget_spent_logged_ = false;  // a refresh with no trigger waiting for a descriptor
  }
  return limited;
}

void WatchSet::noteCapped(const std::string& path) {
  capped_in_pass_ = true;
  if (trigger_budget_spent_logged_) {
    return;
  }
  trigger_budget_spent_logged_ = true;
  log_.write("pressure_triggers_capped",
             Json{{"cgroup", path},
                  {"armed", node_.triggerBudget().used()},
                  {"max", node_.triggerBudget().max()},
                  {"reason", "the open-file limit (RLIMIT_NOFILE) leaves no descriptor for another PSI trigger; "
                             "raise LimitNOFILE, or arm fewer (pressure_only_if_limited)"}});
}

bool WatchSet::armablePressure(const std::string& path, const WatchedCgroup& watched) {
  constexpr uint64_t kPressureArmAgeUs = 2'000'000;
  if (!watched.preexisting && clock_.monotonic_us() - watched.added_us < kPressureArmAgeUs) {
    return false;
  }
  auto keyed = node_.cgroupfs().readFlatKeyed(path, files::kEvents);
  if (!keyed) {
    return false;
  }
  const auto& pairs = keyed.value();
  return std::any_of(pairs.begin(), pairs.end(), [](const auto& pair) { return pair.first == "populated" && pair.second == 1; });
}

void WatchSet::applyRule(const std::string& path, WatchedCgroup& watched) {
  const config::CgroupRule* rule = config::ruleFor(config_, path);
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
  set_events_watch(watched.events_wd, files::kMemoryEvents, WatchKind::kEvents, watched.events);
  set_events_watch(watched.events_local_wd, files::kMemoryEventsLocal, WatchKind::kEventsLocal, watched.events_local);

  // The PSI trigger.
  std::optional<config::PressureTrigger> trigger;
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
  watched.pressure_waits_for_fd = false;
  if (trigger && !armablePressure(path, watched)) {
    watched.pressure_pending = true;
    return;
  }
  if (trigger && !node_.triggerBudget().available()) {
    // Every descriptor the open-file limit leaves for triggers is in use: armed at the first refresh after
    // one is given back (a cgroup removed); refreshes skip it until then. Said once while it lasts.
    watched.pressure_pending = true;
    watched.pressure_waits_for_fd = true;
    noteCapped(path);
    return;
  }
  if (trigger) {
    const std::string file = directory + "/" + trigger->resource + ".pressure";
    auto watch = io::PressureWatch::arm(
        io_, file, *trigger,
        [this, path](bool gone, const std::string& text) {
          if (gone) {
            if (auto found = cgroups_.find(path); found != cgroups_.end()) {
              found->second.pressure.reset();
            }
          }
          listener_.onPressure(path, gone, text);
        },
        node_.triggerBudget().take());
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

std::vector<const std::string*> WatchSet::subtreeOf(const std::string& path) const {
  // The cgroup itself, then everything in the key range [path + "/", path + "0"): exactly its
  // descendants, since '0' follows '/'. (Stopping at the first non-descendant after lower_bound(path)
  // would be wrong: "/a-x" sorts between "/a" and "/a/b".)
  std::vector<const std::string*> paths;
  if (const auto self = cgroups_.find(path); self != cgroups_.end()) {
    paths.push_back(&self->first);
  }
  const std::string prefix = path == "/" ? "/" : path + "/";
  const std::string end = prefix.substr(0, prefix.size() - 1) + "0";
  for (auto it = cgroups_.lower_bound(prefix); it != cgroups_.end() && it->first < end; ++it) {
    if (it->first != path) {
      paths.push_back(&it->first);
    }
  }
  return paths;
}

void WatchSet::remove(const std::string& path) {
  std::vector<std::string> gone;  // copied: removing an entry frees the key subtreeOf points to
  for (const std::string* cgroup : subtreeOf(path)) {
    gone.push_back(*cgroup);
  }
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
    listener_.onDomainGone(cgroup);
    listener_.onCgroupRemoved(cgroup);
    ++stats_.cgroups_removed;
    log_.write("cgroup_removed", Json{{"cgroup", cgroup}});
  }
}

void WatchSet::onInotify(int wd, uint32_t mask, const std::string& name) {
  listener_.onEventArrived();
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
      add(childOf(path, name));
    } else if ((mask & (IN_DELETE | IN_MOVED_FROM)) != 0) {
      remove(childOf(path, name));
    }
    return;
  }
  if ((mask & IN_MODIFY) != 0 && kind != WatchKind::kDirectory) {
    listener_.onMemoryEvents(path, kind == WatchKind::kEventsLocal);
  }
}

std::optional<EventsRise> WatchSet::readEvents(const std::string& path, bool local) {
  auto found = cgroups_.find(path);
  if (found == cgroups_.end()) {
    return std::nullopt;
  }
  auto events = node_.cgroupfs().readMemoryEvents(path, local);
  if (!events) {
    if (!events.error().vanished()) {
      ++stats_.read_errors;
    }
    return std::nullopt;
  }
  auto& last = local ? found->second.events_local : found->second.events;
  EventsRise rise{events.value(), {}};
  const auto& now = rise.now;
  const std::pair<const char*, std::pair<uint64_t, uint64_t>> keys[] = {
      {"low", {last.low, now.low}},       {"high", {last.high, now.high}},         {"max", {last.max, now.max}},
      {"oom", {last.oom, now.oom}},       {"oom_kill", {last.oom_kill, now.oom_kill}},
      {"oom_group_kill", {last.oom_group_kill, now.oom_group_kill}}};
  for (const auto& [key, values] : keys) {
    if (values.second > values.first) {
      rise.rose.emplace_back(key, values.second - values.first);
    }
  }
  last = now;
  return rise;
}

void WatchSet::resync() {
  std::vector<std::string> gone;
  for (const auto& [path, watched] : cgroups_) {
    if (path != "/" && !node_.cgroupfs().hasFile(path, files::kProcs)) {
      gone.push_back(path);
    }
  }
  for (const auto& path : gone) {
    if (cgroups_.contains(path)) {
      remove(path);
    }
  }
  cgroupfs::ReadCounters counters;
  for (const auto& cgroup : node_.cgroupfs().readSubtree("/", counters)) {
    add(cgroup.path);
  }
}

void WatchSet::reapply() {
  armHost();
  for (auto& [path, watched] : cgroups_) {
    applyRule(path, watched);
  }
}

void WatchSet::close() {
  closed_ = true;
  // Every trigger at once (io::closeDescriptors): one after another they held a stop for seconds.
  std::vector<int> fds;
  if (host_pressure_) {
    fds.push_back(host_pressure_->release());
  }
  for (auto& [path, watched] : cgroups_) {
    if (watched.pressure) {
      fds.push_back(watched.pressure->release());
    }
  }
  std::erase(fds, -1);
  io::closeDescriptors(fds);
  if (inotify_) {
    inotify_->close();
  }
}

std::string WatchSet::domainFor(const std::string& cgroup) const {
  for (std::string path = cgroup; !path.empty() && path != "/"; path = cgroupfs::parentCgroup(path)) {
    const auto found = cgroups_.find(path);
    if (found != cgroups_.end() && found->second.limited) {
      return path;
    }
  }
  return "/";
}

const WatchedCgroup* WatchSet::find(const std::string& path) const {
  const auto found = cgroups_.find(path);
  return found == cgroups_.end() ? nullptr : &found->second;
}

const io::PressureWatch* WatchSet::pressureWatch(const std::string& cgroup) const {
  if (cgroup == "/") {
    return host_pressure_.get();
  }
  const auto* watched = find(cgroup);
  return watched == nullptr ? nullptr : watched->pressure.get();
}

cgroupfs::Result<cgroupfs::Pressure> WatchSet::readMemoryPressure(const std::string& domain) const {
  const io::PressureWatch* trigger = pressureWatch(domain);
  if (trigger != nullptr && trigger->trigger().resource == "memory") {
    return trigger->read();
  }
  return domain == "/" ? node_.procfs().readPressure("memory") : node_.cgroupfs().readPressure(domain, "memory");
}

std::vector<std::string> WatchSet::paths() const {
  std::vector<std::string> paths;
  paths.reserve(cgroups_.size());
  for (const auto& [path, watched] : cgroups_) {
    paths.push_back(path);
  }
  return paths;
}

size_t WatchSet::armedPressureTriggers() const {
  size_t count = 0;
  for (const auto& [path, watched] : cgroups_) {
    count += watched.pressure ? 1 : 0;
  }
  return count;
}

size_t WatchSet::eventsWatches() const {
  size_t count = 0;
  for (const auto& [path, watched] : cgroups_) {
    count += watched.events_wd >= 0 ? 1 : 0;
  }
  return count;
}

}  // namespace oomguard::guardian::daemon
