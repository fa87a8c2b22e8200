// One node as the commands see it: the roots to read, the facts every OOM domain needs, and the
// rankings of its domains, built from cgroupfs snapshots with the pure model in policies/.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cgroupfs/cgroup_tree.hpp"
#include "cgroupfs/procfs.hpp"
#include "guardian/io/fd_budget.hpp"
#include "policies/ranking.hpp"

namespace oomguard::guardian::io {

struct NodeFacts {
  cgroupfs::KernelVersion kernel;
  cgroupfs::MemInfo meminfo;
  long vm_swappiness = 60;
  bool swappiness_known = false;
  uint64_t page_size_bytes = 4096;
  uint64_t host_totalpages = 0;
};

// One ranked OOM domain. `candidates[i].scan_index` indexes `processes`.
struct DomainRanking {
  policies::OomDomain domain;
  std::vector<cgroupfs::ProcessSnapshot> processes;
  std::vector<policies::Candidate> candidates;
  cgroupfs::ReadCounters counters;

  [[nodiscard]] const cgroupfs::ProcessSnapshot& processOf(const policies::Candidate& candidate) const {
    return processes[candidate.scan_index];
  }
};

class Node {
 public:
  Node(std::string proc_root, std::string cgroup_root);

  cgroupfs::ProcFs& procfs() { return procfs_; }
  // The descriptors the PSI triggers of the node's cgroups (WatchSet's, Pods') may hold together: set from
  // the open-file limit at the daemon's start (unbounded until then).
  FdBudget& triggerBudget() { return trigger_budget_; }
  cgroupfs::CgroupFs& cgroupfs() { return cgroupfs_; }
  // The page size (sysconf, once): the one source for every page-to-byte conversion the daemon makes
  // (NodeFacts::page_size_bytes, /proc/vmstat's page counts, memory.high on a page boundary).
  [[nodiscard]] uint64_t pageBytes() const { return page_bytes_; }

  cgroupfs::Result<NodeFacts> readFacts();
  // Every process of the host, in pid order (the kernel scans in fork order; pids approximate it);
  // `with_oom_scores`: each with the kernel's oom_score too, read through the same handle.
  DomainRanking rankHost(const NodeFacts& facts, bool with_cgroups, bool with_oom_scores = false);
  // The host ranked from `processes` as given (read by the caller, in pid order).
  DomainRanking rankHostFrom(const NodeFacts& facts, std::vector<cgroupfs::ProcessSnapshot> processes) const;
  // The tasks of `cgroup` and its descendants, in the kernel's memcg scan order. Fails when the cgroup
  // cannot be read or has no finite memory.max (then it is not an OOM domain).
  cgroupfs::Result<DomainRanking> rankMemcg(const NodeFacts& facts, std::string_view cgroup);
  // The tasks of `cgroup`'s subtree ranked in the host's scale (totalpages = the host's): for choosing
  // within one workload that is not itself an OOM domain (a pod's pressure limit).
  cgroupfs::Result<DomainRanking> rankSubtreeOnHostScale(const NodeFacts& facts, std::string_view cgroup);
  // Each cgroup with a finite memory.max, in tree pre-order.
  std::vector<policies::OomDomain> listMemcgDomains(const NodeFacts& facts, cgroupfs::ReadCounters& counters);

  // --dry-run decides exactly as act mode would: the oom_score_adj it would have written (pid -> adj)
  // stands in for the one /proc shows, in every ranking this Node makes from then on. nullptr: none.
  // The map is the caller's and must outlive the Node's use of it.
  void useIntendedAdj(const std::unordered_map<pid_t, int>* intended) { intended_adj_ = intended; }
  void overlayIntendedAdj(std::vector<cgroupfs::ProcessSnapshot>& processes) const;

