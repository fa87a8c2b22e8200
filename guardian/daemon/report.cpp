// The report step of the loop: the start-up summary, the watch set with its counters, and each domain's
// ranking and memory into the metrics.
#include <dirent.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "guardian/daemon/daemon.hpp"
#include "guardian/io/features.hpp"
#include "oomguard/version.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;

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

}  // namespace

void Daemon::printSummary(const std::string& kmsg_status, const std::string& self_status) {
  const auto features = io::probeKernelFeatures();
  auto controllers = node_.cgroupfs().readControllers("/");
  std::string controller_list;
  if (controllers) {
    for (const auto& name : controllers.value()) {
      controller_list += (controller_list.empty() ? "" : " ") + name;
    }
  }
  const bool memory = controller_list.find("memory") != std::string::npos;
  const bool observing = config_.mode == config::Mode::kObserve;
  summary_ << "oomguard " << kVersion << " run: mode " << config::toString(config_.mode)
           << (observing ? " (never kills; writes nothing but its own settings, its PSI triggers and one start-up line to the kernel log)" : "")
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
           << "  watching " << watch_set_.cgroups().size() << " cgroups (" << watch_set_.eventsWatches()
           << " memory.events, " << armedPressureTriggers() << " PSI triggers), " << rankings_.all().size()
           << " OOM domains\n"
           << "  host PSI trigger: " << watch_set_.hostPressureStatus() << "\n"
           << "  kernel OOM reports: " << kmsg_status << "\n"
           << "  kill history: " << history_.status() << "\n"
           << "  kubernetes: " << pods_.status() << "\n"
           << "  self: " << (self_status.empty() ? "unprotected (protect_self off)" : self_status) << "\n";
  summary_.flush();
}

void Daemon::publishRanking(const DomainState& state, bool changed) {
  const std::string domain = state.domain.kind == policies::DomainKind::kHost ? "host" : state.domain.cgroup;
  std::vector<exporter::RankedVictim> top;
  for (size_t i = 0; i < state.top.size() && i < config_.metrics_top_k; ++i) {
    const auto& candidate = state.top[i];
    top.push_back(exporter::RankedVictim{i + 1, candidate.cgroup, candidate.comm, candidate.points,
                                         candidate.oom_score, pods_.labelsOf(candidate.cgroup)});
  }
  metrics_.setVictimRanking(domain, "kernel", top);
  // The guardian's own order: protection class, preference, then points; what it will never take
  // (itself, "omit", unkillable) is left out. Of the kernel's top candidates, as the decision sees them.
  std::vector<exporter::RankedVictim> ours;
  for (const auto& candidate : policies::guardianOrder(decider_.candidates(state, false, false))) {
    if (ours.size() >= config_.metrics_top_k) {
      break;
    }
    ours.push_back(exporter::RankedVictim{ours.size() + 1, candidate.cgroup, candidate.comm, candidate.points,
                                          candidate.oom_score, pods_.labelsOf(candidate.cgroup)});
  }
  metrics_.setVictimRanking(domain, "oomguard", ours);
  if (changed) {
    decision_log_.nextVictim(state);
  }
}

