#include "guardian/daemon/rankings.hpp"

#include <algorithm>

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
  candidate.cgroup = std::move(cgroup);
  candidate.points = ranked.points;
  candidate.oom_score_adj = process.oom_score_adj;
  candidate.oom_score = ranked.oom_score;
  return candidate;
}

void Rankings::record(DomainState& state, std::vector<policies::VictimCandidate> top, uint64_t at_us) {
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

HostScan Rankings::refresh(const io::NodeFacts& facts, const WatchSet& watch_set,
                           const std::vector<std::string>& limited) {
  const uint64_t now_us = clock_.monotonic_us();
  const uint64_t read_boot_ticks = clock_.boot_ticks();
  const uint64_t previous_us = refreshed_us_;
  refreshed_us_ = now_us;
  const size_t keep_count = keep();
  // Every process read once; the host ranked from that.
  auto host = node_.rankHost(facts, false);
  stats_.read_errors += host.counters.malformed + host.counters.failed;
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
    record(state, std::move(top), clock_.monotonic_us());  // stamped once its data is read
  }
  HostScan scan{std::move(host.processes), {}, read_boot_ticks};
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
  std::unordered_map<std::string, std::vector<pid_t>> procs;
  for (const auto& path : limited) {
    const WatchedCgroup* watched = watch_set.find(path);
    if (watched == nullptr || !watched->memory_max_bytes) {
      continue;
    }
    std::vector<cgroupfs::ProcessSnapshot> members;
    for (const auto& member : watch_set.subtreeOf(path)) {
      auto cached = procs.find(member);
      if (cached == procs.end()) {
        std::vector<pid_t> pids;
        if (auto text = node_.cgroupfs().readText(member, cgroupfs::files::kProcs)) {
          if (auto parsed = cgroupfs::parsePidList(text.value())) {
            pids = std::move(parsed).value();
          }
        }
        cached = procs.emplace(member, std::move(pids)).first;
      }
      for (const pid_t pid : cached->second) {
        if (const auto found = scan.by_pid.find(pid); found != scan.by_pid.end()) {
          members.push_back(scan.processes[found->second]);
          members.back().cgroup = member;
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
    std::vector<policies::VictimCandidate> top;
    for (const auto& candidate : ranked) {
      if (!candidate.killable || top.size() >= keep_count) {
        break;
      }
      const auto& process = members[candidate.scan_index];
      top.push_back(candidateOf(process, candidate, process.cgroup.value_or("")));
    }
    auto& state = domains_[path];
    state.domain = domain;
    record(state, std::move(top), clock_.monotonic_us());  // stamped once its data is read
  }
  return scan;
}

void Rankings::trackGrowth(const io::NodeFacts& facts, HostScan& scan, uint64_t now_us, uint64_t previous_us,
                           const std::vector<pid_t>& previous_pids) {
  // Growth over the trend window (kill-allocating): each process's charge in pages, sampled at every
  // refresh; the host's fastest growers are kept with the host's domain.
  std::vector<policies::VictimCandidate> growers;
  for (const auto& process : scan.processes) {
    sampleOne(process, facts, now_us, previous_us, previous_pids);
    if (const auto grew = growth_.growth(process.pid);
        grew && *grew > 0 && process.status.has_mm && growth_.growingNow(process.pid)) {
      policies::VictimCandidate grower;
      grower.pid = process.pid;
      grower.comm = process.status.comm;
      grower.oom_score_adj = process.oom_score_adj;
      grower.growth_pages = *grew;
      growers.push_back(std::move(grower));
    }
  }
  growth_.forgetOlderThan(now_us - std::min(now_us, static_cast<uint64_t>(2 * config_.trend_window_s * 1e6)));
  std::sort(growers.begin(), growers.end(), [](const auto& a, const auto& b) { return *a.growth_pages > *b.growth_pages; });
  growers.resize(std::min(growers.size(), keep()));
  for (auto& grower : growers) {
    auto& process = scan.processes[scan.by_pid[grower.pid]];
    node_.ensureCgroup(process);
    grower.cgroup = process.cgroup.value_or("");
    grower.points = policies::oomBadness(process, facts.host_totalpages, facts.page_size_bytes);
  }
  domains_["/"].growers = std::move(growers);
}

void Rankings::rerankHost(const io::NodeFacts& facts, HostReread reread) {
  auto found = domains_.find("/");
  if (found == domains_.end()) {
    return;
  }
  auto& state = found->second;
  cgroupfs::ReadCounters counters;
  std::vector<pid_t> pids;
  auto listed = node_.procfs().listPids();
  // Every process: 10,000 take about 0.1 s here (9 us each, bench/host_ranking), the most a reaction
  // may spend on them; a host with more is read as below.
  constexpr size_t kMaxEveryProcess = 10'000;
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
    // wrap of pid_max) first.
    constexpr size_t kMaxNewcomers = 2000;
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
    if (previous == state.top.end() && top.size() < config_.rescan_candidates) {
      // A newcomer near the top: where it is matters for protections and logs.
      if (auto path = node_.procfs().readCgroupPath(process.pid)) {
        cgroup = std::move(path).value();
      }
    }
    top.push_back(candidateOf(process, candidate, std::move(cgroup)));
    if (top.size() >= keep()) {
      break;
    }
  }
  record(state, std::move(top), clock_.monotonic_us());
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
  record(state, std::move(top), clock_.monotonic_us());
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
