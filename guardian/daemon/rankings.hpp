// The ranking of every OOM domain as the kernel would order it (the host, and each cgroup with a finite
// memory.max), the history of each domain's predicted victim, and the host's charge growth. The refresh
// builds all of them from one read of /proc; a decision re-ranks only its own domain (on the host, every
// process when it may kill, else the top candidates and the processes that appeared since the refresh).
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cgroupfs/result.hpp"
#include "guardian/config/config.hpp"
#include "guardian/daemon/context.hpp"
#include "guardian/daemon/watch_set.hpp"
#include "guardian/io/node.hpp"
#include "policies/act.hpp"
#include "policies/ranking.hpp"

namespace oomguard::guardian::daemon {

// A change of a domain's predicted victim.
struct Prediction {
  uint64_t at_us = 0;
  std::optional<policies::VictimCandidate> victim;
};

struct DomainState {
  policies::OomDomain domain;
  std::vector<policies::VictimCandidate> top;      // the kernel's order, highest first
  std::vector<policies::VictimCandidate> growers;  // the host's fastest growers at the last refresh
  // The last ranking's first read that failed for a reason other than a process or cgroup that
  // vanished (EACCES, a malformed file, no descriptor left): it may miss a candidate, even the
  // kernel's first, so no kill rests on it. nullopt: every read succeeded.
  std::optional<cgroupfs::Error> unread;
  // Each change of the predicted victim, newest last, at most kPredictionHistory (a vector: a deque's
  // first block alone is 512 bytes, times hundreds of domains).
  std::vector<Prediction> history;
};

// What one refresh knows of the host: every process listed, and where each is in that list.
struct HostScan {
  std::vector<cgroupfs::ProcessSnapshot> processes;
  // fresh[i]: processes[i] was read by this refresh; else it is a quiet process as an earlier refresh
  // read it (see Rankings::readHost). Empty: every one was read now.
  std::vector<bool> fresh;
  std::unordered_map<pid_t, size_t> by_pid;
  // The boot-clock tick the scan started at: a process that started later holds a recycled pid.
  uint64_t read_boot_ticks = 0;

  [[nodiscard]] bool readNow(size_t index) const { return index >= fresh.size() || fresh[index]; }
};

class Rankings {
 public:
  // readHost's quiet processes: after kQuietReads unchanged reads, read at one refresh in kQuietEvery.
  static constexpr uint32_t kQuietReads = 2;
  static constexpr uint64_t kQuietEvery = 6;
  // A host decision that may kill reads every process up to this many: 10,000 take about 0.1 s here
  // (9-11 us each, bench/host_ranking), the most a reaction may spend on them. A host with more is read
  // whole at every refresh (no quiet processes), since its decisions rest on the refresh's top.
  static constexpr size_t kMaxEveryProcess = 10'000;
  // Called whenever a domain's top is replaced; `changed`: the predicted victim changed.
  using OnRecord = std::function<void(const DomainState& state, bool changed)>;

  Rankings(io::Node& node, const config::Config& config, DaemonStats& stats, const Clock& clock, OnRecord on_record);

  // The refresh: the host ranked from one read of every process, each limited cgroup of `limited` from
  // the same reads (its members from cgroup.procs of its subtree), and, when a rule acts on growth
  // (kill-allocating), each process's charge growth. Returns what it knows of each process, for the
  // protections (valid until the next refresh).
  const HostScan& refresh(const io::NodeFacts& facts, const WatchSet& watch_set, const std::vector<std::string>& limited);

  // What a host decision reads.
  enum class HostReread {
    // The top candidates of the last refresh, and every process that appeared since (bounded): a
    // decision that cannot kill (observe mode, or a victim holds the host) only logs its prediction.
    kTopAndNewcomers,
    // Every process, as the kernel's select_bad_process does: a decision that may kill must see a process
    // that has grown past the refresh's top since (an old process that starts to leak is not a
    // newcomer). Past kMaxEveryProcess processes it falls back to kTopAndNewcomers.
    kEveryProcess,
  };
  // The decision path. The host: as `reread` says. A memcg: its tasks read now, in the kernel's scan
  // order; an error when the cgroup cannot be read. Each records the new top (the prediction in force
  // from now).
  void rerankHost(const io::NodeFacts& facts, HostReread reread);
  // What the last rerankHost was asked to read.
  [[nodiscard]] HostReread lastHostRead() const { return last_host_read_; }
  cgroupfs::Result<DomainState*> rerankMemcg(const io::NodeFacts& facts, const std::string& cgroup);

  [[nodiscard]] DomainState* find(const std::string& domain);
  [[nodiscard]] const std::map<std::string, DomainState>& all() const { return domains_; }
  // The domain is gone; returns whether it was known.
  bool forget(const std::string& domain);
  // The victim predicted for `domain` before `at_us` (on the monotonic clock): nullopt when there was no
  // prediction yet; an inner nullopt when the prediction was "no candidate".
  [[nodiscard]] std::optional<std::optional<policies::VictimCandidate>> predictionBefore(const std::string& domain,
                                                                                         int64_t at_us) const;
  [[nodiscard]] const policies::GrowthTracker& growth() const { return growth_; }

