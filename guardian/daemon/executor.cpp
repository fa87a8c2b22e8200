#include "guardian/daemon/executor.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <nlohmann/json.hpp>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "guardian/io/startup_pages.hpp"

namespace oomguard::guardian::daemon {
namespace {

using Json = nlohmann::ordered_json;

}  // namespace

Executor::Executor(io::Node& node, io::Actuator& actuator, io::HookRunner& hooks, const config::Config& config,
                   const DaemonOptions& options, io::EventLog& log, exporter::Metrics& metrics, DaemonStats& stats,
                   const Clock& clock)
    : node_(node),
      actuator_(actuator),
      hooks_(hooks),
      config_(config),
      options_(options),
      log_(log),
      metrics_(metrics),
      stats_(stats),
      clock_(clock),
      gate_(static_cast<uint64_t>(config.victim_wait_s * 1e6), config.max_kills_per_minute) {}

std::string Executor::protectSelf() {
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
    status += ", " + actuator_.setOwnOomScoreAdj(*config_.self.oom_score_adj).detail;
  }
  return status;
}

std::string Executor::releaseStartupPages() {
  if (!config_.self.release_startup_pages) {
    return "kept (self.release_startup_pages: false)";
  }
  const std::vector<std::string> own = io::ownFiles();
  if (own.empty()) {
    return "none: oomguard's own files are unknown (/proc/self/exe unreadable), and they are never released";
  }
  const auto released = io::releaseStartupPages(own);
  if (!released) {
    return "none: " + released.error().describe();
  }
  std::string status = std::to_string(released->rss_bytes / 1024) + " KiB in " +
                       std::to_string(released->mappings) + " mappings";
  if (released->locked_kept > 0) {
    status += "; " + std::to_string(released->locked_kept) +
              " locked mappings kept (the kernel refused MADV_DONTNEED_LOCKED: Linux < 5.18?)";
  }
  if (released->failed > 0) {
    status += "; " + std::to_string(released->failed) + " failed (first " + released->first_failure + ")";
  }
  return status;
}

void Executor::findNeverKill() {
  for (pid_t pid = ::getpid(); pid > 1 && never_kill_.insert(pid).second;) {
    auto process = node_.procfs().readProcess(pid, false);
    if (!process) {
      break;
    }
    pid = process.value().status.ppid;
  }
}

void Executor::configChanged() {
  gate_.setLimits(static_cast<uint64_t>(config_.victim_wait_s * 1e6), config_.max_kills_per_minute);
}

