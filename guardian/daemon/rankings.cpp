#include "guardian/daemon/rankings.hpp"

#include <algorithm>
#include <iterator>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "policies/badness.hpp"

namespace oomguard::guardian::daemon {
namespace {

constexpr size_t kPredictionHistory = 32;

}  // namespace

Rankings::Rankings(io::Node& node, const config::Config& config, DaemonStats& stats, const Clock& clock,
                   OnRecord on_record)
    : node_(node),
      config_(config),
      stats_(stats),
      clock_(clock),
      on_record_(std::move(on_record)),
      growth_(static_cast<uint64_t>(config.trend_window_s * 1e6)) {}

size_t Rankings::keep() const {
  return std::max({config_.rescan_candidates, config_.log_candidates, config_.metrics_top_k});
}

policies::VictimCandidate Rankings::candidateOf(const cgroupfs::ProcessSnapshot& process,
                                                const policies::Candidate& ranked, std::string cgroup) {
  policies::VictimCandidate candidate;
  candidate.pid = process.pid;
  candidate.comm = process.status.comm;
  candidate.uid = process.status.uid;
  candidate.cgroup = std::move(cgroup);
  candidate.points = ranked.points;
  candidate.oom_score_adj = process.oom_score_adj;
  candidate.oom_score = ranked.oom_score;
  return candidate;
}

void Rankings::record(DomainState& state, std::vector<policies::VictimCandidate> top, uint64_t at_us,
                      const cgroupfs::ReadCounters& counters) {
  state.unread = counters.firstFailure();
  const std::optional<policies::VictimCandidate> victim =
      top.empty() ? std::nullopt : std::optional<policies::VictimCandidate>(top.front());
  const bool changed = state.history.empty() || state.history.back().victim.has_value() != victim.has_value() ||
                       (victim && state.history.back().victim->pid != victim->pid);
  state.top = std::move(top);
  if (changed) {
    // Otherwise the prediction in force stays the newest entry: steady state allocates nothing here.
    if (state.history.size() >= kPredictionHistory) {
      state.history.erase(state.history.begin());
    }
    state.history.push_back(Prediction{at_us, victim});
  }
  on_record_(state, changed);
}

bool Rankings::tracksGrowth() const {
  return (config_.host_act && config_.host_act->action == policies::Action::kKillAllocating) ||
         std::any_of(config_.cgroups.begin(), config_.cgroups.end(), [](const config::CgroupRule& rule) {
           return rule.act && rule.act->action == policies::Action::kKillAllocating;
         });
}

namespace {

long chargePages(const cgroupfs::ProcessSnapshot& process, const io::NodeFacts& facts) {
  const auto& st = process.status;
  return static_cast<long>(st.rss_anon_kb + st.rss_file_kb + st.rss_shmem_kb + st.swap_kb) /
         static_cast<long>(facts.page_size_bytes / 1024);
}

}  // namespace

void Rankings::sampleOne(const cgroupfs::ProcessSnapshot& process, const io::NodeFacts& facts, uint64_t now_us,
                         uint64_t listed_us, const std::vector<pid_t>& listed_pids) {
  if (!growth_.lastSampleUs(process.pid) && listed_us > 0 && listed_us < now_us &&
      !std::binary_search(listed_pids.begin(), listed_pids.end(), process.pid)) {
    growth_.sample(process.pid, listed_us, 0);  // not there at the listing before: it held nothing then
  }
  growth_.sample(process.pid, now_us, chargePages(process, facts));
}

void Rankings::sampleGrowth(const std::vector<cgroupfs::ProcessSnapshot>& processes, const io::NodeFacts& facts,
                            uint64_t now_us) {
  if (!tracksGrowth()) {
    return;
  }
  // At most one decision-time sample per process every kMinSampleGapUs: decisions under pressure come
  // every few milliseconds, and each sample is kept for the trend window. A process with a single
  // sample (first seen by the refresh just before) is sampled anyway: one sample is no growth at all.
  constexpr uint64_t kMinSampleGapUs = 100'000;
  for (const auto& process : processes) {
    const auto last = growth_.lastSampleUs(process.pid);
    if (!process.status.has_mm || (last && *last + kMinSampleGapUs > now_us && growth_.growth(process.pid))) {
      continue;
    }
    sampleOne(process, facts, now_us, refreshed_us_, refreshed_pids_);
  }
}

namespace {

// What the ranking and the growth read of a process: its charge, its oom_score_adj and its name.
bool sameAsBefore(const cgroupfs::ProcessSnapshot& before, const cgroupfs::ProcessSnapshot& now) {
  const auto& a = before.status;
  const auto& b = now.status;
  return before.oom_score_adj == now.oom_score_adj && a.has_mm == b.has_mm && a.rss_anon_kb == b.rss_anon_kb &&
         a.rss_file_kb == b.rss_file_kb && a.rss_shmem_kb == b.rss_shmem_kb && a.swap_kb == b.swap_kb &&
         a.pgtables_kb == b.pgtables_kb && a.comm == b.comm;
}

}  // namespace

std::vector<cgroupfs::ProcessSnapshot> Rankings::readHost(cgroupfs::ReadCounters& counters, std::vector<bool>& fresh,
                                                          std::vector<pid_t>& newcomers) {
  ++refreshes_;
  std::vector<cgroupfs::ProcessSnapshot> processes;
  auto listed = node_.procfs().listPidEntries();
  if (!listed) {
    counters.record(listed.error());
    records_.clear();
    return processes;
  }
  auto& entries = listed.value();
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
  processes.reserve(entries.size());
  fresh.reserve(entries.size());
  std::unordered_map<pid_t, ProcessRecord> records;
  records.reserve(entries.size());
  for (const auto& entry : entries) {
    const auto known = records_.find(entry.pid);
    const auto cached = scan_.by_pid.find(entry.pid);
    const bool same_process =
        known != records_.end() && cached != scan_.by_pid.end() && known->second.inode == entry.inode;
    if (same_process && known->second.quiet_reads >= kQuietReads && entries.size() <= kMaxEveryProcess &&
        (refreshes_ + static_cast<uint64_t>(entry.pid)) % kQuietEvery != 0) {
      processes.push_back(std::move(scan_.processes[cached->second]));
      processes.back().cgroup.reset();  // where it is now is read when it matters (ensureCgroup)
      fresh.push_back(false);
      records.emplace(entry.pid, known->second);
      continue;
    }
    if (!same_process) {
      newcomers.push_back(entry.pid);
      if (known != records_.end()) {
        // Another inode: a recycled pid, or the same process whose dentry the kernel dropped under memory
        // pressure (just when kill-allocating needs its samples). Started after the last refresh began:
        // another process, and the old one's samples are not its own.
        const auto started = node_.procfs().readStartTimeTicks(entry.pid);
        if (!started || started.value() >= scan_.read_boot_ticks) {
          growth_.forget(entry.pid);
        }
      }
    }
    auto process = node_.procfs().readProcess(entry.pid, false);
    if (!process) {
      counters.record(process.error());
      continue;
    }
    ProcessRecord record{entry.inode, 0};
    if (same_process && sameAsBefore(scan_.processes[cached->second], process.value())) {
      record.quiet_reads = known->second.quiet_reads + 1;
    }
    records.emplace(entry.pid, record);
    processes.push_back(std::move(process).value());
    fresh.push_back(true);
  }
  records_ = std::move(records);
  return processes;
}

void Rankings::readMembership(const std::vector<const std::string*>& members, const std::vector<pid_t>& newcomers) {
  // A newcomer is placed at its first two refreshes: a child is forked where its parent is and then
  // moved (hog -g, a container runtime's init), and the first look may come between the two.
  std::vector<pid_t> placing;
  placing.reserve(newcomers.size() + previous_newcomers_.size());
  std::set_union(newcomers.begin(), newcomers.end(), previous_newcomers_.begin(), previous_newcomers_.end(),
                 std::back_inserter(placing));
  previous_newcomers_ = newcomers;
  // Placing a newcomer costs about what reading a cgroup's procs does: past one per member cgroup, read
  // them all.
  bool full = refreshes_ % kQuietEvery == 1 || placing.size() > members.size();
  std::unordered_map<std::string, std::vector<pid_t>> placed;
  for (size_t i = 0; !full && i < placing.size(); ++i) {
    if (auto path = node_.readCgroupPath(placing[i])) {
      placed[std::move(path).value()].push_back(placing[i]);
    } else if (!path.error().vanished()) {
      full = true;  // not placed (no place in the tree, or unread): the procs are read instead
    }
  }
  // Updated in place (a member's path is copied once, when it first appears); what is no longer a
  // member is dropped at the end.
  ++membership_scan_;
  for (const std::string* member : members) {
    auto [entry, added] = membership_.try_emplace(*member);
    Membership& membership = entry->second;
    if (membership.scan == membership_scan_) {
      continue;  // a cgroup in nested domains: read once
    }
    membership.scan = membership_scan_;
    if (!full && !added) {
      // A newcomer under a recycled pid is not the process listed here before: it is placed anew.
      std::erase_if(membership.pids,
                    [&](pid_t pid) { return std::binary_search(placing.begin(), placing.end(), pid); });
      if (const auto found = placed.find(*member); found != placed.end()) {
        membership.pids.insert(membership.pids.end(), found->second.begin(), found->second.end());
      }
      continue;
    }
    membership.pids.clear();
    if (auto text = node_.cgroupfs().readText(*member, cgroupfs::files::kProcs)) {
      if (auto parsed = cgroupfs::parsePidList(text.value())) {
        membership.pids = std::move(parsed).value();
      }
    }
  }
  std::erase_if(membership_, [&](const auto& entry) { return entry.second.scan != membership_scan_; });
}

const HostScan& Rankings::refresh(const io::NodeFacts& facts, const WatchSet& watch_set,
                                  const std::vector<std::string>& limited) {
  const uint64_t now_us = clock_.monotonic_us();
  const uint64_t read_boot_ticks = clock_.boot_ticks();
  const uint64_t previous_us = refreshed_us_;
  refreshed_us_ = now_us;
  const size_t keep_count = keep();
  // Every process listed, the quiet ones taken from the last refresh; the host ranked from that.
  cgroupfs::ReadCounters counters;
  std::vector<bool> fresh;
  std::vector<pid_t> newcomers;
  auto host = node_.rankHostFrom(facts, readHost(counters, fresh, newcomers));
  stats_.read_errors += counters.malformed + counters.failed;
  std::vector<pid_t> previous_pids = std::move(refreshed_pids_);
  refreshed_pids_.clear();
  for (const auto& process : host.processes) {
    refreshed_pids_.push_back(process.pid);  // sorted: rankHost reads the host in pid order
  }
  {
    std::vector<policies::VictimCandidate> top;
    for (const auto& candidate : host.candidates) {
      if (!candidate.killable || top.size() >= keep_count) {
        break;
      }
      auto& process = host.processes[candidate.scan_index];
      node_.ensureCgroup(process);
      top.push_back(candidateOf(process, candidate, process.cgroup.value_or("")));
    }
    auto& state = domains_["/"];
    state.domain = host.domain;
    record(state, std::move(top), clock_.monotonic_us(), counters);  // stamped once its data is read
  }
  scan_ = HostScan{std::move(host.processes), std::move(fresh), {}, read_boot_ticks};
  HostScan& scan = scan_;
  scan.by_pid.reserve(scan.processes.size());
  for (size_t i = 0; i < scan.processes.size(); ++i) {
    scan.by_pid[scan.processes[i].pid] = i;
  }
  if (tracksGrowth()) {
    trackGrowth(facts, scan, now_us, previous_us, previous_pids);
  }
  // Each limited cgroup ranked from the same process reads, its members from cgroup.procs of its
  // subtree (read once per refresh, however many domains nest). The tree is the watch set, kept by
  // inotify; tasks are taken in pid order here (the decision path re-reads in the kernel's scan order).
  struct Limited {
    const std::string& path;
    const WatchedCgroup* watched;
    std::vector<const std::string*> subtree;  // keys of the watch set, unchanged during the refresh
  };
  std::vector<Limited> limited_domains;
  std::vector<const std::string*> member_cgroups;
  for (const auto& path : limited) {
    const WatchedCgroup* watched = watch_set.find(path);
    if (watched != nullptr && watched->memory_max_bytes) {
      limited_domains.push_back(Limited{path, watched, watch_set.subtreeOf(path)});
      member_cgroups.insert(member_cgroups.end(), limited_domains.back().subtree.begin(),
                            limited_domains.back().subtree.end());
    }
  }
  readMembership(member_cgroups, newcomers);
  for (const auto& [path, watched, subtree] : limited_domains) {
    std::vector<cgroupfs::ProcessSnapshot> members;
    for (const std::string* member : subtree) {
      for (const pid_t pid : membership_[*member].pids) {
        if (const auto found = scan.by_pid.find(pid); found != scan.by_pid.end()) {
          members.push_back(scan.processes[found->second]);
          members.back().cgroup = *member;
        }
      }
    }
    std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.pid < b.pid; });
    const policies::OomDomain domain{
        policies::DomainKind::kMemcg, path,
        policies::memcgTotalPages(*watched->memory_max_bytes, watched->swap_max_bytes, facts.meminfo.swap_total_kb * 1024,
                                  facts.vm_swappiness, facts.page_size_bytes)};
    const auto ranked =
        policies::rankDomain({members, domain.totalpages, facts.host_totalpages, facts.kernel, facts.page_size_bytes});
    // The first keep_count killable ones (the unkillable come last in `ranked`), kept with the domain:
    // reserved to size, no spare capacity.
    const auto unkillable = std::find_if(ranked.begin(), ranked.end(), [](const auto& c) { return !c.killable; });
    const size_t kept = std::min(keep_count, static_cast<size_t>(unkillable - ranked.begin()));
    std::vector<policies::VictimCandidate> top;
    top.reserve(kept);
    for (size_t i = 0; i < kept; ++i) {
      const auto& process = members[ranked[i].scan_index];
      top.push_back(candidateOf(process, ranked[i], process.cgroup.value_or("")));
    }
    auto& state = domains_[path];
    state.domain = domain;
    record(state, std::move(top), clock_.monotonic_us(), cgroupfs::ReadCounters{});  // stamped once its data is read
  }
  return scan;
}

