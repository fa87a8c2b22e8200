#include "guardian/io/node.hpp"

#include <unistd.h>

#include <algorithm>

#include "cgroupfs/files.hpp"
#include "cgroupfs/parse.hpp"
#include "cgroupfs/paths.hpp"

namespace oomguard::guardian::io {

namespace {
uint64_t systemPageBytes() {
  const long page_size = ::sysconf(_SC_PAGESIZE);
  return page_size > 0 ? static_cast<uint64_t>(page_size) : 4096;
}
}  // namespace

Node::Node(std::string proc_root, std::string cgroup_root)
    : page_bytes_(systemPageBytes()), procfs_(std::move(proc_root)), cgroupfs_(std::move(cgroup_root)) {}

cgroupfs::Result<NodeFacts> Node::readFacts() {
  NodeFacts facts;
  auto kernel = procfs_.readKernelVersion();
  if (!kernel) {
    return kernel.error();
  }
  facts.kernel = std::move(kernel).value();
  auto meminfo = procfs_.readMemInfo();
  if (!meminfo) {
    return meminfo.error();
  }
  facts.meminfo = meminfo.value();
  if (auto swappiness = procfs_.readSysctl("vm/swappiness")) {
    facts.vm_swappiness = swappiness.value();
    facts.swappiness_known = true;
  }
  facts.page_size_bytes = page_bytes_;
  facts.host_totalpages = policies::hostTotalPages(facts.meminfo, facts.page_size_bytes);
  return facts;
}

namespace {

void rank(DomainRanking& ranking, const NodeFacts& facts, const Node& node) {
  node.overlayIntendedAdj(ranking.processes);
  ranking.candidates = policies::rankDomain(policies::RankingInput{
      ranking.processes, ranking.domain.totalpages, facts.host_totalpages, facts.kernel, facts.page_size_bytes});
}

}  // namespace

void Node::overlayIntendedAdj(std::vector<cgroupfs::ProcessSnapshot>& processes) const {
  if (intended_adj_ == nullptr || intended_adj_->empty()) {
    return;
  }
  for (auto& process : processes) {
    if (const auto found = intended_adj_->find(process.pid); found != intended_adj_->end()) {
      process.oom_score_adj = found->second;
    }
  }
}

DomainRanking Node::rankHost(const NodeFacts& facts, bool with_cgroups, bool with_oom_scores) {
  cgroupfs::ReadCounters counters;
  std::vector<cgroupfs::ProcessSnapshot> processes;
  if (auto pids = procfs_.listPids()) {
    std::sort(pids.value().begin(), pids.value().end());
    processes = procfs_.readProcesses(pids.value(), with_cgroups, counters, with_oom_scores);
    for (auto& process : processes) {
      if (process.cgroup) {
        process.cgroup = placeInTree(*process.cgroup);  // read relative to this cgroup namespace
      }
    }
  } else {
    counters.record(pids.error());
  }
  auto ranking = rankHostFrom(facts, std::move(processes));
  ranking.counters = std::move(counters);
  return ranking;
}

DomainRanking Node::rankHostFrom(const NodeFacts& facts, std::vector<cgroupfs::ProcessSnapshot> processes) const {
  DomainRanking ranking;
  ranking.domain = policies::OomDomain{policies::DomainKind::kHost, "/", facts.host_totalpages};
  ranking.processes = std::move(processes);
  rank(ranking, facts, *this);
  return ranking;
}

cgroupfs::Result<DomainRanking> Node::rankMemcg(const NodeFacts& facts, std::string_view cgroup) {
  return rankSubtree(facts, cgroup, false);
}

cgroupfs::Result<DomainRanking> Node::rankSubtreeOnHostScale(const NodeFacts& facts, std::string_view cgroup) {
  return rankSubtree(facts, cgroup, true);
}

cgroupfs::Result<DomainRanking> Node::rankSubtree(const NodeFacts& facts, std::string_view cgroup, bool host_scale) {
  DomainRanking ranking;
  const auto subtree = cgroupfs_.readSubtree(cgroup, ranking.counters);
  if (subtree.empty() || subtree.front().path != cgroup) {
    if (!ranking.counters.errors.empty()) {
      return ranking.counters.errors.front();
    }
    return cgroupfs::systemError(ENOENT, cgroupfs_.directoryOf(cgroup), "no such cgroup");
  }
  const auto& top = subtree.front();
  if (host_scale) {
    ranking.domain = policies::OomDomain{policies::DomainKind::kHost, top.path, facts.host_totalpages};
  } else if (!top.memory_max_bytes) {
    return cgroupfs::Error{0, cgroupfs_.directoryOf(cgroup) + "/memory.max",
                           top.has_memory_controller ? "memory.max is \"max\": this cgroup is not an OOM domain"
                                                     : "no memory controller here: not an OOM domain"};
  }
  if (!host_scale) {
    ranking.domain = policies::OomDomain{
        policies::DomainKind::kMemcg, top.path,
        policies::memcgTotalPages(*top.memory_max_bytes, top.swap_max_bytes, facts.meminfo.swap_total_kb * 1024,
                                  facts.vm_swappiness, facts.page_size_bytes)};
  }
  const auto pids = policies::memcgScanOrder(subtree);
  ranking.processes = procfs_.readProcesses(pids, false, ranking.counters);
  // The tree walk already says where each task is; no need to read /proc/<pid>/cgroup.
  size_t next = 0;
  for (const auto& node : subtree) {
    for (const pid_t pid : node.procs) {
      if (next < ranking.processes.size() && ranking.processes[next].pid == pid) {
        ranking.processes[next++].cgroup = node.path;
      }
    }
  }
  rank(ranking, facts, *this);
  return ranking;
}

std::vector<policies::OomDomain> Node::listMemcgDomains(const NodeFacts& facts, cgroupfs::ReadCounters& counters) {
  const auto tree = cgroupfs_.readSubtree("/", counters);
  return policies::memcgDomains(tree, facts.meminfo, facts.vm_swappiness, facts.page_size_bytes);
}

void Node::ensureCgroup(cgroupfs::ProcessSnapshot& process) {
  if (process.cgroup) {
    return;
  }
  if (!cgroup_of_pid_.empty()) {
    if (const auto found = cgroup_of_pid_.find(process.pid); found != cgroup_of_pid_.end()) {
      process.cgroup = indexed_cgroups_[found->second];
      return;
    }
  }
  if (auto path = readCgroupPath(process.pid)) {
    process.cgroup = std::move(path).value();
  }
}

void Node::findNamespaceRoot() {
  // Looked for again (at most once per kNamespaceRetryCalls calls) while not found: a read that failed
  // for a moment must not leave every host process unplaced for the daemon's life.
  constexpr uint32_t kNamespaceRetryCalls = 1000;
  if (namespace_root_ || (namespace_lookups_++ % kNamespaceRetryCalls) != 0) {
    return;
  }
  const pid_t self = ::getpid();
  auto own = procfs_.readCgroupPath(self);  // relative to this namespace: "/" at its root
  if (!own || own.value().starts_with("/..")) {
    return;
  }
  const auto lists_self = [&](const std::vector<pid_t>& pids) {
    return std::find(pids.begin(), pids.end(), self) != pids.end();
  };
  if (auto procs = cgroupfs_.readText(own.value(), cgroupfs::files::kProcs)) {
    if (auto pids = cgroupfs::parsePidList(procs.value()); pids && lists_self(pids.value())) {
      namespace_root_ = "/";  // the path read is the tree's own: no private namespace
      return;
    }
  }
  cgroupfs::ReadCounters counters;
  for (const auto& cgroup : cgroupfs_.readSubtree("/", counters)) {
    if (!lists_self(cgroup.procs)) {
      continue;
    }
    // cgroup.path = namespace root + own (own "/" at the namespace's root). Moved meanwhile (own read
    // again differs): no answer this time.
    auto again = procfs_.readCgroupPath(self);
    if (!again || again.value() != own.value()) {
      return;
    }
    if (own.value() == "/") {
      namespace_root_ = cgroup.path;
    } else if (cgroup.path.ends_with(own.value())) {  // `own` starts with '/': a whole-segment suffix
      const std::string root = cgroup.path.substr(0, cgroup.path.size() - own.value().size());
      namespace_root_ = root.empty() ? "/" : root;
    }
    return;
  }
}

std::optional<std::string> Node::placeInTree(const std::string& path) {
  findNamespaceRoot();
  if (!namespace_root_) {
    // Where this namespace sits is unknown (a fixture tree, or oomguard not in the tree it reads): a
    // path inside the namespace is taken as it is, one that leaves it is no place in the tree.
    return path.starts_with("/..") ? std::nullopt : std::optional<std::string>(path);
  }
  return cgroupfs::resolveCgroupPath(*namespace_root_, path);  // "/.." at the tree's root: nullopt
}

cgroupfs::Result<std::string> Node::readCgroupPath(pid_t pid) {
  auto path = procfs_.readCgroupPath(pid);
  if (!path) {
    return path;
  }
  if (auto placed = placeInTree(path.value())) {
    return std::move(placed).value();
  }
  return cgroupfs::Error{0, procfs_.root() + "/" + std::to_string(pid) + "/cgroup",
                         "\"" + path.value() + "\" is no place in the cgroup tree read (outside oomguard's cgroup "
                         "namespace, whose place in it is unknown, or above its root)"};
}

size_t Node::indexCgroupsFromTree(cgroupfs::ReadCounters& counters) {
  cgroup_of_pid_.clear();
  indexed_cgroups_.clear();
  if (!cgroupfs_.hasFile("/", "cgroup.controllers")) {
    return 0;  // not a cgroup2 root (a v1 tmpfs of controller mounts): its paths are not the v2 ones
  }
  auto tree = cgroupfs_.readSubtree("/", counters);
  size_t tasks = 0;
  for (const auto& cgroup : tree) {
    tasks += cgroup.procs.size();
  }
  cgroup_of_pid_.reserve(tasks);
  indexed_cgroups_.reserve(tree.size());
  for (auto& cgroup : tree) {
    for (const pid_t pid : cgroup.procs) {
      cgroup_of_pid_.emplace(pid, static_cast<uint32_t>(indexed_cgroups_.size()));
    }
    oom_group_cache_.insert_or_assign(cgroup.path, cgroup.oom_group);  // read by the walk: groupKillCgroup's
    indexed_cgroups_.push_back(std::move(cgroup.path));
  }
  return cgroup_of_pid_.size();
}

bool Node::oomGroupSet(std::string_view cgroup) {
  if (const auto found = oom_group_cache_.find(cgroup); found != oom_group_cache_.end()) {
    return found->second;
  }
  const bool set = readOomGroup(cgroup);
  oom_group_cache_.emplace(std::string(cgroup), set);
  return set;
}

bool Node::readOomGroup(std::string_view cgroup) {
  auto text = cgroupfs_.readText(cgroup, cgroupfs::files::kMemoryOomGroup);
  return text && text.value().starts_with('1');
}

std::optional<std::string> Node::cmdline(pid_t pid, std::string_view comm, bool may_read) {
  if (const auto kept = cmdlines_.find(pid); kept != cmdlines_.end() && kept->second.comm == comm) {
    return kept->second.text;
  }
  if (!may_read) {
    return std::nullopt;
  }
  auto read = procfs_.readCmdline(pid, kCmdlineBytes);
  std::optional<std::string> text = read ? std::optional<std::string>(std::move(read).value()) : std::nullopt;
  cmdlines_[pid] = KeptCmdline{std::string(comm), text};
  return text;
}

void Node::retainCmdlines(const std::function<bool(pid_t)>& alive) {
  std::erase_if(cmdlines_, [&](const auto& entry) { return !alive(entry.first); });
}

std::optional<std::string> Node::groupKillCgroup(cgroupfs::ProcessSnapshot& process,
                                                 const policies::OomDomain& domain) {
  ensureCgroup(process);
  if (!process.cgroup) {
    return std::nullopt;
  }
  return policies::oomGroupCgroup(*process.cgroup, domain, [this](std::string_view cgroup) { return oomGroupSet(cgroup); });
}

}  // namespace oomguard::guardian::io