void Executor::releaseVictims(uint64_t now_us) {
  // A victim is released once it is gone (its pidfd polls readable: it has exited, its address space
  // torn down); a cgroup kill once the cgroup is empty. Past the wait the gate forgets it anyway.
  for (auto it = victim_pins_.begin(); it != victim_pins_.end();) {
    if (it->second->exited()) {
      const pid_t pid = it->first;
      gate_.release(pid);
      log_.write("victim_released", Json{{"pid", pid}, {"reason", "gone"}});
      it = victim_pins_.erase(it);
      runPostKill("pid:" + std::to_string(pid), true);
    } else {
      ++it;
    }
  }
  for (auto it = killed_cgroups_.begin(); it != killed_cgroups_.end();) {
    // "populated 0" in cgroup.events: no task left in the whole subtree. cgroup.procs lists only the
    // cgroup's own tasks, which is empty at once for a pod cgroup whose tasks live in its children.
    // Gone (the cgroup removed) counts as empty; any other failure to read it (no descriptor left)
    // says nothing, and the gate's bounded wait ends it.
    auto events = node_.cgroupfs().readFlatKeyed(*it, cgroupfs::files::kEvents);
    const bool empty = events ? std::any_of(events.value().begin(), events.value().end(), [](const auto& entry) {
      return entry.first == "populated" && entry.second == 0;
    }) : events.error().vanished();
    if (empty) {
      const std::string cgroup = *it;
      gate_.releaseCgroup(cgroup);
      log_.write("victim_released", Json{{"cgroup", cgroup}, {"reason", "empty"}});
      it = killed_cgroups_.erase(it);
      runPostKill("cgroup:" + cgroup, true);
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
  // Kills whose victim outlived the wait: their post_kill hook runs now, with victim_gone false.
  std::vector<std::string> overdue;
  for (const auto& [key, plan] : post_kill_due_) {
    const bool pid_waited = key.starts_with("pid:") && victim_pins_.contains(plan.victim.pid);
    const bool cgroup_waited = key.starts_with("cgroup:") && killed_cgroups_.contains(key.substr(7));
    if (!pid_waited && !cgroup_waited) {
      overdue.push_back(key);
    }
  }
  for (const auto& key : overdue) {
    runPostKill(key, false);
  }
}

void Executor::applyProtections(const HostScan& scan, const std::vector<std::string>& cgroups) {
  // The process rules first, in every mode: the command lines they need are read here, once per process,
  // and kept for the decisions (io::Node::cmdline). A process rule's protection wins over its cgroup's:
  // those processes are set here (mode act) and passed over below. Never pid 1 (what it starts would
  // inherit the value), a kernel thread, or one of oomguard's hooks (they keep hooks.oom_score_adj).
  node_.retainCmdlines([&](pid_t pid) { return scan.by_pid.contains(pid); });
  std::unordered_map<pid_t, size_t> by_process_rule;  // pid -> the index of its rule
  if (!config_.processes.empty()) {
    for (const auto& process : scan.processes) {
      size_t index = 0;
      const config::ProcessRule* rule = config::processRuleFor(
          config_.processes, process.status.comm, process.status.uid,
          [&] { return node_.cmdline(process.pid, process.status.comm, /*may_read=*/true); }, &index);
      if (rule != nullptr && rule->oom_score_adj && process.pid > 1 && process.status.has_mm &&
          !hooks_.isHook(process.pid) && !never_kill_.contains(process.pid)) {
        by_process_rule[process.pid] = index;
      }
    }
  }
  if (config_.mode != config::Mode::kAct) {
    return;  // observe: never writes
  }
  std::erase_if(intended_adj_, [&](const auto& entry) { return !scan.by_pid.contains(entry.first); });
  for (const auto& [pid, index] : by_process_rule) {
    const config::ProcessRule& rule = config_.processes[index];
    if (auto written = protect(scan, pid, *rule.oom_score_adj, Json{{"process_rule", index}, {"match", rule.text}},
                               "config")) {
      auto [entry, added] = process_rule_writes_.try_emplace(pid, *written);
      if (!added && entry->second.started_ticks == written->started_ticks) {
        entry->second.adj_written = written->adj_written;  // the value before the first write is the one kept
      } else if (!added) {
        entry->second = *written;  // another process under the pid
      }
    }
  }
  std::unordered_set<pid_t> set_by_cgroup_rule;
  // The operator's config rule wins over a pod's annotations for the same setting.
  const bool pods_known = workloads_ != nullptr && workloads_->podCount() > 0 && config_.kubernetes.annotations;
  for (const auto& path : cgroups) {
    const config::CgroupRule* rule = config::ruleFor(config_, path);
    bool has_group = rule != nullptr && rule->oom_group.has_value();
    bool wanted_group = has_group && rule->oom_group.value();
    // (an int and a flag, not an optional: GCC 12 warns maybe-uninitialized through the JSON below)
    bool has_adj = rule != nullptr && rule->oom_score_adj.has_value();
    int wanted_adj = has_adj ? rule->oom_score_adj.value() : 0;
    const char* group_source = "config";
    const char* adj_source = "config";
    if (pods_known && (!has_group || !has_adj) && path.find("kubepods") != std::string::npos) {
      const auto resolved = workloads_->resolve(path);
      if (const auto group = kube::Workloads::oomGroup(resolved); !has_group && group) {
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
    if (has_group && path != "/" && node_.readOomGroup(path) != wanted_group) {
      const auto result = actuator_.setOomGroup(path, wanted_group);
      ++stats_.protections_applied;
      log_.write("protection", Json{{"cgroup", path}, {"memory.oom.group", wanted_group}, {"source", group_source},
                                    {"ok", result.ok}, {"detail", result.detail}});
    }
    if (!has_adj) {
      continue;
    }
    auto text = node_.cgroupfs().readText(path, cgroupfs::files::kProcs);
    if (!text) {
      continue;
    }
    auto pids = cgroupfs::parsePidList(text.value());
    if (!pids) {
      continue;
    }
    for (const pid_t pid : pids.value()) {
      if (!by_process_rule.contains(pid)) {
        protect(scan, pid, wanted_adj, Json{{"cgroup", path}}, adj_source);
        set_by_cgroup_rule.insert(pid);
      }
    }
  }
  // A process rule's protection outlives its match: put back what the process had, unless its cgroup's
  // rule has set it above. A process this refresh did not read is not judged (it may match still); one
  // unread for kForgetAfterScans refreshes in a row is forgotten (it has exited, in all likelihood).
  constexpr uint32_t kForgetAfterScans = 3;
  for (auto it = process_rule_writes_.begin(); it != process_rule_writes_.end();) {
    auto& [pid, written] = *it;
    if (by_process_rule.contains(pid)) {
      written.missed_scans = 0;
      ++it;
      continue;
    }
    if (!scan.by_pid.contains(pid)) {
      it = ++written.missed_scans >= kForgetAfterScans ? process_rule_writes_.erase(it) : std::next(it);
      continue;
    }
    const bool settled = set_by_cgroup_rule.contains(pid) || restoreAdj(pid, written);
    it = settled ? process_rule_writes_.erase(it) : std::next(it);
  }
}

bool Executor::restoreAdj(pid_t pid, const AdjWrite& written) {
  const auto now = node_.procfs().readOomScoreAdj(pid);
  if (!now) {
    return now.error().vanished();
  }
  int adj = now.value();
  if (const auto intended = intended_adj_.find(pid); intended != intended_adj_.end()) {
    adj = intended->second;  // --dry-run: as the model reads it
  }
  if (adj != written.adj_written) {
    return true;  // changed since the rule wrote it: whoever did (the new program, an operator) stands
  }
  auto pinned = actuator_.pin(pid);
  if (!pinned) {
    return pinned.error().vanished();
  }
  const auto started = node_.procfs().readStartTimeTicks(pid);
  if (!started) {
    return started.error().vanished();
  }
  if (started.value() != written.started_ticks) {
    return true;  // another process under the pid
  }
  writeAdj(pinned.value(), written.adj_before,
           Json{{"process_rule", nullptr}, {"restored", "no process rule matches the process now"}}, "restore");
  return true;  // a refused write is not retried at every refresh
}

std::optional<Executor::AdjWrite> Executor::protect(const HostScan& scan, pid_t pid, int wanted_adj, Json where,
                                                    const char* source) {
  const auto found = scan.by_pid.find(pid);
  if (found == scan.by_pid.end() || never_kill_.contains(pid)) {
    return std::nullopt;
  }
  // A quiet process (not read by this refresh) has its oom_score_adj read now: someone may have
  // changed it, and a write of ours since its last read must not be made again.
  int adj = scan.processes[found->second].oom_score_adj;
  if (!scan.readNow(found->second)) {
    const auto now = node_.procfs().readOomScoreAdj(pid);
    if (!now) {
      return std::nullopt;  // gone: the next refresh sees it as it is
    }
    adj = now.value();
    if (const auto intended = intended_adj_.find(pid); intended != intended_adj_.end()) {
      adj = intended->second;  // --dry-run: as the model reads it (Node::overlayIntendedAdj)
    }
  }
  if (adj == wanted_adj) {
    return std::nullopt;
  }
  // Through a verified pin: the pinned process started before the scan read it, so it is the one
  // the scan saw (not a new process under a recycled pid).
  auto pinned = actuator_.pin(pid);
  const auto started = pinned ? node_.procfs().readStartTimeTicks(pid) : cgroupfs::Result<uint64_t>(pinned.error());
  if (!pinned || !started || started.value() > scan.read_boot_ticks) {
    return std::nullopt;  // gone, or a recycled pid: the next refresh sees it as it is
  }
  if (!writeAdj(pinned.value(), wanted_adj, std::move(where), source)) {
    return std::nullopt;
  }
  return AdjWrite{adj, wanted_adj, started.value(), 0};
}

bool Executor::writeAdj(const std::shared_ptr<io::PinnedProcess>& pinned, int adj, Json where, const char* source) {
  const auto result = actuator_.setOomScoreAdj(pinned, adj);
  if (options_.dry_run && result.ok) {
    intended_adj_[pinned->pid()] = adj;  // what act mode's model would read back from /proc
  }
  ++stats_.protections_applied;
  Json line = std::move(where);
  line["pid"] = pinned->pid();
  line["oom_score_adj"] = adj;
  line["source"] = source;
  line["ok"] = result.ok;
  line["detail"] = result.detail;
  log_.write("protection", line);
  return result.ok;
}

void Executor::checkSysctls(bool at_start) {
  for (const auto& [name, wanted] : config_.sysctls) {
    std::string relative = name;
    std::replace(relative.begin(), relative.end(), '.', '/');
    auto current = node_.procfs().readSysctl(relative);
    if (!current) {
      log_.write("sysctl", Json{{"name", name}, {"result", "unreadable"}, {"error", current.error().describe()}});
      continue;
    }
    const bool drifted = current.value() != wanted;
    const bool may_write = config_.mode == config::Mode::kAct && (at_start || config_.enforce_sysctls);
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

namespace {

Json bytesJson(std::optional<uint64_t> bytes) { return bytes ? Json(*bytes) : Json("max"); }

}  // namespace

void Executor::applyMemoryHigh(const std::vector<std::pair<std::string, uint64_t>>& domains) {
  if (config_.mode != config::Mode::kAct) {
    return;
  }
  const uint64_t page_bytes = node_.pageBytes();
  std::set<std::string> wanted_here;
  for (const auto& [cgroup, max_bytes] : domains) {
    const config::CgroupRule* rule = config::ruleFor(config_, cgroup);
    if (rule == nullptr || !rule->act || !rule->act->memory_high_at_threshold || !rule->act->when.headroom_below) {
      continue;
    }
    wanted_here.insert(cgroup);
    // At the threshold, on a page boundary: usage above it is the level the rule acts on.
    const auto threshold = static_cast<uint64_t>(static_cast<double>(max_bytes) * (1.0 - *rule->act->when.headroom_below));
    const uint64_t wanted = threshold / page_bytes * page_bytes;
    auto current = node_.cgroupfs().readLimit(cgroup, cgroupfs::files::kMemoryHigh);
    if (!current) {
      continue;  // no memory controller here (yet), or the cgroup is going: nothing to set
    }
    const auto ours = memory_high_set_.find(cgroup);
    if (options_.dry_run && ours != memory_high_set_.end() && ours->second.bytes == wanted) {
      continue;  // --dry-run: said once; nothing was written, so the file still shows the old value
    }
    const bool mine = ours != memory_high_set_.end() && current.value() == ours->second.bytes;
    if (current.value() == wanted && mine) {
      continue;
    }
    // Someone else's memory.high (kubelet's MemoryQoS, systemd's MemoryHigh=): left alone, unless the
    // rule says override and theirs lies above the threshold (then theirs is put back later).
    const bool foreign = current.value() && !mine;
    if (foreign && (!rule->act->memory_high_override || *current.value() <= wanted)) {
      if (memory_high_left_.insert(cgroup).second) {
        log_.write("memory_high_left",
                   Json{{"cgroup", cgroup}, {"memory.high", bytesJson(current.value())}, {"wanted", wanted},
                        {"why", rule->act->memory_high_override ? "set by someone else, at or below the threshold; left alone"
                                                                : "set by someone else; left alone"}});
      }
      memory_high_set_.erase(cgroup);  // no longer ours: not in force, and not put back
      continue;
    }
    // What is put back later: theirs when overriding, else what was there before oomguard's first write.
    const std::optional<uint64_t> previous = foreign ? current.value() : mine ? ours->second.previous : std::nullopt;
    const auto result = actuator_.setMemoryHigh(cgroup, wanted);
    Json line{{"cgroup", cgroup}, {"from", bytesJson(current.value())}, {"to", wanted}, {"ok", result.ok},
              {"detail", result.detail}};
    if (foreign) {
      line["why"] = "memory_high_override: set by someone else above the threshold; theirs is put back later";
    }
    log_.write("memory_high", line);
    if (result.ok) {
      memory_high_set_[cgroup] = MemoryHighWritten{wanted, previous};
      memory_high_left_.erase(cgroup);
    }
  }
  // Domains gone, or whose rule no longer asks: forget the gone, give the others "max" back.
  for (auto it = memory_high_set_.begin(); it != memory_high_set_.end();) {
    if (wanted_here.contains(it->first)) {
      ++it;
      continue;
    }
    if (auto current = node_.cgroupfs().readLimit(it->first, cgroupfs::files::kMemoryHigh);
        current && current.value() == it->second.bytes) {
      const auto result = actuator_.setMemoryHigh(it->first, it->second.previous);
      log_.write("memory_high", Json{{"cgroup", it->first}, {"from", it->second.bytes}, {"to", bytesJson(it->second.previous)},
                                     {"ok", result.ok}, {"detail", result.detail}, {"why", "the rule no longer asks"}});
    }
    it = memory_high_set_.erase(it);
  }
  // Someone else's, noted for a domain gone or no longer asked: forgotten (pods come and go; said again
  // if it is asked again).
  std::erase_if(memory_high_left_, [&](const std::string& cgroup) { return !wanted_here.contains(cgroup); });
}

void Executor::restoreMemoryHigh() {
  if (options_.dry_run) {
    memory_high_set_.clear();  // nothing was written
    memory_high_left_.clear();
    return;
  }
  for (const auto& [cgroup, written] : memory_high_set_) {
    auto current = node_.cgroupfs().readLimit(cgroup, cgroupfs::files::kMemoryHigh);
    if (!current) {
      continue;  // gone with its cgroup
    }
    if (current.value() != written.bytes) {
      log_.write("memory_high_left", Json{{"cgroup", cgroup}, {"memory.high", bytesJson(current.value())},
                                          {"why", "changed by someone else since oomguard set it; left alone"}});
      continue;
    }
    const auto result = actuator_.setMemoryHigh(cgroup, written.previous);
    log_.write("memory_high", Json{{"cgroup", cgroup}, {"from", written.bytes}, {"to", bytesJson(written.previous)},
                                   {"ok", result.ok}, {"detail", result.detail}, {"why", "restored"}});
  }
  memory_high_set_.clear();
  memory_high_left_.clear();
}

}  // namespace oomguard::guardian::daemon