void Daemon::publishDomainMemory(const std::vector<std::string>& limited, bool full_scan) {
  // Memory PSI for the metrics: the host every refresh, the OOM domains at the full scans (and
  // whenever their trigger fires). Likewise each domain's limit and use (its headroom), in bytes:
  // the host's RAM + swap from /proc/meminfo, a memcg's memory.max and memory.current (an acting
  // domain's from the level watch, below).
  if (auto pressure = watch_set_.readMemoryPressure("/")) {
    metrics_.setPressure("/", pressure.value());
  }
  if (const auto& meminfo = facts_.meminfo; meminfo.mem_available_kb) {
    recordHostMemory(meminfo.mem_total_kb, *meminfo.mem_available_kb, meminfo.swap_total_kb, meminfo.swap_free_kb,
                     facts_read_us_);  // a failed read leaves the last one, not fitted again
  }
  // An acting domain's memory.current is the level watch's last reading (read at least every
  // kLevelReadingFreshRefreshes refreshes by its safety net, more often near its threshold): published
  // at every refresh and not read again here while it is that fresh.
  constexpr uint64_t kLevelReadingFreshRefreshes = 7;
  const uint64_t now_us = clock_.monotonic_us();
  const auto fresh_us = static_cast<uint64_t>(config_.refresh_interval_s * 1e6) * kLevelReadingFreshRefreshes;
  for (const auto& path : limited) {
    const WatchedCgroup* watched = watch_set_.find(path);
    if (watched == nullptr || !watched->memory_max_bytes) {
      continue;
    }
    // Taken only from this cgroup (not one removed and made again under its path) and against the
    // limit in force (memory.max may have moved since the reading).
    const auto level = decider_.levelReading(path);
    const bool level_fresh = level && level->at_us >= watched->added_us && level->at_us + fresh_us >= now_us &&
                             level->memory_max_bytes == watched->memory_max_bytes;
    if (level_fresh) {
      recordDomainMemory(path, *watched->memory_max_bytes, level->current_bytes, level->at_us);
    }
    if (!full_scan) {
      continue;
    }
    if (auto pressure = watch_set_.readMemoryPressure(path)) {
      metrics_.setPressure(path, pressure.value());
    }
    if (!level_fresh) {
      if (auto current = node_.cgroupfs().readMemoryCurrent(path)) {
        recordDomainMemory(path, *watched->memory_max_bytes, current.value(), clock_.monotonic_us());
      }
    }
  }
}

void Daemon::recordHostMemory(uint64_t mem_total_kb, uint64_t mem_available_kb, uint64_t swap_total_kb,
                              uint64_t swap_free_kb, uint64_t at_us) {
  const uint64_t ram_used_kb = mem_total_kb - std::min(mem_available_kb, mem_total_kb);
  const uint64_t swap_used_kb = swap_total_kb - std::min(swap_free_kb, swap_total_kb);
  recordDomainMemory("/", (mem_total_kb + swap_total_kb) * 1024, (ram_used_kb + swap_used_kb) * 1024, at_us);
}

void Daemon::recordDomainMemory(const std::string& domain, uint64_t limit_bytes, uint64_t usage_bytes,
                                uint64_t at_us) {
  forecasts_[domain].reading(at_us, usage_bytes, limit_bytes);  // ignored unless later than the last
  metrics_.setDomainMemory(domain == "/" ? "host" : domain, limit_bytes, usage_bytes, oomForecastSeconds(domain));
}

std::optional<double> Daemon::oomForecastSeconds(const std::string& domain) const {
  const auto found = forecasts_.find(domain);
  return found == forecasts_.end() ? std::nullopt : found->second.secondsToLimitAt(clock_.monotonic_us());
}

void Daemon::logWatchSet(const char* event) {
  log_.write(event, Json{{"cgroups", watchedCgroups()},
                         {"watched_cgroups", watch_set_.cgroups().size()},
                         {"inotify_watches", watch_set_.inotifyWatches()},
                         {"pressure_triggers", armedPressureTriggers()},
                         {"domains", rankings_.all().size()},
                         {"open_fds", openFileDescriptors()},
                         {"stats", Json{{"pressure_events", stats_.pressure_events},
                                        {"memory_events", stats_.memory_events},
                                        {"decisions", stats_.decisions},
                                        {"level_reads", stats_.level_reads},
                                        {"allocation_reads", stats_.allocation_reads},
                                        {"kernel_oom_kills", stats_.kernel_oom_kills},
                                        {"predictions_match", stats_.predictions_match},
                                        {"predictions_mismatch", stats_.predictions_mismatch},
                                        {"predictions_missing", stats_.predictions_missing},
                                        {"cgroups_added", stats_.cgroups_added},
                                        {"cgroups_removed", stats_.cgroups_removed},
                                        {"read_errors", stats_.read_errors}}}});
}

}  // namespace oomguard::guardian::daemon