 private:
  // How many candidates each domain keeps: enough for the rescan, the log and the metrics.
  [[nodiscard]] size_t keep() const;
  // `counters`: the reads the new top rests on (their first failure becomes state.unread).
  void record(DomainState& state, std::vector<policies::VictimCandidate> top, uint64_t at_us,
              const cgroupfs::ReadCounters& counters);
  static policies::VictimCandidate candidateOf(const cgroupfs::ProcessSnapshot& process,
                                               const policies::Candidate& ranked, std::string cgroup);
  // The refresh's growth samples, every process read; `previous_us`/`previous_pids` are the refresh
  // before this one (a process not in it is sampled as sampleOne says).
  void trackGrowth(const io::NodeFacts& facts, HostScan& scan, uint64_t now_us, uint64_t previous_us,
                   const std::vector<pid_t>& previous_pids);
  // One growth sample of `process` at `now_us`. A process never sampled that was not in the listing
  // taken at `listed_us` (`listed_pids`, sorted) started after it and held nothing then: it gets a
  // sample of 0 pages at `listed_us`, so its growth is its whole charge from its first reading on (the
  // typical fast leaker is younger than a refresh interval). Same rule at a refresh and at a decision.
  void sampleOne(const cgroupfs::ProcessSnapshot& process, const io::NodeFacts& facts, uint64_t now_us,
                 uint64_t listed_us, const std::vector<pid_t>& listed_pids);
  // Every process listed, in pid order: read now, or, for a quiet one, taken from the last refresh. A
  // process is quiet once kQuietReads reads in a row found its charge, oom_score_adj and name unchanged,
  // under the same /proc inode (the same process); a quiet one is read at one refresh in kQuietEvery
  // (spread by pid), and as soon as a read finds it changed it is read at every refresh again. On an idle
  // node that is most processes: the refresh reads about a sixth of them. What this costs: the
  // background ranking can see a quiet process start to grow up to kQuietEvery refreshes late (30 s at
  // the default interval). No kill depends on it: a decision re-reads its domain (rerankHost,
  // rerankMemcg), and on a host past kMaxEveryProcess every process is read at every refresh. A quiet
  // process's cgroup is not carried over (it may have moved): it is read again where it is needed.
  // `newcomers`: the pids listed now that were not the same process at the last refresh, in pid order.
  std::vector<cgroupfs::ProcessSnapshot> readHost(cgroupfs::ReadCounters& counters, std::vector<bool>& fresh,
                                                  std::vector<pid_t>& newcomers);
  // The members of the limited cgroups `members` (each read once, however many domains nest), by
  // cgroup. Their cgroup.procs are read at one refresh in kQuietEvery, and for a cgroup not known
  // before; in between, the last membership stands, a newcomer is placed by its /proc/<pid>/cgroup at
  // its first two refreshes (one small read each: far fewer than the cgroups on a quiet node; the second
  // finds a child moved after its fork), and a gone process drops out when the members are matched to
  // the scan. A process moved between cgroups later is seen at the next full read (a decision reads its
  // domain's membership anew).
  void readMembership(const std::vector<const std::string*>& members, const std::vector<pid_t>& newcomers);
  // Whether a rule of the config in force acts on growth (kill-allocating): only then is it sampled.
  [[nodiscard]] bool tracksGrowth() const;
  // The decision path's growth samples: each process read now; one that appeared since the last refresh
  // (not in refreshed_pids_) held nothing then, so its growth is its whole charge.
  void sampleGrowth(const std::vector<cgroupfs::ProcessSnapshot>& processes, const io::NodeFacts& facts, uint64_t now_us);

  io::Node& node_;
  const config::Config& config_;
  DaemonStats& stats_;
  const Clock& clock_;
  OnRecord on_record_;
  std::map<std::string, DomainState> domains_;  // "/" is the host
  // The pids the last refresh read, sorted: a host decision also reads every pid not among them.
  std::vector<pid_t> refreshed_pids_;
  uint64_t refreshed_us_ = 0;  // when the last refresh read them
  // readHost's memory of each process listed at the last refresh.
  struct ProcessRecord {
    uint64_t inode = 0;         // of /proc/<pid>: another inode is another process
    uint32_t quiet_reads = 0;   // reads in a row that found it unchanged
  };
  std::unordered_map<pid_t, ProcessRecord> records_;
  HostScan scan_;  // the last refresh's
  struct Membership {
    std::vector<pid_t> pids;
    uint64_t scan = 0;  // the readMembership call that last listed it (membership_scan_)
  };
  std::unordered_map<std::string, Membership> membership_;  // readMembership's, by cgroup
  uint64_t membership_scan_ = 0;
  std::vector<pid_t> previous_newcomers_;  // the last readMembership's newcomers, placed again by the next
  uint64_t refreshes_ = 0;
  HostReread last_host_read_ = HostReread::kTopAndNewcomers;
  policies::GrowthTracker growth_;
};

}  // namespace oomguard::guardian::daemon