void Rankings::trackGrowth(const io::NodeFacts& facts, HostScan& scan, uint64_t now_us, uint64_t previous_us,
                           const std::vector<pid_t>& previous_pids) {
  // Growth over the trend window (kill-allocating): each process's charge in pages, sampled at every
  // refresh; the host's fastest growers are kept with the host's domain.
  // (growth in pages, index in scan.processes) of each process growing now: 16 bytes each, not a whole
  // candidate (a host whose every process grew, as at start-up, held one for each).
  std::vector<std::pair<long, size_t>> growing;
  for (size_t i = 0; i < scan.processes.size(); ++i) {
    const auto& process = scan.processes[i];
    // A quiet one is sampled as last read (it was unchanged three reads in a row): its samples must
    // outlive the trend window, or a quiet process that starts to leak would have no growth at all.
    sampleOne(process, facts, now_us, previous_us, previous_pids);
    if (const auto grew = growth_.growth(process.pid);
        grew && *grew > 0 && process.status.has_mm && growth_.growingNow(process.pid)) {
      growing.emplace_back(*grew, i);
    }
  }
  growth_.forgetOlderThan(now_us - std::min(now_us, static_cast<uint64_t>(2 * config_.trend_window_s * 1e6)));
  // The fastest first; equal growth in pid order (the scan's).
  const auto kept = static_cast<std::ptrdiff_t>(std::min(growing.size(), keep()));
  std::partial_sort(growing.begin(), growing.begin() + kept, growing.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<policies::VictimCandidate> growers(static_cast<size_t>(kept));
  for (size_t k = 0; k < growers.size(); ++k) {
    auto& process = scan.processes[growing[k].second];
    auto& grower = growers[k];
    grower.pid = process.pid;
    grower.comm = process.status.comm;
    grower.uid = process.status.uid;
    grower.oom_score_adj = process.oom_score_adj;
    grower.growth_pages = growing[k].first;
    node_.ensureCgroup(process);
    grower.cgroup = process.cgroup.value_or("");
    grower.points = policies::oomBadness(process, facts.host_totalpages, facts.page_size_bytes);
  }
  domains_["/"].growers = std::move(growers);
}

void Rankings::rerankHost(const io::NodeFacts& facts, HostReread reread) {
  last_host_read_ = reread;
  auto found = domains_.find("/");
  if (found == domains_.end()) {
    return;
  }
  auto& state = found->second;
  cgroupfs::ReadCounters counters;
  std::vector<pid_t> pids;
  auto listed = node_.procfs().listPids();
  if (!listed) {
    counters.record(listed.error());
  }
  if (reread == HostReread::kEveryProcess && listed && listed.value().size() <= kMaxEveryProcess) {
    pids = std::move(listed).value();
  } else {
    // The candidates the background ranking found on top, and every process that appeared since that
    // ranking (the typical fast leaker started after it): a /proc listing and a few reads.
    const size_t count = std::min(config_.rescan_candidates, state.top.size());
    for (size_t i = 0; i < count; ++i) {
      pids.push_back(state.top[i].pid);
    }
    std::vector<pid_t> newcomers;
    if (listed) {
      for (const pid_t pid : listed.value()) {
        if (!std::binary_search(refreshed_pids_.begin(), refreshed_pids_.end(), pid)) {
          newcomers.push_back(pid);
        }
      }
    }
    // Bounded, so that a fork storm cannot stall the reaction: the highest pids (the newest, but for a
    // wrap of pid_max) first. /proc lists in pid order; sorted anyway, the contract being the pids'.
    constexpr size_t kMaxNewcomers = 2000;
    if (newcomers.size() > kMaxNewcomers) {
      std::sort(newcomers.begin(), newcomers.end());
    }
    const size_t skip = newcomers.size() > kMaxNewcomers ? newcomers.size() - kMaxNewcomers : 0;
    pids.insert(pids.end(), newcomers.begin() + static_cast<std::ptrdiff_t>(skip), newcomers.end());
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  auto processes = node_.procfs().readProcesses(pids, false, counters);
  node_.overlayIntendedAdj(processes);
  sampleGrowth(processes, facts, clock_.monotonic_us());
  stats_.read_errors += counters.malformed + counters.failed;
  const auto ranked = policies::rankDomain(
      {processes, state.domain.totalpages, facts.host_totalpages, facts.kernel, facts.page_size_bytes});
  std::vector<policies::VictimCandidate> top;
  for (const auto& candidate : ranked) {
    if (!candidate.killable) {
      break;
    }
    const auto& process = processes[candidate.scan_index];
    const auto previous = std::find_if(state.top.begin(), state.top.end(),
                                       [&](const policies::VictimCandidate& c) { return c.pid == process.pid; });
    std::string cgroup = previous != state.top.end() ? previous->cgroup : "";
    if (cgroup.empty()) {
      // A newcomer to the top: where it is decides its protections (and a kill may reach down to it,
      // the ones above it protected). One whose place is unknown is never killed (place_unknown).
      if (auto path = node_.readCgroupPath(process.pid)) {
        cgroup = std::move(path).value();
      } else if (!path.error().vanished()) {
        counters.record(path.error());  // unread or unplaced, not gone: the ranking is not whole
      }
    }
    top.push_back(candidateOf(process, candidate, std::move(cgroup)));
    if (top.size() >= keep()) {
      break;
    }
  }
  record(state, std::move(top), clock_.monotonic_us(), counters);
}

cgroupfs::Result<DomainState*> Rankings::rerankMemcg(const io::NodeFacts& facts, const std::string& cgroup) {
  auto ranking = node_.rankMemcg(facts, cgroup);
  if (!ranking) {
    return ranking.error();
  }
  sampleGrowth(ranking.value().processes, facts, clock_.monotonic_us());
  auto& state = domains_[cgroup];
  state.domain = ranking.value().domain;
  std::vector<policies::VictimCandidate> top;
  for (const auto& candidate : ranking.value().candidates) {
    if (!candidate.killable) {
      break;
    }
    const auto& process = ranking.value().processOf(candidate);
    top.push_back(candidateOf(process, candidate, process.cgroup.value_or("")));
  }
  record(state, std::move(top), clock_.monotonic_us(), ranking.value().counters);
  return &state;
}

DomainState* Rankings::find(const std::string& domain) {
  const auto found = domains_.find(domain);
  return found == domains_.end() ? nullptr : &found->second;
}

bool Rankings::forget(const std::string& domain) { return domains_.erase(domain) > 0; }

std::optional<std::optional<policies::VictimCandidate>> Rankings::predictionBefore(const std::string& domain,
                                                                                   int64_t at_us) const {
  const auto found = domains_.find(domain);
  if (found == domains_.end()) {
    return std::nullopt;
  }
  for (auto it = found->second.history.rbegin(); it != found->second.history.rend(); ++it) {
    if (static_cast<int64_t>(it->at_us) <= at_us) {
      return it->victim;
    }
  }
  return std::nullopt;
}

}  // namespace oomguard::guardian::daemon