  // Fills in the cgroup of a process of `ranking` when it was not read yet (vanished: left empty): from
  // the tree's index when there is one, else from /proc/<pid>/cgroup (readCgroupPath).
  void ensureCgroup(cgroupfs::ProcessSnapshot& process);
  // Where `pid`'s cgroup is, as a path of the tree under --cgroup-root. /proc/<pid>/cgroup names it
  // relative to the reader's cgroup namespace: inside a private one (containerd's default on cgroup v2,
  // so a DaemonSet's) a cgroup outside it reads "/../../kubepods/...", and the namespace's own root
  // reads "/". Such a path is resolved against where the namespace's root is in the tree, found once:
  // the cgroup whose cgroup.procs lists oomguard itself, less oomguard's own /proc path (a host
  // without a private namespace costs two small reads; a private one, one walk of the tree). Fails
  // when the process has gone, or when its path leaves the namespace and the root was not found.
  cgroupfs::Result<std::string> readCgroupPath(pid_t pid);
  // A path read from /proc/<pid>/cgroup (relative to this cgroup namespace) as a path of the tree, as
  // readCgroupPath places it; nullopt when it is no place in the tree.
  std::optional<std::string> placeInTree(const std::string& path);
  // Indexes every process's cgroup from one walk of the tree (one cgroup.procs per cgroup): far fewer
  // reads than /proc/<pid>/cgroup for every process, for a listing of the whole host. Paths are the
  // tree's, relative to --cgroup-root (as /proc/<pid>/cgroup's are for a reader in the root cgroup
  // namespace). Returns how many pids it indexed; a pid the walk did not see is read from /proc.
  size_t indexCgroupsFromTree(cgroupfs::ReadCounters& counters);
  // memory.oom.group of a cgroup, read on first use and cached for the life of this Node (meant for the
  // short-lived commands; the daemon reads it fresh); unreadable counts as 0.
  bool oomGroupSet(std::string_view cgroup);
  // memory.oom.group of a cgroup, read now (the daemon's view: a write can change it at any time).
  bool readOomGroup(std::string_view cgroup);
  // /proc/<pid>/cmdline as it is (NUL after each argument; empty for a kernel thread or a zombie), its
  // first kCmdlineBytes, for the process rules (config::processRuleFor); nullopt when it cannot be read.
  // Reading it takes the process's mmap lock (and may wait for its argument pages), which a process in
  // reclaim can hold: so it is read once per process, by a refresh (`may_read`), and kept; a decision
  // passes may_read false and uses only what is kept. A pid whose comm has changed is another process
  // (or an exec): read again.
  std::optional<std::string> cmdline(pid_t pid, std::string_view comm, bool may_read);
  // Drops the kept command lines of the pids `alive` says are gone.
  void retainCmdlines(const std::function<bool(pid_t)>& alive);
  static constexpr size_t kCmdlineBytes = 4096;
  // The cgroup a group kill would take with a victim of `process` in `domain`, if any.
  std::optional<std::string> groupKillCgroup(cgroupfs::ProcessSnapshot& process,
                                             const policies::OomDomain& domain);

 private:
  cgroupfs::Result<DomainRanking> rankSubtree(const NodeFacts& facts, std::string_view cgroup, bool host_scale);
  uint64_t page_bytes_;
  cgroupfs::ProcFs procfs_;
  FdBudget trigger_budget_{kMaxOpenFiles};
  struct KeptCmdline {
    std::string comm;
    std::optional<std::string> text;  // nullopt: unreadable when read
  };
  std::unordered_map<pid_t, KeptCmdline> cmdlines_;
  cgroupfs::CgroupFs cgroupfs_;
  std::map<std::string, bool, std::less<>> oom_group_cache_;
  const std::unordered_map<pid_t, int>* intended_adj_ = nullptr;
  // indexCgroupsFromTree: each pid's cgroup, as an index into indexed_cgroups_ (a path held once, not
  // once per task).
  std::vector<std::string> indexed_cgroups_;
  std::unordered_map<pid_t, uint32_t> cgroup_of_pid_;
  // readCgroupPath: where the reader's cgroup namespace root is in the tree (nullopt: not found), once
  // looked for.
  std::optional<std::string> namespace_root_;
  uint32_t namespace_lookups_ = 0;
  void findNamespaceRoot();
};

}  // namespace oomguard::guardian::io
