// OOM domains and the kernel's victim choice within one (select_bad_process(), mem_cgroup_scan_tasks(),
// constrained_alloc(), mem_cgroup_get_max(), mem_cgroup_get_oom_group()). Pure functions of snapshots.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cgroupfs/types.hpp"

namespace oomguard::policies {

enum class DomainKind { kHost, kMemcg };
const char* toString(DomainKind kind);

// Where an OOM can happen: the whole host, or one cgroup whose memory.max is finite.
struct OomDomain {
  DomainKind kind = DomainKind::kHost;
  std::string cgroup = "/";  // the limited cgroup, "/" for the host
  uint64_t totalpages = 0;   // the denominator oom_badness() gets
};

// Host OOM: MemTotal + SwapTotal in pages (totalram_pages() + total_swap_pages).
uint64_t hostTotalPages(const cgroupfs::MemInfo& meminfo, uint64_t page_size_bytes);
// Memcg OOM on cgroup v2 (mem_cgroup_get_max()): memory.max in pages, plus min(memory.swap.max,
// SwapTotal) in pages unless swappiness is 0; at least 1. cgroup v2 has no per-cgroup swappiness: the
// kernel uses vm.swappiness. A missing memory.swap.max (swap accounting off) counts as "max".
uint64_t memcgTotalPages(uint64_t memory_max_bytes, const cgroupfs::LimitBytes& swap_max_bytes,
                         uint64_t swap_total_bytes, long vm_swappiness, uint64_t page_size_bytes);

OomDomain hostDomain(const cgroupfs::MemInfo& meminfo, uint64_t page_size_bytes);
// Every cgroup with a finite memory.max, in the order given (tree pre-order from readSubtree()).
std::vector<OomDomain> memcgDomains(std::span<const cgroupfs::CgroupSnapshot> cgroups,
                                    const cgroupfs::MemInfo& meminfo, long vm_swappiness,
                                    uint64_t page_size_bytes);

// The pids of a memcg domain in the order the kernel's scan visits them: `subtree` is the domain cgroup
// and its descendants in pre-order (readSubtree()), each with cgroup.procs in the kernel's order.
std::vector<pid_t> memcgScanOrder(std::span<const cgroupfs::CgroupSnapshot> subtree);

struct Candidate {
  pid_t pid = 0;
  long points = 0;       // oom_badness() in this domain; kUnkillablePoints when not killable
  long oom_score = 0;    // /proc/<pid>/oom_score (always the host domain's scale)
  bool killable = false;
  size_t scan_index = 0;  // position in the kernel's scan = index into the ranked span
};

struct RankingInput {
  std::span<const cgroupfs::ProcessSnapshot> processes_in_scan_order;
  uint64_t totalpages = 0;       // of the domain
  uint64_t host_totalpages = 0;  // for oom_score
  cgroupfs::KernelVersion kernel;
  uint64_t page_size_bytes = 4096;
};

// All processes ranked as the kernel would pick them: killable ones by points, highest first; among
// equal points the one scanned later first (the kernel takes a task whose points are >= the chosen
// one's). Unkillable processes follow, in scan order.
std::vector<Candidate> rankDomain(const RankingInput& input);

// The cgroup the kernel would kill whole along with `victim_cgroup` (mem_cgroup_get_oom_group()): the
// highest cgroup with memory.oom.group = 1 on the way from the victim's cgroup up to the domain's
// cgroup, inclusive. None for a victim in the root cgroup or outside the domain.
std::optional<std::string> oomGroupCgroup(std::string_view victim_cgroup, const OomDomain& domain,
                                          const std::function<bool(std::string_view)>& oom_group_set);

}  // namespace oomguard::policies
